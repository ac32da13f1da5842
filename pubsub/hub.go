package pubsub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub/internal/subjects"
)

// Hub routes messages between its clients. Every client talks to it over a oneway session; the
// hub handles a client's messages on that session's own reader goroutine (oneway's OnArrival),
// so an idle client costs the hub its session and nothing more.
//
// Its state is in plain structs owned in one place, for the snapshot layer to freeze and export:
// the members (clients) and their subscriptions, the subscription index, and the outcomes in
// progress, each reachable from the member that published it.
type Hub struct {
	cfg    HubConfig
	log    zerolog.Logger
	index  *subjects.Index[*hubSub]
	ev     *events.Dispatcher
	rr     atomic.Uint64 // round-robin counter for queue groups
	counts hubCounters
	shut   atomic.Bool // Close began: publishes are refused (read per publish, without mu)
	// paused: Pause froze the hub; nothing a client sent is handled until Continue. moved:
	// Export took the state; what happens here from then on is nobody's business.
	paused atomic.Bool
	moved  atomic.Bool
	ctx    context.Context
	stop   context.CancelFunc
	local  *pipeListener // in-process clients (Connect)
	inproc *oneway.Listener

	// outcomes counts the publishes whose outcome is not yet sent: Close waits for them before
	// it closes the sessions, which then take no more messages.
	outcomes sync.WaitGroup

	mu        sync.Mutex
	members   map[*member]struct{}
	inboxes   map[string]*member
	listeners []*oneway.Listener
	addr      net.Addr
	closing   bool
	serving   sync.WaitGroup // Serve loops
	kick      chan struct{}  // wakes the housekeeper: some member has outcomes or notices waiting
	houseDone chan struct{}
}

// NewHub returns a hub. It serves nothing until Serve or ListenAndServe; in-process clients may
// Connect at once.
func NewHub(cfg HubConfig) (*Hub, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ix, err := subjects.New[*hubSub](subjects.Config{MaxSubjectLength: cfg.MaxSubjectLength})
	if err != nil {
		return nil, err
	}
	h := &Hub{
		cfg:       cfg,
		log:       cfg.Logger,
		index:     ix,
		ev:        events.New(cfg.Events),
		members:   make(map[*member]struct{}),
		inboxes:   make(map[string]*member),
		kick:      make(chan struct{}, 1),
		houseDone: make(chan struct{}),
		local:     newPipeListener(),
	}
	h.ctx, h.stop = context.WithCancel(context.Background())
	ln, err := oneway.NewListener(h.local, cfg.Session)
	if err != nil {
		return nil, err
	}
	h.inproc = ln
	h.mu.Lock()
	h.listeners = append(h.listeners, ln)
	h.mu.Unlock()
	h.serving.Add(1)
	go func() {
		defer h.serving.Done()
		_ = h.serve(h.ctx, ln)
	}()
	go h.housekeep()
	return h, nil
}

// Serve accepts clients on ln until ctx ends or the hub is closed; the hub closes ln then. It
// returns nil after Close, ctx's error otherwise.
func (h *Hub) Serve(ctx context.Context, ln *oneway.Listener) error {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return ErrClosed
	}
	h.listeners = append(h.listeners, ln)
	if h.addr == nil {
		h.addr = ln.Addr()
	}
	h.serving.Add(1)
	h.mu.Unlock()
	defer h.serving.Done()
	return h.serve(ctx, ln)
}

func (h *Hub) serve(ctx context.Context, ln *oneway.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(h.ctx, cancel)
	defer stop()
	for {
		s, err := ln.Accept(ctx)
		if err != nil {
			if h.ctx.Err() != nil {
				return nil
			}
			if ctx.Err() != nil {
				_ = ln.Close()
				return ctx.Err()
			}
			return err
		}
		h.attach(s, ln)
	}
}

// ListenAndServe listens on the TCP address addr and serves clients there (see Serve).
func (h *Hub) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := oneway.Listen(addr, h.cfg.Session)
	if err != nil {
		return err
	}
	return h.Serve(ctx, ln)
}

// Addr is the address of the first listener the hub serves, or nil before it serves one.
func (h *Hub) Addr() net.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.addr
}

// Events returns the channel of the hub's events: subscriptions made and ended, slow consumers,
// lost subscribers, refusals. It is bounded (see events.Dispatcher).
func (h *Hub) Events() <-chan events.Event { return h.ev.Channel() }

// OnEvent registers a callback for the hub's events, run one at a time on a goroutine of the
// dispatcher's own.
func (h *Hub) OnEvent(f func(events.Event)) { h.ev.OnEvent(f) }

func (h *Hub) event(kind events.Kind, session uint64, subject string, err error) {
	if h.ev.Subscribed() {
		h.ev.Publish(events.Event{Kind: kind, Session: session, Subject: subject, Err: err, Time: time.Now()})
	}
}

