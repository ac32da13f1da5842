package subjects

import (
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

var (
	// ErrDuplicate is returned by Insert for a subscription that is already in an index.
	ErrDuplicate = errors.New("ftsl: subscription already in an index")
	// ErrNotFound is returned by Remove for a subscription that is not in this index.
	ErrNotFound = errors.New("ftsl: subscription not in the index")
)

// DefaultCacheSize is the number of subjects whose Match results an Index keeps by default.
const DefaultCacheSize = 4096

// MaxCacheSize bounds Config.CacheSize.
const MaxCacheSize = 1 << 20

// Config tunes an Index. The zero value is ready to use; New checks the values.
type Config struct {
	// MaxSubjectLength bounds, in bytes, the patterns and queue names Insert accepts and the
	// subjects Match matches (a longer subject matches nothing). Default DefaultMaxLength (256).
	MaxSubjectLength int

	// CacheSize bounds how many distinct subjects have their Match result cached (rounded up
	// to a multiple of 16, the cache being split in 16 shards). Default DefaultCacheSize
	// (4096); -1 turns the cache off; at most MaxCacheSize. A cached result costs about 150
	// bytes plus the subject and 8 bytes per subscription in it. A hub whose publishers use
	// many more distinct subjects than this pays a miss (a trie walk, about 1 us with
	// eviction) on most publishes: raise it, or turn it off to skip the eviction work.
	CacheSize int
}

// Subscription is one subscriber's interest in a pattern, optionally in a queue group. The hub
// owns it and keeps its own data in Value; the index knows it by its pointer. Make it with
// NewSubscription. A Subscription is in at most one Index at a time.
type Subscription[T any] struct {
	// Value is the hub's data (client, subscription ID, counters...). The index never reads or
	// writes it; the hub synchronises its own access.
	Value T

	subject string
	queue   string
	pos     int // 1 + position in its node's list or group; 0 while in no index. Index.mu.
}

// NewSubscription returns a subscription to pattern, in queue group queue ("" for none),
// carrying value. Insert validates pattern and queue. Both strings are copied, so they may
// come from a buffer the caller reuses.
func NewSubscription[T any](pattern, queue string, value T) *Subscription[T] {
	return &Subscription[T]{Value: value, subject: strings.Clone(pattern), queue: strings.Clone(queue)}
}

// Subject returns the pattern s subscribes to.
func (s *Subscription[T]) Subject() string { return s.subject }

// Queue returns the queue group of s, "" if it has none.
func (s *Subscription[T]) Queue() string { return s.queue }

// Result is what matched a subject: the plain subscriptions, each of which gets the message,
// and the queue groups, each of which gets it once, through one member the hub picks (see
// Group.Pick). A Result may be shared with other callers through the cache: its slices must not
// be modified. It is a snapshot: a subscription removed after (or while) it was made may still
// be in it, so the hub checks its own per-subscription state before delivering.
type Result[T any] struct {
	Plain  []*Subscription[T]
	Groups []Group[T]
}

// Empty reports whether nothing matched.
func (r Result[T]) Empty() bool { return len(r.Plain) == 0 && len(r.Groups) == 0 }

// Group is one queue group in a Result: every member whose pattern matched, over all the
// patterns the group's members subscribe to. Members is never empty and must not be modified.
type Group[T any] struct {
	Name    string
	Members []*Subscription[T]
}

// Pick returns the first member that accept approves (nil accepts every member), looking from
// position start (modulo the group's size) onwards and wrapping around; nil if none does.
// Passing a counter the hub increments per message gives round-robin; PickRandom picks at
// random. accept may be called for every member, so it should be cheap.
func (g Group[T]) Pick(start uint64, accept func(*Subscription[T]) bool) *Subscription[T] {
	n := uint64(len(g.Members))
	if n == 0 {
		return nil
	}
	start %= n
	for i := uint64(0); i < n; i++ {
		j := start + i
		if j >= n {
			j -= n
		}
		if m := g.Members[j]; accept == nil || accept(m) {
			return m
		}
	}
	return nil
}

// PickRandom returns a member that accept approves (nil accepts every member), chosen uniformly
// at random when accept approves most of them; nil if it approves none. It tries a few members
// at random, then looks through the rest from a random place, so a group where accept refuses
// nearly everyone still costs one pass.
func (g Group[T]) PickRandom(accept func(*Subscription[T]) bool) *Subscription[T] {
	n := uint64(len(g.Members))
	if n == 0 {
		return nil
	}
	for range 3 {
		if m := g.Members[rand.Uint64N(n)]; accept == nil || accept(m) {
			return m
		}
	}
	return g.Pick(rand.Uint64(), accept)
}

// Index maps subjects to the subscriptions whose patterns match them: a trie of pattern tokens,
// and a bounded cache of results per subject. It is safe for concurrent use; Match runs in
// parallel with other Matches and, on a cache hit, with Insert and Remove too.
type Index[T any] struct {
	// mu guards trie, count and the pos field of the subscriptions in the trie. Lock order:
	// mu, then a cache shard's lock; Match takes the shard lock without mu.
	mu    sync.RWMutex
	trie  trie[T]
	count int

	maxLen int
	cache  *cache[T] // nil when off

	// gen counts every change to the trie, wgen every change of a wildcard pattern. A cached
	// result carries the wgen it was computed under and is stale once wgen has moved on; a
	// change of a literal pattern deletes that one subject's entry instead. gen tells Match
	// whether a change came between computing a result and storing it. Both are written
	// under mu.
	gen  atomic.Uint64
	wgen atomic.Uint64
}

// New returns an empty index. It fails if cfg has an impossible value, naming the field.
func New[T any](cfg Config) (*Index[T], error) {
	if cfg.MaxSubjectLength < 0 {
		return nil, ftslerr.Errorf("ftsl: subjects.Config.MaxSubjectLength is %d; want 0 (default) or more", cfg.MaxSubjectLength)
	}
	if cfg.CacheSize < -1 || cfg.CacheSize > MaxCacheSize {
		return nil, ftslerr.Errorf("ftsl: subjects.Config.CacheSize is %d; want -1 (off), 0 (default) or up to %d", cfg.CacheSize, MaxCacheSize)
	}
	ix := &Index[T]{maxLen: limit(cfg.MaxSubjectLength)}
	switch cfg.CacheSize {
	case -1:
	case 0:
		ix.cache = newCache[T](DefaultCacheSize)
	default:
		ix.cache = newCache[T](cfg.CacheSize)
	}
	return ix, nil
}

// Insert adds s. It fails, wrapping ErrInvalidSubject, if the pattern or queue name is not
// valid, and with ErrDuplicate if s is already in an index. Matches that start after Insert
// returns see s.
func (ix *Index[T]) Insert(s *Subscription[T]) error {
	if s == nil {
		return ftslerr.Errorf("%w: nil subscription", ErrInvalidSubject)
	}
	if err := ValidateSubscribe(s.subject, ix.maxLen); err != nil {
		return err
	}
	if s.queue != "" {
		if err := ValidateQueue(s.queue, ix.maxLen); err != nil {
			return err
		}
	}
	lit := isLiteral(s.subject)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if s.pos != 0 {
		return ErrDuplicate
	}
	ix.trie.insert(s)
	ix.count++
	ix.changed(s.subject, lit)
	return nil
}

// Remove takes s out. It fails with ErrNotFound if s is not in this index. Matches that start
// after Remove returns do not see s; results taken before may still hold it.
func (ix *Index[T]) Remove(s *Subscription[T]) error {
	if s == nil {
		return ErrNotFound
	}
	lit := isLiteral(s.subject)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if s.pos == 0 || !ix.trie.remove(s) {
		return ErrNotFound
	}
	ix.count--
	ix.changed(s.subject, lit)
	return nil
}

// changed invalidates what a change to pattern made stale. Called with mu held for writing.
func (ix *Index[T]) changed(pattern string, literal bool) {
	if !literal {
		ix.wgen.Add(1)
	}
	// After gen moves, no Match computed before this change stores its result; one that
	// checked gen before it did stored already, and the delete below comes after.
	ix.gen.Add(1)
	if literal && ix.cache != nil {
		ix.cache.delete(pattern)
	}
}

// Len returns the number of subscriptions in the index.
func (ix *Index[T]) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.count
}

