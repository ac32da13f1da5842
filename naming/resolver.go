package naming

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/rs/zerolog"
)

// ResolverConfig tunes a Resolver. The zero value is ready to use: every zero field means the
// default written beside it. NewResolver refuses impossible values with an error naming the field.
type ResolverConfig struct {
	// MaxNames bounds the names the Resolver watches, each with one goroutine and one waiting
	// request at the server. Names resolved beyond it are looked up at every Resolve, and their
	// Changed channel is nil. Default 1024.
	MaxNames int

	// BackoffMin and BackoffMax bound the wait before a failed watch is tried again: it doubles
	// from BackoffMin to BackoffMax, each wait jittered. Defaults 100 ms and 10 s.
	BackoffMin, BackoffMax time.Duration

	// Logger receives the Resolver's log: a watch losing or finding its server at info level,
	// each failure at debug. The zero value logs nothing.
	Logger zerolog.Logger
}

// Defaults, as documented on ResolverConfig.
const (
	DefaultResolverMaxNames = 1024
	DefaultWatchBackoffMin  = 100 * time.Millisecond
	DefaultWatchBackoffMax  = 10 * time.Second
)

// A watch loop makes at most watchBurst watches in any watchPeriod. A server that answers at
// once every time (a proxy that does not hold requests, a name rebound in a loop) would
// otherwise turn the loop into a busy one; a burst lets the usual pair of changes of a move
// (unbind, rebind) through without delay.
const (
	watchBurst  = 3
	watchPeriod = time.Second
)

// closedChan is the Changed channel of a name that changed since it was last resolved.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Resolver resolves names through a naming Server and watches every name it resolved, so it
// knows of a move the moment the name is rebound. It implements core.WatchingResolver: set it
// as core.Config.Resolver, and a client waiting out its reconnection backoff tries again, at the
// new address, as soon as the server's name moves.
//
// The first Resolve of a name starts one goroutine that keeps one watch (a long poll) of the
// name at the server. While that watch is live, Resolve answers from its cache without a
// request; while it is not (the naming server cannot be reached), Resolve looks the name up, and
// if that fails too, returns the address known last: a server that did not move is still found.
type Resolver struct {
	client *Client
	cfg    ResolverConfig
	log    zerolog.Logger
	ctx    context.Context // ends at Close: the watch loops stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // the watch loops

	mu     sync.Mutex
	closed bool
	names  map[string]*watched
}

// watched is one name the Resolver watches. Its fields other than name and kick belong to
// Resolver.mu.
type watched struct {
	name string
	kick chan struct{} // capacity 1: the server answered a lookup; a loop backing off tries now

	known   bool   // a lookup or a watch answered
	bound   bool   // the name is bound, to addr
	addr    string // where it is bound
	version uint64 // the binding's version, or the index of the answer that said it is not bound
	live    bool   // the last watch answered: the cache is as fresh as the server's news
	gen     uint64 // counts the moves seen: binding, address or version changed
	seq     uint64 // counts the answers recorded, moves or not
	// resolved is gen as Resolve returned it last: if gen moved on since, Changed is closed.
	resolved uint64
	changed  chan struct{} // closed at the next move
}

// NewResolver returns a Resolver asking client. It fails if cfg has an impossible value.
func NewResolver(client *Client, cfg ResolverConfig) (*Resolver, error) {
	bad := func(format string, args ...any) (*Resolver, error) {
		return nil, ftslerr.Errorf("ftsl: naming: invalid ResolverConfig: "+format, args...)
	}
	switch {
	case client == nil:
		return nil, errors.New("ftsl: naming: NewResolver: nil Client")
	case cfg.MaxNames < 0:
		return bad("MaxNames is negative")
	case cfg.BackoffMin < 0:
		return bad("BackoffMin is negative")
	case cfg.BackoffMax < 0:
		return bad("BackoffMax is negative")
	}
	if cfg.MaxNames == 0 {
		cfg.MaxNames = DefaultResolverMaxNames
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = DefaultWatchBackoffMin
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = max(DefaultWatchBackoffMax, cfg.BackoffMin)
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		return bad("BackoffMax %v is below BackoffMin %v", cfg.BackoffMax, cfg.BackoffMin)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Resolver{client: client, cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel,
		names: make(map[string]*watched)}, nil
}

// Resolve returns the address name is bound to. The first call for a name starts watching it
// (up to MaxNames names). It fails with ErrNotFound if the name is not bound, and with the
// lookup's error if the naming server cannot be reached and the name's address is not known.
func (r *Resolver) Resolve(ctx context.Context, name string) (string, error) {
	if err := validName(name); err != nil {
		return "", err
	}
	r.mu.Lock()
	e := r.names[name]
	if e == nil && !r.closed && len(r.names) < r.cfg.MaxNames {
		e = &watched{name: name, kick: make(chan struct{}, 1), changed: make(chan struct{})}
		r.names[name] = e
		r.wg.Add(1)
		go r.watch(e)
	}
	if e != nil && e.live {
		defer r.mu.Unlock()
		return r.answerLocked(e)
	}
	var seq uint64
	if e != nil {
		seq = e.seq
	}
	r.mu.Unlock()

	b, err := r.client.Lookup(ctx, name)
	if e == nil {
		return b.Addr, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil || errors.Is(err, ErrNotFound):
		// A watch may have told of something newer while the lookup was under way; if none
		// did, the lookup is the news, even with a lower version (the server lost its data).
		if !e.known || b.Version >= e.version || e.seq == seq {
			r.applyLocked(e, err == nil, b.Addr, max(b.Version, 1))
		}
		if !e.live {
			select {
			case e.kick <- struct{}{}: // the server answers: a watch loop backing off may try now
			default:
			}
		}
		return r.answerLocked(e)
	case e.known && e.bound:
		// The naming server is out of reach: the address it gave last is still the best guess.
		r.log.Debug().Err(err).Str("name", name).Str("addr", e.addr).Msg("lookup failed; resolving to the address known last")
		return r.answerLocked(e)
	}
	return "", err
}

// answerLocked is what Resolve returns from e's cache; it marks the cache's state as resolved.
func (r *Resolver) answerLocked(e *watched) (string, error) {
	e.resolved = e.gen
	if !e.bound {
		return "", ftslerr.Errorf("%w: resolve %q: not bound at version %d", ErrNotFound, e.name, e.version)
	}
	return e.addr, nil
}

// Changed returns a channel that is closed once name's binding moves away from what Resolve
// returned last (closed already if it has). It is nil, never ready, for a name the Resolver does
// not watch: one never resolved, or resolved beyond MaxNames. Several sessions dialling one name
// share the cache: a session whose Resolve came just before a move and whose Changed just after
// another session's Resolve may wait out its backoff, as if the resolver did not watch.
func (r *Resolver) Changed(name string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.names[name]
	switch {
	case e == nil:
		return nil
	case e.gen != e.resolved:
		return closedChan
	}
	return e.changed
}

// Close stops every watch loop and waits for them to end. Resolve goes on working, with a
// lookup at every call. Close is safe to call twice.
func (r *Resolver) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	for _, e := range r.names {
		e.live = false
	}
	r.mu.Unlock()
	return nil
}

