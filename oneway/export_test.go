package oneway

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/testkit"
)

// movingServer is a listener whose clients find it through a resolver, so that it can move.
type movingServer struct {
	t    *testing.T
	addr atomic.Pointer[string]
	ln   *Listener
	old  []*Listener
}

func newMovingServer(t *testing.T, cfg Config) *movingServer {
	t.Helper()
	ln, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &movingServer{t: t, ln: ln}
	a := ln.Addr().String()
	m.addr.Store(&a)
	return m
}

// dial opens a client that follows the server where it moves, and the server's session for it.
func (m *movingServer) dial(cfg Config) (client, server *Session) {
	m.t.Helper()
	ctx := testCtx(m.t)
	cfg.Core.Resolver = core.ResolverFunc(func(context.Context, string) (string, error) { return *m.addr.Load(), nil })
	cfg.Core.BackoffMin, cfg.Core.BackoffMax = time.Millisecond, 5*time.Millisecond
	c, err := Dial(ctx, "the server", cfg)
	if err != nil {
		m.t.Fatal(err)
	}
	s, err := m.ln.Accept(ctx)
	if err != nil {
		m.t.Fatal(err)
	}
	return c, s
}

// dialOwned is dial for a test that moves the one client's server: when the test ends, the
// client is aborted, the listeners closed, and the client's goroutines awaited.
func (m *movingServer) dialOwned(cfg Config) (client, server *Session) {
	m.t.Helper()
	c, s := m.dial(cfg)
	m.t.Cleanup(func() {
		c.Abort()
		m.close()
		waitSessions(m.t, c)
	})
	return c, s
}

// move pauses and exports the listener, imports its state on a new port and points the clients
// there; the new listener is still paused. It returns the sessions the application had accepted.
func (m *movingServer) move(cfg Config) map[uint64]*Session {
	m.t.Helper()
	ctx := testCtx(m.t)
	if err := m.ln.Pause(ctx); err != nil {
		m.t.Fatal(err)
	}
	st, err := m.ln.Export()
	if err != nil {
		m.t.Fatal(err)
	}
	return m.importState(st, cfg)
}

func (m *movingServer) importState(st ListenerState, cfg Config) map[uint64]*Session {
	m.t.Helper()
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		m.t.Fatal(err)
	}
	ln, ss, err := NewListenerFrom(nl, cfg, st)
	if err != nil {
		_ = nl.Close()
		m.t.Fatal(err)
	}
	m.old = append(m.old, m.ln)
	_ = m.ln.Close()
	m.ln = ln
	a := ln.Addr().String()
	m.addr.Store(&a)
	byID := make(map[uint64]*Session, len(ss))
	for _, s := range ss {
		byID[s.ID()] = s
	}
	return byID
}

func (m *movingServer) close() {
	_ = m.ln.Close()
	for _, l := range m.old {
		_ = l.Close()
	}
}

func waitSessions(t *testing.T, ss ...*Session) {
	t.Helper()
	for _, s := range ss {
		select {
		case <-s.Done():
		case <-time.After(10 * time.Second):
			t.Errorf("session %d did not finish", s.ID())
		}
	}
}

