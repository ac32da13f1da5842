package core

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/faultnet"
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

// lineCounter counts the log lines that contain a word; zerolog writes one line per Write. It
// keeps the last lines, for failure messages.
type lineCounter struct {
	word string
	n    atomic.Int64
	mu   sync.Mutex
	last []string
}

func (c *lineCounter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(c.word)) {
		c.n.Add(1)
	}
	c.mu.Lock()
	if len(c.last) == 20 {
		c.last = c.last[1:]
	}
	c.last = append(c.last, string(p))
	c.mu.Unlock()
	return len(p), nil
}

func (c *lineCounter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.last, "")
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
// the old listener. It returns the imported sessions by ID; the new listener is paused until
// the caller, having wrapped them, calls Continue.
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
			switch {
			case i%37 == 0:
				mid, err = writeInChunks(ctx, s, msg, migrateLevel(i))
			case i%3 == 0:
				k := min(len(msg), i%300) // a prefix copied, the rest kept by reference (msg is fresh and never changed)
				mid, err = s.SendShared(ctx, msg[:k], msg[k:], migrateLevel(i))
			default:
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
	// Mid-traffic: every sender has sent half its messages and goes on as the pause begins.
	tr := startMigrationTraffic(ctx, m, n, 1000)
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
	// Until it serves, the new listener tells clients that the server is still moving.
	if typ, code := rawResumeAnswer(t, m.ln.Addr().String(), st.Sessions[0].ID, st.Sessions[0].Token, ackBlock{}); code != RejectMoving {
		t.Fatalf("resume before the import serves: %v %d", typ, code)
	}
	tr.adopt(t, byID)
	if err := m.ln.Continue(); err != nil {
		t.Fatal(err)
	}
	forged := st.Sessions[0]
	forged.Token[3] ^= 0x40
	if typ, body := rawResume(t, m.ln.Addr().String(), forged.ID, forged.Token); typ != frameReject {
		t.Fatalf("forged resume of an imported session answered %v", typ)
	} else if code, _, _ := parseCodeReason(typ, body); RejectCode(code) != RejectUnknownSession {
		t.Fatalf("forged resume refused with code %d", code)
	}
	if !tr.finish(ctx, t) {
		return
	}
	if n := m.ln.Sessions(); n != clients {
		t.Errorf("the new listener holds %d sessions", n)
	}
}

// migrationTraffic is both ends of every session of a movable sending, settling and checking
// messages each way while the server moves.
type migrationTraffic struct {
	m                *movable
	clients, servers []*endpoint
	wg               sync.WaitGroup
	errs             chan error
}

// startMigrationTraffic starts n messages each way on every session of m, with seeds from seed,
// and returns once every sender has sent half of them; the senders go on from there.
func startMigrationTraffic(ctx context.Context, m *movable, n int, seed uint64) *migrationTraffic {
	tr := &migrationTraffic{m: m, errs: make(chan error, 4*len(m.clients))}
	var half sync.WaitGroup
	gate := make(chan struct{})
	halfway := func() { half.Done(); <-gate }
	half.Add(2 * len(m.clients))
	for k := range m.clients {
		s := seed + uint64(2*k)
		ce := newEndpoint(fmt.Sprintf("client %d", k), m.clients[k], n, s)
		se := newEndpoint(fmt.Sprintf("server %d", k), m.servers[k], n, s+1)
		tr.clients, tr.servers = append(tr.clients, ce), append(tr.servers, se)
		tr.wg.Add(4)
		for _, f := range []func() error{
			func() error { return ce.send(ctx, halfway) },
			func() error { return se.send(ctx, halfway) },
			func() error { return se.receive(ctx, ce.seed) },
			func() error { return ce.receive(ctx, se.seed) },
		} {
			go func() {
				defer tr.wg.Done()
				if err := f(); err != nil {
					tr.errs <- err
				}
			}()
		}
	}
	half.Wait()
	close(gate)
	return tr
}

// adopt hands the server ends the imported sessions, by ID.
func (tr *migrationTraffic) adopt(t *testing.T, byID map[uint64]*Session) {
	t.Helper()
	for k, se := range tr.servers {
		s := byID[tr.m.clients[k].ID()]
		if s == nil {
			t.Fatalf("session of client %d not imported", k)
		}
		se.adopt(s)
	}
}

// finish waits for the traffic to end and checks that every message arrived once, in order,
// with every failure and processed mark reaching its sender, and that every client resumed. It
// reports whether all went well.
func (tr *migrationTraffic) finish(ctx context.Context, t *testing.T) bool {
	t.Helper()
	tr.wg.Wait()
	close(tr.errs)
	for err := range tr.errs {
		t.Error(err)
	}
	if t.Failed() {
		return false
	}
	m := tr.m
	for k := range tr.clients {
		for _, e := range []*endpoint{tr.clients[k], tr.servers[k]} {
			if err := e.verifySent(ctx); err != nil {
				t.Errorf("%v\nclient: %v %v %s\nclient log: %s", err, m.clients[k].State(), m.clients[k].Err(), m.clients[k].debugState(), m.moving[k])
			}
		}
		// A client whose traffic was all through before the pause may still be resuming.
		if err := awaitResumed(ctx, tr.clients[k].rec); err != nil {
			t.Errorf("client %d: %v", k, err)
		}
	}
	return !t.Failed()
}

// awaitResumed waits until r heard its session connect again after it was disconnected.
func awaitResumed(ctx context.Context, r *recorder) error {
	return r.await(ctx, func(r *recorder) bool {
		down := false
		for _, st := range r.states {
			down = down || st == StateDisconnected
			if down && st == StateConnected {
				return true
			}
		}
		return false
	})
}

// rPIDOf is the last packet s received, as published by its reader.
func rPIDOf(s *Session) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rPID
}

// awaitState waits until r heard state st.
func awaitState(ctx context.Context, r *recorder, st State) error {
	return r.await(ctx, func(r *recorder) bool {
		for _, x := range r.states {
			if x == st {
				return true
			}
		}
		return false
	})
}