// watch is e's loop: one long-poll watch after another, each from the version known last; on a
// failure it backs off, jittered, and tries again, first with index 0, to hear the state at once.
func (r *Resolver) watch(e *watched) {
	defer r.wg.Done()
	backoff := r.cfg.BackoffMin
	var recent [watchBurst]time.Time // the starts of the last watches, a ring
	next := 0
	for {
		if last := recent[next]; !last.IsZero() {
			if d := watchPeriod - time.Since(last); d > 0 && !r.sleep(d, nil) {
				return
			}
		}
		recent[next] = time.Now()
		next = (next + 1) % watchBurst

		r.mu.Lock()
		// Until a watch has answered, index 0: the answer comes at once and proves the watch
		// live (a watch that waits proves nothing until it answers).
		after, seq := e.version, e.seq
		if !e.live {
			after = 0
		}
		r.mu.Unlock()
		b, err := r.client.Watch(r.ctx, e.name, after)
		if r.ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			r.mu.Lock()
			wasLive := e.live
			e.live = false
			r.mu.Unlock()
			d := backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, r.cfg.BackoffMax)
			ev := r.log.Debug()
			if wasLive {
				ev = r.log.Info()
			}
			ev.Err(err).Str("name", e.name).Stringer("retry_in", d).Msg("naming watch failed")
			select {
			case <-e.kick: // a lookup that reached the server before this failure is no news
			default:
			}
			if !r.sleep(d, e.kick) {
				return
			}
			continue
		}
		backoff = r.cfg.BackoffMin
		r.mu.Lock()
		if !e.live {
			r.log.Info().Str("name", e.name).Msg("naming watch live")
		}
		e.live = true
		// An answer older than what a lookup saw meanwhile is stale; one older than the index
		// the watch gave means the server lost its data, and is the truth now.
		if !e.known || b.Version >= e.version || e.seq == seq || b.Version < after {
			was := e.addr
			r.applyLocked(e, err == nil, b.Addr, max(b.Version, 1))
			if e.bound && e.addr != was {
				// A move: the watch that follows it is no busy loop, whatever came before.
				// (Rebinds to the same address, or a server that answers at once with
				// nothing new, stay limited.)
				recent = [watchBurst]time.Time{}
			}
		}
		r.mu.Unlock()
	}
}

// applyLocked records name's state as an answer gave it, and closes the Changed channel if it
// moved. A not-bound answer's version is the server's index, which other names' writes move: it
// is kept, for the next watch, but is no move.
func (r *Resolver) applyLocked(e *watched, bound bool, addr string, version uint64) {
	moved := bound != e.bound || bound && (addr != e.addr || version != e.version)
	e.seq++
	e.known, e.bound, e.addr, e.version = true, bound, addr, version
	if !bound {
		e.addr = ""
	}
	if moved {
		e.gen++
		close(e.changed)
		e.changed = make(chan struct{})
		r.log.Debug().Str("name", e.name).Bool("bound", bound).Str("addr", addr).Uint64("version", version).Msg("name moved")
	}
}

// sleep waits d, or until kick (if not nil) has news; it returns false if the Resolver closed.
func (r *Resolver) sleep(d time.Duration, kick <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-kick:
	case <-r.ctx.Done():
		return false
	}
	return true
}