func recvData(t *testing.T, s *Session) *Delivery {
	t.Helper()
	d, err := s.Recv(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestExportCarriesTickets moves a server with tickets at every stage and received messages at
// every stage of their attempts: the tickets the old process followed fail there with
// ErrSessionMoved and go on in the new one, ending as the client settles; the messages come out
// of the new process's Recv with the attempts they had.
func TestExportCarriesTickets(t *testing.T) {
	base := runtime.NumGoroutine()
	ctx := testCtx(t)
	cfg := Config{MaxInFlight: 4}
	m := newMovingServer(t, cfg)
	c, s := m.dial(cfg)
	defer func() {
		c.Abort()
		m.close()
		waitSessions(t, c)
		testkit.CheckGoroutines(t, base)
	}()

	// The server's tickets: 1 processed (ended), 2 delivered, 3 pending, 4 at AckNone (ended).
	var tickets []*Ticket
	for i, level := range []AckLevel{AckProcessed, AckProcessed, AckProcessed, AckNone} {
		tk, err := s.Send(ctx, []byte{byte('a' + i)}, level)
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	d1 := recvData(t, c)
	d2 := recvData(t, c)
	if err := d1.Confirm(); err != nil {
		t.Fatal(err)
	}
	if st, err := tickets[0].Wait(ctx); st != StatusProcessed || err != nil {
		t.Fatalf("ticket 1: %v %v", st, err)
	}
	waitDelivered(t, tickets[1])
	if _, err := tickets[3].Wait(ctx); err != nil { // AckNone: ends once sent
		t.Fatal(err)
	}

	// The client's messages: x held at its second attempt, y rejected once (waits for its
	// second), z unread.
	for _, b := range []string{"x", "y", "z"} {
		if _, err := c.Send(ctx, []byte(b), AckProcessed); err != nil {
			t.Fatal(err)
		}
	}
	dx, dy := recvData(t, s), recvData(t, s)
	if string(dx.Data) != "x" || string(dy.Data) != "y" {
		t.Fatalf("got %q, %q", dx.Data, dy.Data)
	}
	if err := dx.Reject(errors.New("not now")); err != nil {
		t.Fatal(err)
	}
	if dx = recvData(t, s); string(dx.Data) != "x" || dx.Attempt != 2 {
		t.Fatalf("got %q attempt %d, want x's second attempt", dx.Data, dx.Attempt)
	}
	if err := dy.Reject(errors.New("not now")); err != nil {
		t.Fatal(err)
	}

	imported := m.move(cfg)
	for i, tk := range tickets[1:3] {
		if st, err := tk.Wait(ctx); st != StatusFailed || !errors.Is(err, ErrSessionMoved) {
			t.Fatalf("old process's ticket %d: %v %v, want failed, moved", i+2, st, err)
		}
	}
	if err := dx.Confirm(); !errors.Is(err, ErrSessionMoved) && !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("confirming in the old process after the move: %v", err)
	}
	if _, err := s.Send(ctx, []byte("late"), AckNone); !errors.Is(err, ErrSessionMoved) {
		t.Fatalf("sending in the old process after the move: %v", err)
	}
	ns := imported[s.ID()]
	if ns == nil {
		t.Fatalf("session %d not imported as accepted: %v", s.ID(), imported)
	}
	nt := ns.Tickets()
	if len(nt) != 2 || nt[0].ID() != tickets[1].ID() || nt[1].ID() != tickets[2].ID() {
		t.Fatalf("imported tickets %v, want %d and %d", ticketIDs(nt), tickets[1].ID(), tickets[2].ID())
	}
	if nt[0].Status() != StatusDelivered || nt[1].Status() != StatusPending ||
		nt[0].Level() != AckProcessed || nt[1].Level() != AckProcessed {
		t.Fatalf("imported tickets at %v/%v, levels %v/%v", nt[0].Status(), nt[1].Status(), nt[0].Level(), nt[1].Level())
	}
	if err := m.ln.Continue(); err != nil {
		t.Fatal(err)
	}

	// The client settles what the old process sent; the new one hears it.
	if err := d2.Confirm(); err != nil {
		t.Fatal(err)
	}
	d3 := recvData(t, c)
	if string(d3.Data) != "c" {
		t.Fatalf("client got %q, want c", d3.Data)
	}
	if err := d3.Confirm(); err != nil {
		t.Fatal(err)
	}
	if d4 := recvData(t, c); string(d4.Data) != "d" {
		t.Fatalf("client got %q, want d", d4.Data)
	} else if err := d4.Confirm(); err != nil {
		t.Fatal(err)
	}
	for _, tk := range nt {
		if st, err := tk.Wait(ctx); st != StatusProcessed || err != nil {
			t.Fatalf("imported ticket %d: %v %v", tk.ID(), st, err)
		}
	}

	// The new process hands out x (held when exported: its attempt again, as it may have been
	// seen), y (its second attempt) and z (new), and the client hears each processed.
	want := []struct {
		data        string
		attempt     int
		redelivered bool
	}{{"x", 2, true}, {"y", 2, true}, {"z", 1, false}}
	got := map[string]*Delivery{}
	for range want {
		d := recvData(t, ns)
		got[string(d.Data)] = d
	}
	for _, w := range want {
		d := got[w.data]
		if d == nil || d.Attempt != w.attempt || d.Redelivered != w.redelivered {
			t.Fatalf("%s: got %+v, want attempt %d redelivered %v", w.data, d, w.attempt, w.redelivered)
		}
		if err := d.Confirm(); err != nil {
			t.Fatal(err)
		}
	}
	if tk, err := ns.Send(ctx, []byte("after"), AckProcessed); err != nil {
		t.Fatal(err)
	} else if d := recvData(t, c); string(d.Data) != "after" {
		t.Fatalf("client got %q", d.Data)
	} else if err := d.Confirm(); err != nil {
		t.Fatal(err)
	} else if st, err := tk.Wait(ctx); st != StatusProcessed || err != nil {
		t.Fatalf("new ticket: %v %v", st, err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitSessions(t, ns)
}

// TestExportTwice moves a server twice, the second time before its application took the
// imported sessions back (Accept): what it carries over from the first import goes on.
func TestExportTwice(t *testing.T) {
	ctx := testCtx(t)
	cfg := Config{}
	m := newMovingServer(t, cfg)
	c, s := m.dialOwned(cfg)
	tk, err := s.Send(ctx, []byte("one"), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	d := recvData(t, c)
	waitDelivered(t, tk)
	if _, err := c.Send(ctx, []byte("two"), AckProcessed); err != nil {
		t.Fatal(err)
	}
	if d := recvData(t, s); string(d.Data) != "two" {
		t.Fatalf("got %q", d.Data)
	} else if err := d.Reject(errors.New("later")); err != nil {
		t.Fatal(err)
	}

	// First move: the state goes to a listener whose application never accepts the session.
	ctxPause := testCtx(t)
	if err := m.ln.Pause(ctxPause); err != nil {
		t.Fatal(err)
	}
	st, err := m.ln.Export()
	if err != nil {
		t.Fatal(err)
	}
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mid, _, err := NewListenerFrom(nl, cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := mid.Pause(ctx); err != nil { // (already paused: a no-op)
		t.Fatal(err)
	}
	st2, err := mid.Export()
	if err != nil {
		t.Fatal(err)
	}
	_ = mid.Close()
	if len(st2.Sessions) != 1 || len(st2.Sessions[0].Tickets) != 1 || len(st2.Sessions[0].Attempts) != 1 {
		t.Fatalf("second export: %+v", st2.Sessions)
	}
	imported := m.importState(st2, cfg)
	ns := imported[s.ID()]
	if ns == nil {
		t.Fatal("session not imported")
	}
	if err := m.ln.Continue(); err != nil {
		t.Fatal(err)
	}
	nt := ns.Tickets()
	if len(nt) != 1 || nt[0].ID() != tk.ID() || nt[0].Status() != StatusDelivered {
		t.Fatalf("imported tickets %v", ticketIDs(nt))
	}
	if err := d.Confirm(); err != nil {
		t.Fatal(err)
	}
	if st, err := nt[0].Wait(ctx); st != StatusProcessed || err != nil {
		t.Fatalf("ticket: %v %v", st, err)
	}
	if d := recvData(t, ns); string(d.Data) != "two" || d.Attempt != 2 {
		t.Fatalf("got %q attempt %d", d.Data, d.Attempt)
	}
	ns.Abort()
	waitSessions(t, ns)
}

// TestImportRefusesBadState: a oneway state that does not fit its core state is refused whole.
func TestImportRefusesBadState(t *testing.T) {
	ctx := testCtx(t)
	cfg := Config{}
	m := newMovingServer(t, cfg)
	c, s := m.dialOwned(cfg)
	if _, err := s.Send(ctx, []byte("one"), AckProcessed); err != nil {
		t.Fatal(err)
	}
	recvData(t, c)
	if err := m.ln.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := m.ln.Export()
	if err != nil {
		t.Fatal(err)
	}
	next := st.Core.Sessions[0].Send.NextMID
	bad := map[string]func(st *ListenerState){
		"missing session":  func(st *ListenerState) { st.Sessions = nil },
		"other id":         func(st *ListenerState) { st.Sessions[0].ID++ },
		"mark past next":   func(st *ListenerState) { st.Sessions[0].ProcDone = next },
		"ticket past next": func(st *ListenerState) { st.Sessions[0].Tickets = []TicketState{{ID: next, Level: AckProcessed}} },
		"tickets unordered": func(st *ListenerState) {
			st.Sessions[0].Tickets = append(st.Sessions[0].Tickets, st.Sessions[0].Tickets...)
		},
		"bad level":         func(st *ListenerState) { st.Sessions[0].Tickets[0].Level = 7 },
		"attempt of unsent": func(st *ListenerState) { st.Sessions[0].Attempts = []AttemptState{{ID: 99, Failed: 1}} },
		"negative attempts": func(st *ListenerState) { st.Sessions[0].Attempts = []AttemptState{{ID: 1, Failed: -1}} },
	}
	if len(st.Sessions) != 1 || len(st.Sessions[0].Tickets) != 1 {
		t.Fatalf("exported %+v", st.Sessions)
	}
	for name, spoil := range bad {
		t.Run(name, func(t *testing.T) {
			cp := st
			cp.Sessions = append([]SessionState(nil), st.Sessions...)
			if len(cp.Sessions) > 0 {
				cp.Sessions[0].Tickets = append([]TicketState(nil), st.Sessions[0].Tickets...)
			}
			spoil(&cp)
			nl, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer nl.Close()
			if _, _, err := NewListenerFrom(nl, cfg, cp); !errors.Is(err, core.ErrInvalidState) {
				t.Fatalf("imported a state with %s: %v", name, err)
			}
		})
	}
}

// waitDelivered waits until the receiver has the ticket's message.
func waitDelivered(t *testing.T, tk *Ticket) {
	t.Helper()
	ch := make(chan struct{})
	tk.OnDelivered(func(*Ticket) { close(ch) })
	select {
	case <-ch:
	case <-testCtx(t).Done():
		t.Fatalf("ticket %d never delivered (%v)", tk.ID(), tk.Status())
	}
}

func ticketIDs(ts []*Ticket) []uint64 {
	ids := make([]uint64, len(ts))
	for i, t := range ts {
		ids[i] = t.ID()
	}
	return ids
}

// TestPauseWaitsForHandlers: Pause lets the handler calls under way finish and starts no new
// one, so that the exported state and what the application handled agree: a message handled
// before the move is not handled again after it, and one received but not handled is handled
// once, where the state went.
func TestPauseWaitsForHandlers(t *testing.T) {
	ctx := testCtx(t)
	cfg := Config{}
	m := newMovingServer(t, cfg)
	c, s := m.dialOwned(cfg)
	entered, release := make(chan string, 4), make(chan struct{})
	handled := make(chan string, 4)
	handler := func(_ context.Context, d *Delivery) error {
		entered <- string(d.Data)
		<-release
		handled <- string(d.Data)
		return nil
	}
	if err := s.Handle(handler); err != nil {
		t.Fatal(err)
	}
	t1, err := c.Send(ctx, []byte("one"), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-entered; got != "one" {
		t.Fatalf("handler got %q", got)
	}
	paused := make(chan error, 1)
	go func() { paused <- m.ln.Pause(ctx) }()
	// "two" reaches the server only if it was sent before the pause cut the connection; either
	// way no handler may start on it while paused.
	t2, err := c.Send(ctx, []byte("two"), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-paused:
		t.Fatalf("Pause returned (%v) with a handler call under way", err)
	case got := <-entered:
		t.Fatalf("a handler started on %q while pausing", got)
	case <-time.After(50 * time.Millisecond): // (the absence of an event: nothing to await)
	}
	close(release)
	if err := <-paused; err != nil {
		t.Fatal(err)
	}
	if got := <-handled; got != "one" {
		t.Fatalf("handled %q", got)
	}
	st, err := m.ln.Export()
	if err != nil {
		t.Fatal(err)
	}
	imported := m.importState(st, cfg)
	ns := imported[s.ID()]
	if err := ns.Handle(func(_ context.Context, d *Delivery) error { handled <- string(d.Data); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := m.ln.Continue(); err != nil {
		t.Fatal(err)
	}
	for _, tk := range []*Ticket{t1, t2} {
		if st, err := tk.Wait(ctx); st != StatusProcessed || err != nil {
			t.Fatalf("ticket %d: %v %v", tk.ID(), st, err)
		}
	}
	if got := <-handled; got != "two" {
		t.Fatalf("after the move, handled %q", got)
	}
	select {
	case got := <-handled:
		t.Fatalf("handled %q again", got)
	default:
	}
}

// TestExportDuringSends: sends under way while the listener exports. A send the move overtook
// fails with ErrSessionMoved, and its ticket must not be in the state (the import refused a
// ticket for a message the core state did not have).
func TestExportDuringSends(t *testing.T) {
	for round := range 20 {
		ctx := testCtx(t)
		cfg := Config{}
		m := newMovingServer(t, cfg)
		c, s := m.dial(cfg)
		if err := c.Handle(func(context.Context, *Delivery) error { return nil }); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var sent atomic.Int64
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if _, err := s.Send(ctx, []byte("x"), AckProcessed); err != nil {
						if !errors.Is(err, ErrSessionMoved) {
							t.Errorf("send: %v", err)
						}
						return
					}
					sent.Add(1)
				}
			}()
		}
		for sent.Load() < int64(10+round*7) {
			runtime.Gosched()
		}
		if err := m.ln.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := m.ln.Export()
		if err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		nl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, _, err := NewListenerFrom(nl, cfg, st)
		if err != nil {
			_ = nl.Close()
			t.Fatalf("round %d: %v", round, err)
		}
		_ = ln.Close()
		c.Abort()
		m.close()
		waitSessions(t, c)
	}
}