// TestMigratePartialMessage: at the pause, the server has received three of the four frames of
// a message (its window is full) and has a MessageWriter open; the client has one open too.
// The server's frames must move with it (the client will not send them again), the server's
// open message must be cancelled, and the client's must arrive whole at the new place.
func TestMigratePartialMessage(t *testing.T) {
	scfg := Config{MaxMessageSize: 256 << 10, ReceiveBufferBytes: 300 << 10, AckDelay: time.Millisecond}
	ccfg := Config{BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond}
	m := newMovable(t, 1, ccfg, scfg)
	ctx := testCtx(t)
	c, s := m.clients[0], m.servers[0]
	a, b := payload(1, 1, 100<<10), payload(1, 2, 250<<10)
	if _, err := c.Send(ctx, a, AckNone); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, b, AckProcessed); err != nil {
		t.Fatal(err)
	}
	// a is 2 frames; with a unread, the window lets 3 of b's 4 frames through.
	if err := awaitRPID(ctx, s, 5); err != nil {
		t.Fatal(err)
	}
	sw, err := s.NewMessage(ctx, AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sw.Write([]byte("never seen")); err != nil {
		t.Fatal(err)
	}
	cw, err := c.NewMessage(ctx, AckDelivered)
	if err != nil {
		t.Fatal(err)
	}
	cpart := payload(1, 3, 90<<10)
	if _, err := cw.Write(cpart[:40<<10]); err != nil {
		t.Fatal(err)
	}

	st := m.pauseExport()
	ss := st.Sessions[0]
	if p := ss.Recv.Partial; p == nil || p.ID != 2 || !bytes.Equal(p.Data, b[:3*MaxFramePayload]) {
		t.Fatalf("partial message not exported: %+v", p)
	}
	if len(ss.Recv.Messages) != 1 || !bytes.Equal(ss.Recv.Messages[0].Data, a) || ss.Recv.Messages[0].Delivered {
		t.Fatalf("unread message not exported: %+v", ss.Recv.Messages)
	}
	frames, err := ss.Send.check(m.ln.cfg)
	if err != nil || len(frames) == 0 || frames[len(frames)-1].flags&flagCancel == 0 || frames[len(frames)-1].mid != sw.ID() {
		t.Fatalf("the open MessageWriter was not cancelled in the export: %v %+v", err, frames)
	}
	if _, err := sw.Write([]byte("more")); !errors.Is(err, ErrSessionMoved) {
		t.Fatalf("Write on a moved session's writer: %v", err)
	}
	// The client goes on writing while the server moves.
	if _, err := cw.Write(cpart[40<<10:]); err != nil {
		t.Fatal(err)
	}

	s = m.importAt(st, scfg)[ss.ID]
	if s == nil {
		t.Fatal("session not imported")
	}
	if err := m.ln.Continue(); err != nil {
		t.Fatal(err)
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]byte{a, b, cpart} {
		msg, err := s.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if msg.ID != uint64(i+1) || !bytes.Equal(msg.Data, want) {
			t.Fatalf("message %d: ID %d, %d bytes, equal %v", i+1, msg.ID, len(msg.Data), bytes.Equal(msg.Data, want))
		}
		if err := s.Settle(msg.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
	id, err := s.Send(ctx, []byte("after the move"), AckNone)
	if err != nil || id != sw.ID()+1 {
		t.Fatalf("send after the move: ID %d (cancelled %d), %v", id, sw.ID(), err)
	}
	msg, err := c.Recv(ctx)
	if err != nil || msg.ID != id || string(msg.Data) != "after the move" {
		t.Fatalf("client got %d %q %v; the cancelled message must not show", msg.ID, msg.Data, err)
	}
}

// TestPauseRetryAndContinue: while paused, a resume is answered RejectMoving and the client keeps
// its session; a new session is refused as busy; no resume window runs; the application's calls
// work on the buffers; Continue serves again and everything done meanwhile goes through.
func TestPauseRetryAndContinue(t *testing.T) {
	const window = 300 * time.Millisecond
	ccfg := Config{BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond}
	m := newMovable(t, 1, ccfg, Config{MaxInFlight: 2, ResumeWindow: window})
	ctx := testCtx(t)
	c, s := m.clients[0], m.servers[0]
	crec := newRecorder()
	c.Observe(crec)
	for _, txt := range []string{"one", "two"} {
		if _, err := c.Send(ctx, []byte(txt), AckProcessed); err != nil {
			t.Fatal(err)
		}
	}
	one, err := s.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := awaitRPID(ctx, s, 2); err != nil {
		t.Fatal(err)
	}
	if err := m.ln.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.ln.Pause(ctx); err != nil { // a second call finds it paused
		t.Fatal(err)
	}
	if err := awaitState(ctx, crec, StateDisconnected); err != nil {
		t.Fatal(err)
	}
	m.awaitMovingAnswers()
	addr := m.ln.Addr().String()
	if typ, code := rawResumeAnswer(t, addr, c.ID(), c.token, ackBlock{credit: 1 << 40}); typ != frameReject || code != RejectMoving {
		t.Fatalf("resume while paused: %v code %d", typ, code)
	}
	if typ, code := rawHelloAnswer(t, addr); typ != frameReject || code != RejectBusy {
		t.Fatalf("HELLO while paused: %v code %d", typ, code)
	}
	// No event marks a timer that does not fire: let the resume window pass twice over.
	time.Sleep(2 * window)
	s.mu.Lock()
	expiry := s.expiry
	s.mu.Unlock()
	if st := s.State(); st != StateDisconnected || expiry != nil {
		t.Fatalf("paused session: state %v, resume window armed %v", st, expiry != nil)
	}
	// The application works on the buffers meanwhile.
	if err := s.Settle(one.ID, errors.New("refused while paused")); err != nil {
		t.Fatal(err)
	}
	two, err := s.Recv(ctx)
	if err != nil || string(two.Data) != "two" {
		t.Fatalf("Recv while paused: %q %v", two.Data, err)
	}
	if _, err := s.Send(ctx, []byte("sent while paused"), AckDelivered); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, []byte("sent by the client meanwhile"), AckNone); err != nil {
		t.Fatal(err)
	}
	if st := c.State(); st != StateDisconnected {
		t.Fatalf("client state %v while the server is paused", st)
	}
	if err := m.ln.Shutdown(ctx); !errors.Is(err, ErrListenerPaused) {
		t.Fatalf("Shutdown while paused: %v", err)
	}
	if err := m.ln.Continue(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ln.Export(); !errors.Is(err, ErrNotPaused) {
		t.Fatalf("Export after Continue: %v", err)
	}
	if err := s.Settle(two.ID, nil); err != nil {
		t.Fatal(err)
	}
	if msg, err := c.Recv(ctx); err != nil || string(msg.Data) != "sent while paused" {
		t.Fatalf("client: %q %v", msg.Data, err)
	}
	if msg, err := s.Recv(ctx); err != nil || string(msg.Data) != "sent by the client meanwhile" {
		t.Fatalf("server: %q %v", msg.Data, err)
	}
	if err := crec.await(ctx, func(r *recorder) bool { return r.progress.Processed >= 2 && len(r.failed) == 1 }); err != nil {
		t.Fatal(err)
	}
	crec.mu.Lock()
	reason := crec.failed[1]
	crec.mu.Unlock()
	if reason != "refused while paused" {
		t.Fatalf("failure reason %q", reason)
	}
	if st := s.Stats(); st.Reconnects == 0 {
		t.Fatal("the client never resumed")
	}
}

func awaitRPID(ctx context.Context, s *Session, pid uint64) error {
	for rPIDOf(s) < pid {
		select {
		case <-ctx.Done():
			return fmt.Errorf("received up to packet %d, waiting for %d: %w", rPIDOf(s), pid, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// rawResumeAnswer sends RESUME and returns the answer's type and, for REJECT, its code.
func rawResumeAnswer(t *testing.T, addr string, sid uint64, token [tokenLen]byte, acks ackBlock) (frameType, RejectCode) {
	t.Helper()
	cfg, _ := Config{}.withDefaults()
	var buf handshakeBuf
	header{typ: frameResume, length: resumeLen}.put(buf[:])
	resume{hello: cfg.offer(), sid: sid, token: token, acks: acks}.put(buf[headerLen:])
	return rawAnswer(t, addr, buf[:headerLen+resumeLen])
}

// rawHelloAnswer sends HELLO and returns the answer's type and, for REJECT, its code.
func rawHelloAnswer(t *testing.T, addr string) (frameType, RejectCode) {
	t.Helper()
	cfg, _ := Config{}.withDefaults()
	var buf handshakeBuf
	header{typ: frameHello, length: helloLen}.put(buf[:])
	cfg.offer().put(buf[headerLen:])
	return rawAnswer(t, addr, buf[:headerLen+helloLen])
}

func rawAnswer(t *testing.T, addr string, frame []byte) (frameType, RejectCode) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var buf handshakeBuf
	h, body, err := readHandshakeFrame(c, &buf, frameWelcome, frameReject)
	if err != nil {
		t.Fatal(err)
	}
	if h.typ != frameReject {
		return h.typ, 0
	}
	code, _, err := parseCodeReason(h.typ, body)
	if err != nil {
		t.Fatal(err)
	}
	return h.typ, RejectCode(code)
}

// TestMovedSessionCalls: after Export the old session is inert, and says why; the old listener
// refuses to pause, continue or export again; closing it tells the client nothing, and the
// client resumes where the state is imported.
func TestMovedSessionCalls(t *testing.T) {
	ccfg := Config{BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond}
	m := newMovable(t, 1, ccfg, Config{})
	ctx := testCtx(t)
	c, s := m.clients[0], m.servers[0]
	srec, crec := newRecorder(), newRecorder()
	s.Observe(srec)
	c.Observe(crec)
	if _, err := c.Send(ctx, []byte("held"), AckProcessed); err != nil {
		t.Fatal(err)
	}
	held, err := s.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := m.pauseExport()
	moved := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrSessionMoved) || !errors.Is(err, ErrSessionClosed) {
			t.Errorf("%s on a moved session: %v", what, err)
		}
	}
	_, err = s.Send(ctx, []byte("x"), AckNone)
	moved("Send", err)
	_, err = s.TrySend([]byte("x"), AckNone)
	moved("TrySend", err)
	_, err = s.NewMessage(ctx, AckNone)
	moved("NewMessage", err)
	_, err = s.Recv(ctx)
	moved("Recv", err)
	moved("Settle", s.Settle(held.ID, nil))
	moved("Requeue", s.Requeue(held.ID))
	moved("Close", s.Close(ctx))
	moved("Err", s.Err())
	s.Abort() // nothing to do
	if st := s.State(); st != StateMoved {
		t.Fatalf("state %v", st)
	}
	<-s.Done()
	if err := awaitState(ctx, srec, StateMoved); err != nil {
		t.Fatal(err)
	}
	if err := m.ln.Pause(ctx); !errors.Is(err, ErrSessionMoved) {
		t.Errorf("Pause after Export: %v", err)
	}
	if err := m.ln.Continue(); !errors.Is(err, ErrSessionMoved) {
		t.Errorf("Continue after Export: %v", err)
	}
	if _, err := m.ln.Export(); !errors.Is(err, ErrSessionMoved) {
		t.Errorf("second Export: %v", err)
	}
	if n := m.ln.Sessions(); n != 0 {
		t.Errorf("the old listener still holds %d sessions", n)
	}
	if err := awaitState(ctx, crec, StateDisconnected); err != nil {
		t.Fatal(err)
	}
	old := m.ln
	m.old = append(m.old, old)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if st := c.State(); st != StateDisconnected {
		t.Fatalf("client state %v after the old listener closed", st)
	}
	if st := s.State(); st != StateMoved || !errors.Is(s.Err(), ErrSessionMoved) {
		t.Fatalf("closing the old listener changed its moved session: %v %v", st, s.Err())
	}
	// Import on another port; the held message comes out of Recv again there.
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, ss, err := NewListenerFrom(nl, Config{}, st)
	if err != nil {
		t.Fatal(err)
	}
	m.ln = ln
	a := ln.Addr().String()
	m.addr.Store(&a)
	if len(ss) != 1 {
		t.Fatalf("%d sessions imported", len(ss))
	}
	if err := ln.Continue(); err != nil {
		t.Fatal(err)
	}
	s = ss[0]
	again, err := s.Recv(ctx)
	if err != nil || again.ID != held.ID || string(again.Data) != "held" {
		t.Fatalf("held message after import: %d %q %v", again.ID, again.Data, err)
	}
	if err := s.Settle(again.ID, nil); err != nil {
		t.Fatal(err)
	}
	if err := crec.await(ctx, func(r *recorder) bool { return r.progress.Processed == 1 }); err != nil {
		t.Fatal(err)
	}
	crec.mu.Lock()
	defer crec.mu.Unlock()
	for _, x := range crec.states {
		if x.ended() {
			t.Fatalf("client states %v", crec.states)
		}
	}
}

// rawOpen opens a session by hand: HELLO, then WELCOME; if confirm, an ACK confirms it.
func rawOpen(t *testing.T, addr string, confirm bool) (net.Conn, welcome) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := Config{}.withDefaults()
	var buf handshakeBuf
	header{typ: frameHello, length: helloLen}.put(buf[:])
	cfg.offer().put(buf[headerLen:])
	if _, err := c.Write(buf[:headerLen+helloLen]); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, body, err := readHandshakeFrame(c, &buf, frameWelcome)
	if err != nil {
		t.Fatalf("%v %v", h.typ, err)
	}
	w, err := parseWelcome(body)
	if err != nil {
		t.Fatal(err)
	}
	if confirm {
		if _, err := c.Write(appendAck(nil, ackBlock{credit: uint64(cfg.ReceiveBufferBytes)})); err != nil {
			t.Fatal(err)
		}
	}
	return c, w
}

// TestUnacceptedSessionsMove: a session waiting in the accept queue and one whose client has
// not confirmed it yet both move; the new listener's Accept hands them out once their clients
// resume there. The pause does not wait for the unconfirmed one's handshake deadline.
func TestUnacceptedSessionsMove(t *testing.T) {
	base := testGoroutines()
	ln, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	c1, w1 := rawOpen(t, addr, true)
	defer c1.Close()
	c2, w2 := rawOpen(t, addr, false)
	defer c2.Close()
	// Session 1 is confirmed once the listener has it queued for Accept; wait for that.
	ctx := testCtx(t)
	for len(ln.accept) == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("session 1 never queued")
		case <-time.After(time.Millisecond):
		}
	}
	pctx, cancel := context.WithTimeout(ctx, DefaultHandshakeTimeout/2)
	defer cancel()
	if err := ln.Pause(pctx); err != nil {
		t.Fatalf("Pause waited for an unconfirmed handshake: %v", err)
	}
	st, err := ln.Export()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Sessions) != 2 || st.Sessions[0].Accepted || st.Sessions[1].Accepted {
		t.Fatalf("export: %+v", st.Sessions)
	}
	actx, acancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if s, err := ln.Accept(actx); err == nil {
		t.Fatalf("the old listener handed out moved session %d", s.ID())
	}
	acancel()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln2, accepted, err := NewListenerFrom(nl, Config{}, st)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if len(accepted) != 0 {
		t.Fatalf("%d sessions returned as accepted", len(accepted))
	}
	if err := ln2.Continue(); err != nil {
		t.Fatal(err)
	}
	cfg, _ := Config{}.withDefaults()
	for _, w := range []welcome{w1, w2} {
		acks := ackBlock{credit: uint64(cfg.ReceiveBufferBytes)}
		if typ, code := rawResumeAnswer(t, ln2.Addr().String(), w.sid, w.token, acks); typ != frameWelcome {
			t.Fatalf("resume of session %d: %v %d", w.sid, typ, code)
		}
		s, err := ln2.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.ID() != w.sid {
			t.Fatalf("accepted %d, expected %d", s.ID(), w.sid)
		}
	}
	_ = ln2.Close()
	checkGoroutines(t, base)
}

