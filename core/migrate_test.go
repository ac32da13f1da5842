package core

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Tests of Listener.Pause, Export, NewListenerFrom, Continue and Shutdown: a server moves to
// another listener, on another port, with all its sessions, and its clients resume there.

// movable is a server whose clients find it through a Resolver the test points elsewhere.
type movable struct {
	t       *testing.T
	addr    atomic.Pointer[string] // where the clients' Resolver sends them
	ln      *Listener              // the listener serving now
	old     []*Listener            // listeners left behind
	moving  []*lineCounter         // per client: log lines saying the server was moving
	clients []*Session
	servers []*Session // accepted by the first listener, in client order
	base    int
}

// lineCounter counts the log lines that contain a word; zerolog writes one line per Write.
type lineCounter struct {
	word string
	n    atomic.Int64
}

func (c *lineCounter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(c.word)) {
		c.n.Add(1)
	}
	return len(p), nil
}

// newMovable starts a listener and dials n clients to it.
func newMovable(t *testing.T, n int, clientCfg, serverCfg Config) *movable {
	t.Helper()
	m := &movable{t: t, base: testGoroutines()}
	ln, err := Listen("127.0.0.1:0", serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	m.ln = ln
	a := ln.Addr().String()
	m.addr.Store(&a)
	ctx := testCtx(t)
	for i := 0; i < n; i++ {
		cfg := clientCfg
		lc := &lineCounter{word: RejectMoving.String()}
		m.moving = append(m.moving, lc)
		cfg.Logger = zerolog.New(lc).Level(zerolog.DebugLevel)
		cfg.Resolver = ResolverFunc(func(context.Context, string) (string, error) { return *m.addr.Load(), nil })
		c, err := Dial(ctx, "the server", cfg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.ID() != c.ID() {
			t.Fatalf("accepted session %d for client %d", s.ID(), c.ID())
		}
		m.clients = append(m.clients, c)
		m.servers = append(m.servers, s)
	}
	t.Cleanup(m.cleanup)
	return m
}

func (m *movable) cleanup() {
	for _, c := range m.clients {
		c.Abort()
	}
	_ = m.ln.Close()
	for _, l := range m.old {
		_ = l.Close()
	}
	waitDone(m.t, m.clients...)
	checkGoroutines(m.t, m.base)
}

// pauseExport pauses the serving listener and exports its state.
func (m *movable) pauseExport() ListenerState {
	m.t.Helper()
	if err := m.ln.Pause(testCtx(m.t)); err != nil {
		m.t.Fatal(err)
	}
	st, err := m.ln.Export()
	if err != nil {
		m.t.Fatal(err)
	}
	return st
}

// awaitMovingAnswers waits until every client has been told at least once that the server is
// moving.
func (m *movable) awaitMovingAnswers() {
	m.t.Helper()
	ctx := testCtx(m.t)
	for i, lc := range m.moving {
		for lc.n.Load() == 0 {
			select {
			case <-ctx.Done():
				m.t.Fatalf("client %d was never told the server is moving (state %v)", i, m.clients[i].State())
			case <-time.After(time.Millisecond):
			}
		}
	}
}

// importAt rebuilds st in a new listener on another port, points the clients there, and closes
// the old listener. It returns the imported sessions by ID.
func (m *movable) importAt(st ListenerState, cfg Config) map[uint64]*Session {
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
	if ln.Addr().String() == m.ln.Addr().String() {
		m.t.Fatal("imported on the same address")
	}
	m.old = append(m.old, m.ln)
	old := m.ln
	m.ln = ln
	a := ln.Addr().String()
	m.addr.Store(&a)
	if err := old.Close(); err != nil {
		m.t.Fatal(err)
	}
	byID := make(map[uint64]*Session, len(ss))
	for _, s := range ss {
		byID[s.ID()] = s
	}
	return byID
}

// handle is an application's reference to its session, which an import replaces.
type handle struct {
	mu      sync.Mutex
	s       *Session
	changed chan struct{} // closed when s is replaced
}

func newHandle(s *Session) *handle { return &handle{s: s, changed: make(chan struct{})} }

func (h *handle) get() *Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.s
}

func (h *handle) set(s *Session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.s = s
	close(h.changed)
	h.changed = make(chan struct{})
}

// after waits until the handle is no longer old: the session moved, and the import gave the
// application its new handle.
func (h *handle) after(ctx context.Context, old *Session) (*Session, error) {
	for {
		h.mu.Lock()
		s, ch := h.s, h.changed
		h.mu.Unlock()
		if s != old {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the moved session's new handle: %w", ctx.Err())
		}
	}
}

// endpoint is one side's application in the migration tests. It sends n messages of its own,
// some through a MessageWriter, at all three levels; it receives the peer's while holding
// several at once, settling them out of order, failing some and requeuing others. Every call
// that fails with ErrSessionMoved is made again on the new handle.
type endpoint struct {
	name string
	h    *handle
	rec  *recorder // observes the sending side, across handles
	n    int
	seed uint64

	mu   sync.Mutex
	mids map[uint64]int // MID -> index of each message sent
	last uint64         // MID of the last message sent
}

func newEndpoint(name string, s *Session, n int, seed uint64) *endpoint {
	e := &endpoint{name: name, h: newHandle(s), rec: newRecorder(), n: n, seed: seed, mids: make(map[uint64]int)}
	s.Observe(e.rec)
	return e
}

// adopt gives the endpoint its session's new handle after an import.
func (e *endpoint) adopt(s *Session) {
	s.Observe(e.rec)
	e.h.set(s)
}

// The messages of index i: the index in the first 8 bytes, then bytes derived from (seed, i).
func migrateSize(r *mrand.Rand) int {
	if r.IntN(40) == 0 {
		return 100<<10 + r.IntN(200<<10) // several frames
	}
	return 8 + r.IntN(2000)
}

func migrateLevel(i int) AckLevel { return AckLevel(i % 3) }

// migrateFails says whether the receiver fails message i (it asked for processing).
func migrateFails(i int) bool { return i%5 == 0 && migrateLevel(i) == AckProcessed }

func migrateMessage(seed uint64, i, n int) []byte {
	b := payload(seed, uint64(i), n)
	binary.BigEndian.PutUint64(b, uint64(i))
	return b
}

func checkMigrateMessage(data []byte, seed uint64, i int) error {
	want := migrateMessage(seed, i, len(data))
	if !bytes.Equal(data, want) {
		return fmt.Errorf("message %d: content differs (%d bytes)", i, len(data))
	}
	return nil
}

// send sends the endpoint's n messages. Halfway it calls halfway, which may wait.
func (e *endpoint) send(ctx context.Context, halfway func()) error {
	r := mrand.New(mrand.NewPCG(e.seed, 1))
	for i := 1; i <= e.n; i++ {
		if i == e.n/2 {
			halfway()
		}
		msg := migrateMessage(e.seed, i, migrateSize(r))
		for {
			s := e.h.get()
			var mid uint64
			var err error
			if i%37 == 0 {
				mid, err = writeInChunks(ctx, s, msg, migrateLevel(i))
			} else {
				mid, err = s.Send(ctx, msg, migrateLevel(i))
			}
			if errors.Is(err, ErrSessionMoved) {
				if _, err := e.h.after(ctx, s); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: send %d: %w", e.name, i, err)
			}
			e.mu.Lock()
			if mid <= e.last {
				e.mu.Unlock()
				return fmt.Errorf("%s: message %d got MID %d after %d", e.name, i, mid, e.last)
			}
			e.mids[mid], e.last = i, mid
			e.mu.Unlock()
			break
		}
	}
	return nil
}

// writeInChunks sends msg through a MessageWriter, in three writes.
func writeInChunks(ctx context.Context, s *Session, msg []byte, level AckLevel) (uint64, error) {
	w, err := s.NewMessage(ctx, level)
	if err != nil {
		return 0, err
	}
	for _, part := range [][]byte{msg[:len(msg)/3], msg[len(msg)/3 : 2*len(msg)/3], msg[2*len(msg)/3:]} {
		if _, err := w.Write(part); err != nil {
			_ = w.Cancel()
			return 0, err
		}
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	return w.ID(), nil
}

// receive receives the peer's n messages (seed is the peer's).
func (e *endpoint) receive(ctx context.Context, seed uint64) error {
	type heldMsg struct {
		i   int
		out bool // given back (Requeue, or the move): Recv returns it again
	}
	r := mrand.New(mrand.NewPCG(e.seed, 2))
	held := map[uint64]*heldMsg{}
	settled := map[uint64]bool{}
	next := 1
	s := e.h.get()
	moved := func() error {
		var err error
		if s, err = e.h.after(ctx, s); err != nil {
			return err
		}
		for _, hm := range held {
			hm.out = true // the import gives back whatever was held
		}
		return nil
	}
	for next <= e.n || len(held) > 0 {
		if next <= e.n || anyOut(held, func(h *heldMsg) bool { return h.out }) {
			m, err := s.Recv(ctx)
			if errors.Is(err, ErrSessionMoved) {
				if err := moved(); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: recv (next %d): %w", e.name, next, err)
			}
			if len(m.Data) < 8 {
				return fmt.Errorf("%s: message %d of %d bytes", e.name, m.ID, len(m.Data))
			}
			i := int(binary.BigEndian.Uint64(m.Data))
			switch hm := held[m.ID]; {
			case settled[m.ID]:
				return fmt.Errorf("%s: message %d (index %d) came back after it was settled", e.name, m.ID, i)
			case hm != nil && hm.out && hm.i == i:
				hm.out = false
			case hm != nil:
				return fmt.Errorf("%s: message %d (index %d) came twice", e.name, m.ID, i)
			case i != next:
				return fmt.Errorf("%s: message %d has index %d, expected %d", e.name, m.ID, i, next)
			default:
				next++
				held[m.ID] = &heldMsg{i: i}
			}
			if m.Level != migrateLevel(i) {
				return fmt.Errorf("%s: message %d: level %v", e.name, i, m.Level)
			}
			if err := checkMigrateMessage(m.Data, seed, i); err != nil {
				return fmt.Errorf("%s: %w", e.name, err)
			}
		}
		// Hold up to three at once; settle in random order; now and then give one back.
		for len(held) >= 3 || next > e.n && len(held) > 0 {
			var mid uint64
			var hm *heldMsg
			for id, h := range held {
				if !h.out {
					mid, hm = id, h
					break
				}
			}
			if hm == nil {
				break // all given back: receive them first
			}
			var err error
			if r.IntN(8) == 0 {
				if err = s.Requeue(mid); err == nil {
					hm.out = true
				}
			} else {
				var fail error
				if migrateFails(hm.i) {
					fail = fmt.Errorf("index %d refused", hm.i)
				}
				if err = s.Settle(mid, fail); err == nil {
					settled[mid] = true
					delete(held, mid)
				}
			}
			if errors.Is(err, ErrSessionMoved) {
				if err := moved(); err != nil {
					return err
				}
				break
			}
			if err != nil {
				return fmt.Errorf("%s: settle %d: %w", e.name, mid, err)
			}
		}
	}
	return nil
}

func anyOut[T any](m map[uint64]T, f func(T) bool) bool {
	for _, v := range m {
		if f(v) {
			return true
		}
	}
	return false
}

// verifySent checks what the endpoint heard of its messages: every one processed, the right
// ones failed, each once and before the processed mark passed it.
func (e *endpoint) verifySent(ctx context.Context) error {
	e.mu.Lock()
	last, mids := e.last, e.mids
	e.mu.Unlock()
	if err := e.rec.await(ctx, func(r *recorder) bool { return r.progress.Processed >= last }); err != nil {
		return fmt.Errorf("%s: %w", e.name, err)
	}
	if a := e.rec.anomalies(); len(a) > 0 {
		return fmt.Errorf("%s: %v", e.name, a)
	}
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	for mid, i := range mids {
		_, failed := e.rec.failed[mid]
		if failed != migrateFails(i) {
			return fmt.Errorf("%s: message %d (index %d): failed %v", e.name, mid, i, failed)
		}
	}
	for mid := range e.rec.failed {
		if _, ok := mids[mid]; !ok {
			return fmt.Errorf("%s: failure reported for message %d, never sent", e.name, mid)
		}
	}
	return nil
}

// migrateCounts sums what an export caught in flight.
type migrateCounts struct{ frames, held, waiting, partial, fails, sessions int }

func countState(st ListenerState) migrateCounts {
	var c migrateCounts
	for _, s := range st.Sessions {
		c.sessions++
		c.frames += int(s.Send.NextPID - s.Send.FirstPID)
		for _, m := range s.Recv.Messages {
			switch {
			case m.Delivered && !m.Settled:
				c.held++
			case !m.Delivered:
				c.waiting++
			}
		}
		if s.Recv.Partial != nil {
			c.partial++
		}
		c.fails += len(s.Recv.Fails)
	}
	return c
}

// TestMigrate moves a server with its sessions, mid-traffic, to a listener on another port.
// Both sides send all three levels, the receivers hold several messages, settle them out of
// order, fail some and requeue others; some messages go through a MessageWriter. Every message
// must arrive once, in order, intact; every failure and processed mark must reach its sender.
func TestMigrate(t *testing.T) {
	for _, tc := range []struct{ clients, n int }{{1, 1500}, {50, 60}} {
		t.Run(fmt.Sprintf("clients=%d", tc.clients), func(t *testing.T) {
			testMigrate(t, tc.clients, tc.n)
		})
	}
}

func testMigrate(t *testing.T, clients, n int) {
	cfg := Config{MaxInFlight: 4, AckDelay: time.Millisecond}
	ccfg := cfg
	ccfg.BackoffMin, ccfg.BackoffMax = time.Millisecond, 20*time.Millisecond
	m := newMovable(t, clients, ccfg, cfg)
	ctx := testCtx(t)
	var servers, cls []*endpoint
	var wg, half sync.WaitGroup
	gate := make(chan struct{})
	halfway := func() { half.Done(); <-gate }
	half.Add(2 * clients)
	errs := make(chan error, 4*clients)
	for k := range clients {
		seed := uint64(1000 + 2*k)
		ce := newEndpoint(fmt.Sprintf("client %d", k), m.clients[k], n, seed)
		se := newEndpoint(fmt.Sprintf("server %d", k), m.servers[k], n, seed+1)
		cls, servers = append(cls, ce), append(servers, se)
		wg.Add(4)
		for _, f := range []func() error{
			func() error { return ce.send(ctx, halfway) },
			func() error { return se.send(ctx, halfway) },
			func() error { return se.receive(ctx, ce.seed) },
			func() error { return ce.receive(ctx, se.seed) },
		} {
			go func() {
				defer wg.Done()
				if err := f(); err != nil {
					errs <- err
				}
			}()
		}
	}
	// Mid-traffic: every sender has sent half its messages and goes on as the pause begins.
	half.Wait()
	close(gate)
	st := m.pauseExport()
	c := countState(st)
	t.Logf("export: %+v", c)
	if c.sessions != clients {
		t.Fatalf("exported %d sessions of %d", c.sessions, clients)
	}
	if c.frames == 0 || c.held+c.waiting == 0 {
		t.Fatalf("the export caught no traffic in flight: the test proves nothing")
	}
	m.awaitMovingAnswers()
	byID := m.importAt(st, cfg)
	for k, se := range servers {
		s := byID[m.clients[k].ID()]
		if s == nil {
			t.Fatalf("session of client %d not imported", k)
		}
		se.adopt(s)
	}
	forged := st.Sessions[0]
	forged.Token[3] ^= 0x40
	if typ, body := rawResume(t, m.ln.Addr().String(), forged.ID, forged.Token); typ != frameReject {
		t.Fatalf("forged resume of an imported session answered %v", typ)
	} else if code, _, _ := parseCodeReason(typ, body); RejectCode(code) != RejectUnknownSession {
		t.Fatalf("forged resume refused with code %d", code)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	for k := range clients {
		for _, e := range []*endpoint{cls[k], servers[k]} {
			if err := e.verifySent(ctx); err != nil {
				t.Error(err)
			}
		}
		if cs := m.clients[k].Stats(); cs.Reconnects == 0 {
			t.Errorf("client %d never reconnected", k)
		}
	}
	if n := m.ln.Sessions(); n != clients {
		t.Errorf("the new listener holds %d sessions", n)
	}
}