// Close stops the hub gracefully: it takes no new clients and no new publishes, closes every
// client's session once everything the hub accepted is delivered and acknowledged at the level
// its publisher asked for (subscribers get what was accepted), and aborts whatever is left when
// ctx ends, returning ctx's error then. Safe to call twice.
func (h *Hub) Close(ctx context.Context) error {
	if h.paused.Load() && !h.moved.Load() {
		_ = h.Continue() // a paused hub's sessions could neither deliver nor close
	}
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		<-h.houseDone
		return nil
	}
	h.closing = true
	h.shut.Store(true)
	listeners := h.listeners
	members := make([]*member, 0, len(h.members))
	for m := range h.members {
		members = append(members, m)
	}
	h.mu.Unlock()
	h.stop() // no more Accepts
	if h.moved.Load() {
		// The clients of the listener exported went on elsewhere, and their members are gone;
		// in-process clients cannot follow: their sessions end.
		for _, m := range members {
			m.sess.Abort()
		}
		h.serving.Wait()
		for _, ln := range listeners {
			_ = ln.Close()
		}
		close(h.kick)
		<-h.houseDone
		h.ev.Close()
		return nil
	}
	for _, m := range members {
		// A publish routed before shut was set goes out before the sessions close: wait for
		// the member's drain under way, if any.
		m.drainMu.Lock()
		m.drainMu.Unlock() //nolint:staticcheck // the wait is the point
	}
	told := make(chan struct{}) // (no publish begins after shut: Add cannot follow this Wait)
	go func() { h.outcomes.Wait(); close(told) }()
	select {
	case <-told:
	case <-ctx.Done(): // the sessions are aborted below; the shares end, and so does Wait
	}
	// Outcomes that found their publisher's session full wait for room; a session that is
	// closing takes no more, so they go in first, as the client reads.
	for _, m := range members {
		for !m.flushWaiting() && ctx.Err() == nil {
			t := time.NewTimer(time.Millisecond) // (room opens as the client acknowledges)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	}
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = m.sess.Close(ctx)
		}()
	}
	wg.Wait()
	h.serving.Wait()
	for _, ln := range listeners {
		_ = ln.Close()
	}
	close(h.kick)
	<-h.houseDone
	h.ev.Close()
	return ctx.Err()
}

// Connect opens an in-process client: the same Client, with the same semantics, over an
// in-memory connection to this hub instead of the network. A game server that is its own hub
// publishes and subscribes with it.
func (h *Hub) Connect(ctx context.Context, cfg Config) (*Client, error) {
	cfg.Session.Core.Dial = h.local.dial
	return Dial(ctx, "inproc", cfg)
}

// attach makes s a member: its messages are handled as they arrive, on its reader.
func (h *Hub) attach(s *oneway.Session, ln *oneway.Listener) {
	m := &member{hub: h, sess: s, id: s.ID(), ln: ln}
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		s.Abort()
		return
	}
	h.members[m] = struct{}{}
	h.mu.Unlock()
	s.OnClose(m.closed)
	s.OnArrival(m.drain)
	m.drain() // what arrived before OnArrival was set
}

// housekeep sends, as room opens, the outcomes and notices that found a client's session full.
// It is the hub's one goroutine besides its Serve loops.
func (h *Hub) housekeep() {
	defer close(h.houseDone)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		h.mu.Lock()
		var waiting []*member
		for m := range h.members {
			if h.paused.Load() {
				break
			}
			if m.hasWaiting.Load() {
				waiting = append(waiting, m)
			}
		}
		h.mu.Unlock()
		left := false
		for _, m := range waiting {
			if !m.flushWaiting() {
				left = true
			} else if m.throttled.Swap(false) {
				m.drain() // what it sent while throttled waits in its session
			}
		}
		if left {
			t.Reset(5 * time.Millisecond) // room opens as the client reads: look again soon
		}
		select {
		case _, ok := <-h.kick:
			if !ok {
				return
			}
		case <-t.C:
		}
	}
}

func (h *Hub) kickHousekeeper() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// forget removes m once its session ended.
func (h *Hub) forget(m *member) {
	h.mu.Lock()
	delete(h.members, m)
	if m.inbox != "" && h.inboxes[m.inbox] == m {
		delete(h.inboxes, m.inbox)
	}
	h.mu.Unlock()
}

// claimInbox reserves inbox for m, unless another member has it.
func (h *Hub) claimInbox(m *member, inbox string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if other, taken := h.inboxes[inbox]; taken && other != m {
		return false
	}
	h.inboxes[inbox] = m
	return true
}

// authenticate runs HubConfig.Authenticate, turning a panic in it into a refusal.
func (h *Hub) authenticate(info ConnectInfo) (p *Permissions, err error) {
	if h.cfg.Authenticate == nil {
		return nil, nil
	}
	defer func() {
		if r := recover(); r != nil {
			h.log.Error().Str("panic", fmt.Sprint(r)).Msg("pubsub Authenticate panicked; client refused")
			p, err = nil, errors.New("the hub failed to check the credential")
		}
	}()
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.Session.Core.HandshakeTimeout+DefaultTimeout)
	defer cancel()
	return h.cfg.Authenticate(ctx, info)
}

// sessionError is how a member's failed share reads when its session ended.
func sessionError(err error) error {
	switch {
	case errors.Is(err, core.ErrSessionLost):
		return ErrSessionLost
	case err == nil:
		return ErrSessionClosed
	}
	return err
}