// stream sends numbered messages on s until it refuses one, and returns how many it took.
func stream(ctx context.Context, s *Session, seed uint64, gate func(i int)) (int, error) {
	r := mrand.New(mrand.NewPCG(seed, 3))
	for i := 1; ; i++ {
		gate(i)
		_, err := s.Send(ctx, migrateMessage(seed, i, 8+r.IntN(3000)), migrateLevel(i))
		if errors.Is(err, ErrSessionClosed) {
			return i - 1, nil
		}
		if err != nil {
			return i - 1, err
		}
	}
}

// drain receives numbered messages from s until the session ends, checking order and content,
// and returns how many came.
func drain(ctx context.Context, s *Session, seed uint64, got *atomic.Int64) (int, error) {
	for i := 1; ; i++ {
		m, err := s.Recv(ctx)
		if err != nil {
			if errors.Is(err, ErrSessionClosed) {
				return i - 1, nil
			}
			return i - 1, err
		}
		if k := int(binary.BigEndian.Uint64(m.Data)); k != i {
			return i - 1, fmt.Errorf("message %d has index %d", i, k)
		}
		if err := checkMigrateMessage(m.Data, seed, i); err != nil {
			return i - 1, err
		}
		if err := s.Settle(m.ID, nil); err != nil {
			return i - 1, err
		}
		got.Add(1)
	}
}