// Match returns the subscriptions whose patterns match subject. A subject that ValidatePublish
// refuses (with the index's MaxSubjectLength) matches nothing. On a cache hit Match allocates
// nothing and takes no lock but one cache shard's read lock.
func (ix *Index[T]) Match(subject string) Result[T] {
	if c := ix.cache; c != nil {
		if r, ok := c.get(subject, ix.wgen.Load()); ok {
			return r
		}
	}
	return ix.matchSlow(subject, false)
}

// MatchBytes is Match for a subject held in a byte slice, typically a frame being decoded; it
// allocates nothing on a cache hit either. The index does not keep subject.
func (ix *Index[T]) MatchBytes(subject []byte) Result[T] {
	if c := ix.cache; c != nil {
		if r, ok := c.getBytes(subject, ix.wgen.Load()); ok {
			return r
		}
	}
	return ix.matchSlow(string(subject), true)
}

// matchSlow walks the trie and caches the result. owned says subject is a fresh copy the
// cache may keep as its key.
func (ix *Index[T]) matchSlow(subject string, owned bool) Result[T] {
	if p, _ := check(subject, ix.maxLen, true); p != probNone {
		// Not cached: garbage must not push real subjects out.
		return Result[T]{}
	}
	var buf [16]*node[T]
	ix.mu.RLock()
	g0, w0 := ix.gen.Load(), ix.wgen.Load()
	r := build(ix.trie.match(subject, buf[:0]))
	ix.mu.RUnlock()
	if c := ix.cache; c != nil {
		if !owned {
			subject = strings.Clone(subject)
		}
		c.put(subject, r, w0, g0, &ix.gen)
	}
	return r
}
