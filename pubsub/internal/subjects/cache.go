package subjects

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The cache is split in shards, each with its own lock and map, so that a miss storing its
// result holds up only the hits on the same shard, and hits never wait for the trie's lock.

const (
	cacheShards = 16 // a power of two
	// evictProbes is how many entries a full shard looks at to find one to evict.
	evictProbes = 4
)

type cache[T any] struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]shard[T]
}

type shard[T any] struct {
	mu sync.RWMutex
	m  map[string]*entry[T]
	// One cache line each, so that shards do not share their lock's line.
	_ [(64 - (unsafe.Sizeof(sync.RWMutex{})+unsafe.Sizeof(map[string]int(nil)))%64) % 64]byte
}

// entry is one cached result; res and wgen never change once stored.
type entry[T any] struct {
	res  Result[T]
	wgen uint64
	// used is set by hits and cleared by the eviction scan passing over the entry: a second
	// chance, so that a subject in use survives a stream of one-off subjects.
	used atomic.Bool
}

func newCache[T any](size int) *cache[T] {
	c := &cache[T]{seed: maphash.MakeSeed(), perShard: max(1, (size+cacheShards-1)/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*entry[T])
	}
	return c
}

func (c *cache[T]) shardOf(subject string) *shard[T] {
	return &c.shards[maphash.String(c.seed, subject)&(cacheShards-1)]
}

// get returns the result cached for subject if it was computed under wildcard generation wgen.
func (c *cache[T]) get(subject string, wgen uint64) (Result[T], bool) {
	sh := c.shardOf(subject)
	sh.mu.RLock()
	e := sh.m[subject]
	sh.mu.RUnlock()
	return e.fresh(wgen)
}

// getBytes is get for a subject in a byte slice.
func (c *cache[T]) getBytes(subject []byte, wgen uint64) (Result[T], bool) {
	sh := &c.shards[maphash.Bytes(c.seed, subject)&(cacheShards-1)]
	sh.mu.RLock()
	e := sh.m[string(subject)] // the compiler converts without allocating for a map index
	sh.mu.RUnlock()
	return e.fresh(wgen)
}

func (e *entry[T]) fresh(wgen uint64) (Result[T], bool) {
	if e == nil || e.wgen != wgen {
		return Result[T]{}, false
	}
	if !e.used.Load() {
		// Load first: most hits find the bit set, and a store would bounce the cache line
		// between cores.
		e.used.Store(true)
	}
	return e.res, true
}

// put stores r for subject (which the cache keeps as its key) unless the trie changed since
// r was computed, that is unless gen has moved past g0.
func (c *cache[T]) put(subject string, r Result[T], wgen, g0 uint64, gen *atomic.Uint64) {
	e := &entry[T]{res: r, wgen: wgen}
	sh := c.shardOf(subject)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if gen.Load() != g0 {
		return
	}
	if _, ok := sh.m[subject]; !ok && len(sh.m) >= c.perShard {
		sh.evict(wgen)
	}
	sh.m[subject] = e
}

// evict deletes one entry: the first stale or unused one among a few, else the last looked
// at. Map iteration starts at a random place, so the few are a random sample.
func (sh *shard[T]) evict(wgen uint64) {
	n := 0
	for k, e := range sh.m {
		n++
		if e.wgen != wgen || !e.used.Load() || n == evictProbes {
			delete(sh.m, k)
			return
		}
		e.used.Store(false)
	}
}

// delete drops the entry for subject.
func (c *cache[T]) delete(subject string) {
	sh := c.shardOf(subject)
	sh.mu.Lock()
	delete(sh.m, subject)
	sh.mu.Unlock()
}

// len returns the number of entries, stale ones included.
func (c *cache[T]) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