// TestShutdownUnderTraffic: Shutdown closes every session gracefully while both sides send.
// Every message a Send took arrives, once and in order, on both sides; a client whose
// connection was cut just before resumes during the shutdown and closes too.
func TestShutdownUnderTraffic(t *testing.T) {
	const clients = 4
	base := testGoroutines()
	ln, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	var cs, ss []*Session
	var dialers []*faultnet.Dialer
	for range clients {
		d := faultnet.NewDialer(nil)
		c, err := Dial(ctx, ln.Addr().String(), Config{BackoffMin: time.Millisecond, Dial: d.DialContext})
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cs, ss, dialers = append(cs, c), append(ss, s), append(dialers, d)
	}
	type result struct {
		name      string
		sent, got int
		err       error
	}
	results := make(chan result, 4*clients)
	var got [clients][2]atomic.Int64
	var wg sync.WaitGroup
	for k := range clients {
		for dir, pair := range [][2]*Session{{cs[k], ss[k]}, {ss[k], cs[k]}} {
			seed := uint64(10*k + dir)
			name := fmt.Sprintf("client %d direction %d", k, dir)
			wg.Add(2)
			go func() {
				defer wg.Done()
				n, err := stream(ctx, pair[0], seed, func(int) {})
				results <- result{name: name, sent: n, got: -1, err: err}
			}()
			go func() {
				defer wg.Done()
				n, err := drain(ctx, pair[1], seed, &got[k][dir])
				results <- result{name: name, sent: -1, got: n, err: err}
			}()
		}
	}
	for k := range got { // traffic flows every way
		for dir := range got[k] {
			for got[k][dir].Load() < 20 {
				select {
				case <-ctx.Done():
					t.Fatalf("client %d direction %d: only %d messages arrived", k, dir, got[k][dir].Load())
				case <-time.After(time.Millisecond):
				}
			}
		}
	}
	dialers[0].LastConn().Cut()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Every session closes gracefully in time: the last frame of each side (CLOSED) is not lost
	// to a reset (link.linger).
	if err := ln.Shutdown(sctx); err != nil {
		for k := range clients {
			t.Logf("session %d: client %v; server %v", k, cs[k].Err(), ss[k].Err())
		}
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()
	close(results)
	counts := map[string][2]int{}
	for r := range results {
		if r.err != nil {
			t.Errorf("%s: %v", r.name, r.err)
		}
		c := counts[r.name]
		if r.sent >= 0 {
			c[0] = r.sent
		} else {
			c[1] = r.got
		}
		counts[r.name] = c
	}
	for name, c := range counts {
		if c[0] != c[1] || c[0] == 0 {
			t.Errorf("%s: %d sent, %d arrived", name, c[0], c[1])
		}
	}
	for k := range clients {
		if err := ss[k].Err(); err != nil {
			t.Errorf("server session %d: %v", k, err)
		}
		if err := cs[k].Err(); !errors.Is(err, errClosedByPeer) {
			t.Errorf("client %d: %v", k, err)
		}
	}
	if _, err := ln.Accept(ctx); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Shutdown: %v", err)
	}
	if dialers[0].Dials() < 2 {
		t.Error("client 0 did not resume during the shutdown")
	}
	waitDone(t, append(cs, ss...)...)
	checkGoroutines(t, base)
}

// TestShutdownDeadline: a session whose client cannot come back holds Shutdown until its
// context ends; the session is then aborted and Shutdown returns the context's error.
func TestShutdownDeadline(t *testing.T) {
	p := newProxied(t, Config{BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond}, Config{})
	ctx := testCtx(t)
	srec := newRecorder()
	p.server.Observe(srec)
	p.proxy.Refuse(true)
	p.proxy.KillAll()
	if err := awaitState(ctx, srec, StateDisconnected); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := p.ln.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if st := p.server.State(); st != StateClosed {
		t.Fatalf("server session %v after Shutdown", st)
	}
}

// churn opens sessions by hand against a listener and drops their connections with a reset,
// leaving it detached sessions to hold; it accepts the sessions as they come.
type churn struct {
	ln       *Listener
	accepted sync.Map // session ID -> chan struct{}, closed once Accept returned it
	stop     context.CancelFunc
	done     chan struct{}
}

func newChurn(ln *Listener) *churn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &churn{ln: ln, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			s, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			ch, _ := c.accepted.LoadOrStore(s.ID(), make(chan struct{}))
			close(ch.(chan struct{}))
		}
	}()
	return c
}

func (c *churn) close() {
	c.stop()
	<-c.done
}

// openAndDrop opens count sessions, workers at a time. Each one is confirmed, accepted, then its
// connection is reset (SO_LINGER 0: the client keeps no TIME_WAIT, and the fd limit is never
// near). It returns how many were opened and how many were refused as busy.
func (c *churn) openAndDrop(count, workers int) (opened, busy int, err error) {
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	next := atomic.Int64{}
	cfg, _ := Config{}.withDefaults()
	var hello [headerLen + helloLen]byte
	header{typ: frameHello, length: helloLen}.put(hello[:])
	cfg.offer().put(hello[headerLen:])
	ack := appendAck(nil, ackBlock{credit: uint64(cfg.ReceiveBufferBytes)})
	addr := c.ln.Addr().String()
	one := func() (bool, error) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return false, err
		}
		tc := nc.(*net.TCPConn)
		defer func() {
			_ = tc.SetLinger(0)
			_ = tc.Close()
		}()
		_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := tc.Write(hello[:]); err != nil {
			return false, err
		}
		var buf handshakeBuf
		h, body, err := readHandshakeFrame(tc, &buf, frameWelcome, frameReject)
		if err != nil {
			return false, err
		}
		if h.typ == frameReject {
			code, _, _ := parseCodeReason(h.typ, body)
			if RejectCode(code) != RejectBusy {
				return false, fmt.Errorf("refused with code %d", code)
			}
			return false, nil
		}
		w, err := parseWelcome(body)
		if err != nil {
			return false, err
		}
		if _, err := tc.Write(ack); err != nil {
			return false, err
		}
		ch, _ := c.accepted.LoadOrStore(w.sid, make(chan struct{}))
		select {
		case <-ch.(chan struct{}):
		case <-time.After(30 * time.Second):
			return false, fmt.Errorf("session %d never accepted", w.sid)
		}
		c.accepted.Delete(w.sid)
		return true, nil
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(count) {
				ok, err := one()
				mu.Lock()
				switch {
				case err != nil && first == nil:
					first = err
				case ok:
					opened++
				case err == nil:
					busy++
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return opened, busy, first
}

// detached counts the listener's sessions without a connection, and the bytes of buffers they
// hold.
func detached(ln *Listener) (n, buffers int) {
	ln.mu.Lock()
	sessions := ln.sessionsLocked()
	ln.mu.Unlock()
	for _, s := range sessions {
		s.mu.Lock()
		if s.link == nil && s.state == StateDisconnected {
			n++
		}
		s.mu.Unlock()
		buffers += s.Stats().BufferMemory
	}
	return n, buffers
}

// awaitDetached waits until the listener's n sessions have all noticed their connection reset.
func awaitDetached(ctx context.Context, ln *Listener, n int) error {
	for {
		d, _ := detached(ln)
		if d == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d sessions detached: %w", d, n, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// manySessions opens and drops total sessions against a listener holding at most max, and
// returns how many it holds, how many were refused, and the heap each detached session takes.
func manySessions(tb testing.TB, total, max, workers int) (held, refused int, perSession float64) {
	ln, err := Listen("127.0.0.1:0", Config{MaxSessions: max, ResumeWindow: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	c := newChurn(ln)
	defer c.close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	opened, busy, err := c.openAndDrop(total, workers)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := awaitDetached(ctx, ln, opened); err != nil {
		tb.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n, buffers := detached(ln); n != opened || buffers != 0 {
		tb.Fatalf("%d sessions detached of %d opened; their buffers hold %d bytes", n, opened, buffers)
	}
	if n := ln.Sessions(); n != opened || opened != max || busy != total-max {
		tb.Fatalf("listener holds %d sessions; %d opened, %d refused as busy, MaxSessions %d", n, opened, busy, max)
	}
	return opened, busy, float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(opened)
}

// TestMaxSessions: a listener holds at most MaxSessions, connected or detached; beyond, new
// sessions are refused as busy. A detached session holds no goroutine and no buffer.
func TestMaxSessions(t *testing.T) {
	base := testGoroutines()
	held, refused, per := manySessions(t, 600, 400, 16)
	t.Logf("%d sessions held, %d refused; %.0f bytes of heap per detached session (inflated under -race)", held, refused, per)
	checkGoroutines(t, base)
}

// BenchmarkDetachedSessions opens and drops 100,000 sessions against one listener with
// MaxSessions 50,000, and reports the heap each detached session takes. It runs once whatever
// b.N: go test -run '^$' -bench DetachedSessions -benchtime 1x ./core
func BenchmarkDetachedSessions(b *testing.B) {
	held, refused, per := manySessions(b, 100_000, 50_000, 32)
	for b.Loop() { // the work above is the benchmark; it is too big to repeat
	}
	b.ReportMetric(per, "B/session")
	b.ReportMetric(float64(held), "sessions")
	b.ReportMetric(float64(refused), "refused")
}

// TestDetachedReleasesBuffers: a session that loses its connection gives back its emptied
// buffers at once, not a heartbeat later: it has no writer to do it, and a server may hold
// thousands of them.
func TestDetachedReleasesBuffers(t *testing.T) {
	p := newProxied(t, Config{BackoffMin: time.Millisecond}, Config{AckDelay: time.Millisecond})
	ctx := testCtx(t)
	srec, crec := newRecorder(), newRecorder()
	p.server.Observe(srec)
	p.client.Observe(crec)
	for i := uint64(1); i <= 20; i++ {
		if _, err := p.client.Send(ctx, payload(3, i, 30<<10), AckNone); err != nil {
			t.Fatal(err)
		}
		m, err := p.server.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.server.Send(ctx, m.Data, AckDelivered); err != nil {
			t.Fatal(err)
		}
		_ = p.server.Settle(m.ID, nil)
		if m, err = p.client.Recv(ctx); err != nil {
			t.Fatal(err)
		}
		_ = p.client.Settle(m.ID, nil)
	}
	if err := srec.await(ctx, func(r *recorder) bool { return r.progress.Acked == 20 }); err != nil {
		t.Fatal(err)
	}
	if mem := p.server.Stats().BufferMemory; mem == 0 {
		t.Fatal("the traffic left no buffer to give back: the test proves nothing")
	}
	p.proxy.Refuse(true)
	p.proxy.KillAll()
	if err := awaitState(ctx, srec, StateDisconnected); err != nil {
		t.Fatal(err)
	}
	if st := p.server.Stats(); st.BufferMemory != 0 {
		t.Fatalf("detached session holds %d bytes of buffers", st.BufferMemory)
	}
}

// sampleState is a session state that uses every part of the format: frames continuing a
// message already acknowledged, a cancelled one, held, settled, waiting and cancelled messages
// received, a partial one, and a FAIL report.
func sampleState() SessionState {
	frame := func(pid, mid uint64, flags uint8, p []byte) []byte {
		b := make([]byte, dataHdrLen+len(p))
		dataHeader{flags: flags, n: len(p), pid: pid, mid: mid}.put(b)
		copy(b[dataHdrLen:], p)
		return b
	}
	var frames []byte
	frames = append(frames, frame(10, 5, flagEOM|flagResent|2<<levelShift, []byte("end of five"))...)
	frames = append(frames, frame(11, 6, 1<<levelShift, bytes.Repeat([]byte{6}, MaxFramePayload))...)
	frames = append(frames, frame(12, 6, flagEOM|1<<levelShift, []byte("six"))...)
	frames = append(frames, frame(13, 7, flagEOM|flagCancel, nil)...)
	st := SessionState{
		ID: 77, Token: [tokenLen]byte{1, 2, 3}, Accepted: true,
		Params: SessionParams{Version: 1, MaxMessageSize: 1 << 20, ReceiveBufferBytes: 4 << 20,
			SendBufferBytes: 4 << 20, DeadPeerTimeout: 15 * time.Second, PeerMaxMessageSize: 1 << 20,
			PeerReceiveBufferBytes: 4 << 20, PeerSendBufferBytes: 4 << 20, PeerDeadPeerTimeout: 15 * time.Second},
		Send: SendState{Frames: frames, FirstPID: 10, FirstOffset: 5000, NextPID: 14, NextMID: 8, AckedMID: 4,
			PeerAck: AckState{RPID: 9, DMID: 3, PMID: 2, FAck: 1, Credit: 100000}},
		Recv: RecvState{
			RPID: 20, Released: 3, ReleasedCost: 3000,
			Messages: []ReceivedMessage{
				{ID: 4, Data: []byte("four"), Level: AckProcessed, Cost: 28, Delivered: true},
				{ID: 5, Level: AckProcessed, Cost: 1024, Delivered: true, Settled: true},
				{ID: 6, Data: []byte("six"), Level: AckDelivered, Resent: true, Cost: 27, Delivered: true},
				{ID: 7, Cancelled: true, Cost: 148},
				{ID: 8, Data: bytes.Repeat([]byte{8}, 70000), Cost: 70048},
			},
			Partial:     &PartialMessage{ID: 9, Data: bytes.Repeat([]byte{9}, MaxFramePayload), Level: AckProcessed, Cost: MaxFramePayload + dataHdrLen},
			Fails:       []FailReport{{Seq: 2, MID: 5, Reason: "bad five"}},
			NextFailSeq: 3, PeerFailSeq: 4, MaxInFlight: 4,
		},
		PeerClosing: true,
		Stats:       SessionStats{MessagesSent: 7, MessagesReceived: 6, BytesSent: 70000, BytesReceived: 7000, FramesResent: 3, Reconnects: 2},
	}
	st.Recv.Cost = st.Recv.ReleasedCost + st.Recv.Partial.Cost
	for _, m := range st.Recv.Messages {
		st.Recv.Cost += m.Cost
	}
	return st
}

// importExport imports st into a session of its own and exports it again.
func importExport(st SessionState) (*Session, SessionState, error) {
	cfg, _ := Config{}.withDefaults()
	s, err := importSession(cfg, &st)
	if err != nil {
		return nil, SessionState{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s, s.exportLocked(), nil
}

// exercise runs the receive path, a resume and the application's calls on an imported
// session; none of it may panic, whatever the state was.
func exercise(t *testing.T, s *Session, st SessionState) {
	t.Helper()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < len(st.Recv.Messages)+2; i++ {
		m, err := s.Recv(done)
		if err != nil {
			break
		}
		var fail error
		if m.Level == AckProcessed {
			fail = errors.New("no")
		}
		if err := s.Settle(m.ID, fail); err != nil {
			t.Fatalf("settle %d: %v", m.ID, err)
		}
	}
	mid, level := s.dDone+1, uint8(0)
	if p := st.Recv.Partial; p != nil {
		mid, level = p.ID, uint8(p.Level)<<levelShift
	}
	f := make([]byte, dataHdrLen+5)
	dataHeader{flags: flagEOM | level, n: 5, pid: st.Recv.RPID + 1, mid: mid}.put(f)
	if err := s.feed(f, 7); err != nil && !errors.Is(err, ErrProtocol) {
		t.Fatalf("feed: %v", err)
	}
	s.mu.Lock()
	_ = s.resyncLocked(importAck(st.Send.PeerAck))
	s.mu.Unlock()
	_, _ = s.TrySend([]byte("more"), AckProcessed)
	_ = s.Stats()
}

func TestImportRoundTrip(t *testing.T) {
	st := sampleState()
	s, got, err := importExport(st)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("exported back differently:\n got %+v\nwant %+v", got, st)
	}
	// The held messages come out of Recv again first, then those waiting; the cancelled one never.
	ctx := testCtx(t)
	for _, want := range []uint64{4, 6, 8} {
		m, err := s.Recv(ctx)
		if err != nil || m.ID != want {
			t.Fatalf("Recv: %d %v, want %d", m.ID, err, want)
		}
		if err := s.Settle(m.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	ack := s.ackLocked()
	s.mu.Unlock()
	// pMID stops before message 5, whose FAIL report is not written yet.
	if want := (ackBlock{rPID: 20, dMID: 8, pMID: 4, fAck: 4, credit: st.Recv.Cost - MaxFramePayload - dataHdrLen + 4<<20}); ack != want {
		t.Fatalf("ack block %+v, want %+v", ack, want)
	}
	exercise(t, s, st)

	// A listener made from a state and exported again, before it served, gives the same state.
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := ListenerState{Sessions: []SessionState{sampleState(), withID(sampleState(), 78)}}
	in.Sessions[1].Accepted = false
	ln, _, err := NewListenerFrom(nl, Config{}, in)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, err := ln.Export()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("exported again differently:\n got %+v\nwant %+v", out, in)
	}
}

// TestImportRejectsInvalidState: each corruption is refused with ErrInvalidState, naming what
// is wrong, and nothing is imported.
func TestImportRejectsInvalidState(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(st *SessionState)
		want   string
	}{
		"zero ID":          {func(st *SessionState) { st.ID = 0 }, "ID is 0"},
		"zero token":       {func(st *SessionState) { st.Token = [tokenLen]byte{} }, "Token"},
		"version":          {func(st *SessionState) { st.Params.Version = 9 }, "Params.Version"},
		"window too small": {func(st *SessionState) { st.Params.ReceiveBufferBytes = 1000 }, "ReceiveBufferBytes"},
		"peer offer":       {func(st *SessionState) { st.Params.PeerReceiveBufferBytes = 10 }, "peer's offer"},
		"peer timeout":     {func(st *SessionState) { st.Params.PeerDeadPeerTimeout = 1500 * time.Microsecond }, "PeerDeadPeerTimeout"},
		"ack before kept":  {func(st *SessionState) { st.Send.PeerAck.RPID = 8 }, "Send.PeerAck.RPID"},
		"frame torn":       {func(st *SessionState) { st.Send.Frames = st.Send.Frames[:len(st.Send.Frames)-3] }, "Send.Frames"},
		"frame garbage":    {func(st *SessionState) { st.Send.Frames[0] = 0x42 }, "Send.Frames"},
		"frame PID":        {func(st *SessionState) { st.Send.FirstPID, st.Send.PeerAck.RPID = 11, 10 }, "where 11 belongs"},
		"frame MID":        {func(st *SessionState) { st.Send.AckedMID = 3 }, "expected 4"},
		"next PID":         {func(st *SessionState) { st.Send.NextPID++ }, "Send.NextPID"},
		"next MID":         {func(st *SessionState) { st.Send.NextMID++ }, "Send.NextMID"},
		"acks do not nest": {func(st *SessionState) { st.Send.PeerAck.PMID = 4 }, "do not nest"},
		"offset":           {func(st *SessionState) { st.Send.FirstOffset = 100 }, "Send.FirstOffset"},
		"credit":           {func(st *SessionState) { st.Send.PeerAck.Credit = 10 }, "Credit"},
		"message ID":       {func(st *SessionState) { st.Recv.Messages[1].ID = 9 }, "Recv.Messages[1] has ID"},
		"delivery gap":     {func(st *SessionState) { st.Recv.Messages[1].Delivered = false }, "Recv.Messages[1]"},
		"settled first":    {func(st *SessionState) { st.Recv.Messages[0].Settled, st.Recv.Messages[0].Data = true, nil }, "Released should cover"},
		"cost":             {func(st *SessionState) { st.Recv.Messages[0].Cost = 29 }, "cannot have cost"},
		"level":            {func(st *SessionState) { st.Recv.Messages[0].Level = 3 }, "level 3"},
		"total cost":       {func(st *SessionState) { st.Recv.Cost++ }, "Recv.Cost"},
		"over the window":  {func(st *SessionState) { st.Params.MaxMessageSize, st.Params.ReceiveBufferBytes = 100000, 130000 }, "above the window"},
		"partial ID":       {func(st *SessionState) { st.Recv.Partial.ID = 10 }, "Recv.Partial has ID"},
		"rPID":             {func(st *SessionState) { st.Recv.RPID = 5 }, "Recv.RPID"},
		"fail sequence":    {func(st *SessionState) { st.Recv.Fails[0].Seq = 3 }, "Recv.Fails[0] has sequence"},
		"fail MID":         {func(st *SessionState) { st.Recv.Fails[0].MID = 8 }, "not one delivered"},
		"next fail":        {func(st *SessionState) { st.Recv.NextFailSeq = 9 }, "Recv.NextFailSeq"},
		"max in flight":    {func(st *SessionState) { st.Recv.MaxInFlight = 0 }, "Recv.MaxInFlight"},
	} {
		t.Run(name, func(t *testing.T) {
			st := sampleState()
			tc.mutate(&st)
			_, _, err := importExport(st)
			if !errors.Is(err, ErrInvalidState) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalidState about %q", err, tc.want)
			}
		})
	}
	// Whole-state checks, through NewListenerFrom: nothing is left behind.
	base := testGoroutines()
	dup := ListenerState{Sessions: []SessionState{sampleState(), sampleState()}}
	notAccepted := sampleState()
	notAccepted.Accepted = false
	for name, tc := range map[string]struct {
		cfg  Config
		st   ListenerState
		want string
	}{
		"duplicate":      {Config{}, dup, "appears twice"},
		"max sessions":   {Config{MaxSessions: 1}, ListenerState{Sessions: []SessionState{sampleState(), {ID: 2}}}, "MaxSessions"},
		"accept backlog": {Config{AcceptBacklog: 1}, ListenerState{Sessions: []SessionState{notAccepted, withID(notAccepted, 78)}}, "AcceptBacklog"},
		"bad session":    {Config{}, ListenerState{Sessions: []SessionState{sampleState(), {ID: 2}}}, "session 2"},
	} {
		nl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, _, err := NewListenerFrom(nl, tc.cfg, tc.st)
		_ = nl.Close()
		if ln != nil || !errors.Is(err, ErrInvalidState) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrInvalidState about %q", name, err, tc.want)
		}
	}
	checkGoroutines(t, base)
}

func withID(st SessionState, id uint64) SessionState {
	st.ID = id
	return st
}

// FuzzImportState mutates a valid session state field by field: the import must refuse what it
// cannot honour with ErrInvalidState, never panic, and whatever it takes must export back
// exactly as it came and survive the receive path, a resume and the application's calls.
func FuzzImportState(f *testing.F) {
	f.Add([]byte{})
	f.Add(append([]byte{27}, binary.BigEndian.AppendUint64(nil, 0x0000_0000_0001_0100)...))
	f.Add(append([]byte{29 | 0x80}, binary.BigEndian.AppendUint64(nil, 0)...))
	f.Add(append([]byte{12}, binary.BigEndian.AppendUint64(nil, 24)...))
	f.Add(append(append([]byte{34}, make([]byte, 8)...), append([]byte{36}, make([]byte, 8)...)...))
	f.Fuzz(func(t *testing.T, ops []byte) {
		st := sampleState()
		mutateState(&st, ops)
		s, got, err := importExport(st)
		if err != nil {
			if !errors.Is(err, ErrInvalidState) {
				t.Fatalf("refused with %v, not ErrInvalidState", err)
			}
			return
		}
		if !reflect.DeepEqual(got, st) {
			t.Fatalf("exported back differently:\n got %+v\nwant %+v", got, st)
		}
		exercise(t, s, st)
	})
}

// mutateState applies ops, 9 bytes each: a field selector, then a value that sets the field
// (selector's high bit) or steps it by a small amount.
func mutateState(st *SessionState, ops []byte) {
	for ; len(ops) >= 9; ops = ops[9:] {
		op, v := ops[0], binary.BigEndian.Uint64(ops[1:9])
		step := uint64(int64(int8(v)))
		u := func(p *uint64) {
			if op&0x80 != 0 {
				*p = v
			} else {
				*p += step
			}
		}
		i := func(p *int) {
			x := uint64(*p)
			u(&x)
			*p = int(int32(x))
		}
		d := func(p *time.Duration) {
			x := uint64(*p)
			u(&x)
			*p = time.Duration(x)
		}
		u32 := func(p *uint32) {
			x := uint64(*p)
			u(&x)
			*p = uint32(x)
		}
		resize := func(b []byte) []byte {
			n := int(v>>16) % 80000
			if n <= len(b) {
				return b[:n]
			}
			return append(b, make([]byte, n-len(b))...)
		}
		p, r, sn := &st.Params, &st.Recv, &st.Send
		switch op & 0x7f % 37 {
		case 0:
			u(&st.ID)
		case 1:
			st.Token[v%tokenLen] ^= byte(v >> 8)
		case 2:
			p.Version = uint8(v)
		case 3:
			i(&p.MaxMessageSize)
		case 4:
			i(&p.ReceiveBufferBytes)
		case 5:
			i(&p.SendBufferBytes)
		case 6:
			d(&p.DeadPeerTimeout)
		case 7:
			u32(&p.PeerMaxMessageSize)
		case 8:
			u32(&p.PeerReceiveBufferBytes)
		case 9:
			u32(&p.PeerSendBufferBytes)
		case 10:
			d(&p.PeerDeadPeerTimeout)
		case 11:
			if len(sn.Frames) > 0 {
				sn.Frames[v%uint64(len(sn.Frames))] ^= byte(v >> 32)
			}
		case 12:
			sn.Frames = sn.Frames[:v%uint64(len(sn.Frames)+1)]
		case 13:
			u(&sn.FirstPID)
		case 14:
			u(&sn.FirstOffset)
		case 15:
			u(&sn.NextPID)
		case 16:
			u(&sn.NextMID)
		case 17:
			u(&sn.PeerAck.RPID)
		case 18:
			u(&sn.PeerAck.DMID)
		case 19:
			u(&sn.PeerAck.PMID)
		case 20:
			u(&sn.PeerAck.FAck)
		case 21:
			u(&sn.PeerAck.Credit)
		case 22:
			u(&sn.AckedMID)
		case 23:
			u(&r.RPID)
		case 24:
			u(&r.Cost)
		case 25:
			u(&r.ReleasedCost)
		case 26:
			u(&r.Released)
		case 27:
			if len(r.Messages) == 0 {
				break
			}
			m := &r.Messages[v%uint64(len(r.Messages))]
			switch (v >> 8) % 8 {
			case 0:
				m.ID += step
			case 1:
				m.Data = resize(m.Data)
			case 2:
				m.Level = AckLevel(v >> 40)
			case 3:
				m.Resent = !m.Resent
			case 4:
				m.Cancelled = !m.Cancelled
			case 5:
				m.Cost += uint64(int64(int32(v >> 16)))
			case 6:
				m.Delivered = !m.Delivered
			case 7:
				m.Settled = !m.Settled
			}
		case 28:
			if len(r.Messages) > 0 {
				k := v % uint64(len(r.Messages))
				r.Messages = append(r.Messages[:k], r.Messages[k+1:]...)
			}
		case 29:
			switch {
			case op&0x80 != 0:
				r.Partial = nil
			case r.Partial == nil:
				r.Partial = &PartialMessage{ID: v, Cost: dataHdrLen}
			default:
				q := r.Partial
				switch (v >> 8) % 4 {
				case 0:
					q.ID += step
				case 1:
					q.Data = resize(q.Data)
				case 2:
					q.Cost += uint64(int64(int32(v >> 16)))
				case 3:
					q.Level = AckLevel(v >> 40)
				}
			}
		case 30:
			switch {
			case op&0x80 != 0 && len(r.Fails) > 0:
				r.Fails = r.Fails[:len(r.Fails)-1]
			case len(r.Fails) == 0 || (v>>8)%3 == 0:
				r.Fails = append(r.Fails, FailReport{Seq: v >> 16 & 0xff, MID: v >> 24 & 0xff, Reason: strings.Repeat("x", int(v>>32)%1100)})
			default:
				k := v % uint64(len(r.Fails))
				r.Fails[k].Seq += step
				r.Fails[k].MID += uint64(int64(int8(v >> 8)))
			}
		case 31:
			u(&r.NextFailSeq)
		case 32:
			u(&r.PeerFailSeq)
		case 33:
			i(&r.MaxInFlight)
		case 34:
			st.CloseRequested = !st.CloseRequested
		case 35:
			st.PeerClosing = !st.PeerClosing
		case 36:
			st.Accepted = !st.Accepted
		}
	}
}

func TestMaxSessionsConfig(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	if err != nil || cfg.MaxSessions != DefaultMaxSessions || DefaultMaxSessions != 65536 {
		t.Fatalf("default MaxSessions %d, %v", cfg.MaxSessions, err)
	}
	if _, err := (Config{MaxSessions: -1}).withDefaults(); err == nil || !strings.Contains(err.Error(), "MaxSessions") {
		t.Fatalf("negative MaxSessions: %v", err)
	}
}

// TestStaleRestoreRefused: a server restored from a state older than what its client saw (the
// server went on after the state was taken, and the client received more) must not resume the
// session with a hole: the client's RESUME shows it, and the session is lost on both sides. The
// other way round, a client that had its messages acknowledged by the newer server finds the
// stale one lacking frames it no longer holds, and refuses.
func TestStaleRestoreRefused(t *testing.T) {
	for _, dir := range []string{"server sent more", "client sent more"} {
		t.Run(dir, func(t *testing.T) {
			ccfg := Config{BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond, ResumeWindow: 2 * time.Second}
			m := newMovable(t, 1, ccfg, Config{})
			ctx := testCtx(t)
			c := m.clients[0]
			st := m.pauseExport()
			byID := m.importAt(st, Config{})
			s := byID[c.ID()]
			if err := m.ln.Continue(); err != nil {
				t.Fatal(err)
			}
			// The newer copy and the client exchange a message both ways, acknowledged.
			a, b := s, c
			if dir == "client sent more" {
				a, b = c, s
			}
			rec := newRecorder()
			a.Observe(rec)
			mid, err := a.Send(ctx, []byte("after the state was taken"), AckNone)
			if err != nil {
				t.Fatal(err)
			}
			msg, err := b.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Settle(msg.ID, nil); err != nil {
				t.Fatal(err)
			}
			// a has its acknowledgement: the frame is freed.
			if err := rec.await(ctx, func(r *recorder) bool { return r.progress.Acked >= mid }); err != nil {
				t.Fatal(err)
			}
			// The newer copy dies without a word (a crash), and the stale state is restored.
			if err := m.ln.Pause(ctx); err != nil {
				t.Fatal(err)
			}
			m.importAt(st, Config{})
			if err := m.ln.Continue(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.Done():
			case <-ctx.Done():
				t.Fatalf("the client resumed a stale copy: state %v", c.State())
			}
			if !errors.Is(c.Err(), ErrSessionLost) {
				t.Fatalf("client ended with %v, want lost", c.Err())
			}
		})
	}
}
