package core

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentReceivers: several goroutines receive from one session, each checking its
// message's bytes after giving the others a chance to run, then settling it. A message must stay
// intact until settled, whoever else calls Recv meanwhile; with MaxInFlight 1 the receivers take
// turns, above it they hold messages at once.
func TestConcurrentReceivers(t *testing.T) {
	for _, inFlight := range []int{0, 4} {
		t.Run(fmt.Sprint("MaxInFlight=", inFlight), func(t *testing.T) { testConcurrentReceivers(t, inFlight) })
	}
}

func testConcurrentReceivers(t *testing.T, inFlight int) {
	p := newPair(t, "tcp", Config{}, Config{MaxInFlight: inFlight})
	ctx := testCtx(t)
	const n, size = 3000, 2048
	go func() {
		for i := uint64(1); i <= n; i++ {
			if _, err := p.client.Send(ctx, payload(7, i, size), AckProcessed); err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
		}
	}()
	rec := newRecorder()
	p.client.Observe(rec)
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for range max(2, inFlight) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if got == n {
					mu.Unlock()
					return
				}
				got++
				mu.Unlock()
				m, err := p.server.Recv(ctx)
				if err != nil {
					t.Errorf("recv: %v", err)
					return
				}
				runtime.Gosched()
				if err := checkPayload(m.Data, 7, m.ID, size); err != nil {
					t.Errorf("held message changed under its receiver: %v", err)
				}
				if err := p.server.Settle(m.ID, nil); err != nil {
					t.Errorf("settle %d: %v", m.ID, err)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if err := rec.await(ctx, func(r *recorder) bool { return r.progress.Processed == n }); err != nil {
		t.Fatal(err)
	}
}

// TestMaxInFlight: Recv hands out at most MaxInFlight messages before one is settled, settling
// any of them (not only the oldest) lets the next one go, and SetMaxInFlight raises the bound.
func TestMaxInFlight(t *testing.T) {
	p := newPair(t, "pipe", Config{}, Config{MaxInFlight: 3})
	ctx := testCtx(t)
	for i := 1; i <= 6; i++ {
		if _, err := p.client.Send(ctx, []byte{byte(i)}, AckProcessed); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(want uint64) {
		t.Helper()
		m, err := p.server.Recv(ctx)
		if err != nil || m.ID != want || !bytes.Equal(m.Data, []byte{byte(want)}) {
			t.Fatalf("Recv: ID %d %v %v, want message %d", m.ID, m.Data, err, want)
		}
	}
	recv(1)
	recv(2)
	recv(3)
	// Messages 4 to 6 have arrived (or will), but three are held.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if m, err := p.server.Recv(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a fourth Recv with three held returned message %d, %v", m.ID, err)
	}
	cancel()
	if err := p.server.Settle(2, nil); err != nil {
		t.Fatal(err)
	}
	recv(4)
	if err := p.server.SetMaxInFlight(0); err == nil {
		t.Fatal("SetMaxInFlight(0) accepted")
	}
	got := make(chan uint64)
	go func() {
		m, err := p.server.Recv(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- m.ID
	}()
	if err := p.server.SetMaxInFlight(5); err != nil {
		t.Fatal(err)
	}
	if id := <-got; id != 5 {
		t.Fatalf("after raising MaxInFlight: message %d, want 5", id)
	}
	if st := p.server.Stats(); st.MessagesReceived != 5 {
		t.Fatalf("%d messages received", st.MessagesReceived)
	}
}

// TestRequeue: a message given back comes out of Recv again, first, with the same ID and Data;
// only a held message can be given back, once at a time.
func TestRequeue(t *testing.T) {
	p := newPair(t, "pipe", Config{AckDelay: time.Millisecond}, Config{MaxInFlight: 2})
	ctx := testCtx(t)
	rec := newRecorder()
	p.client.Observe(rec)
	for _, s := range []string{"one", "two", "three"} {
		if _, err := p.client.Send(ctx, []byte(s), AckProcessed); err != nil {
			t.Fatal(err)
		}
	}
	m1, _ := p.server.Recv(ctx)
	m2, _ := p.server.Recv(ctx)
	if err := p.server.Requeue(1); err != nil {
		t.Fatal(err)
	}
	if err := p.server.Requeue(1); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second Requeue: %v", err)
	}
	if err := p.server.Requeue(3); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Requeue of a message not received: %v", err)
	}
	again, err := p.server.Recv(ctx) // two held, but a requeued message is already held
	if err != nil || again.ID != 1 || string(again.Data) != "one" || &again.Data[0] != &m1.Data[0] {
		t.Fatalf("after Requeue: ID %d %q %v", again.ID, again.Data, err)
	}
	if err := p.server.Settle(2, nil); err != nil {
		t.Fatal(err)
	}
	if err := rec.await(ctx, func(r *recorder) bool { return r.progress.Delivered == 2 }); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	if rec.progress.Processed != 0 {
		t.Errorf("processed %d while message 1 is held", rec.progress.Processed)
	}
	rec.mu.Unlock()
	if err := p.server.Settle(1, errors.New("no")); err != nil {
		t.Fatal(err)
	}
	if err := rec.await(ctx, func(r *recorder) bool { return r.progress.Processed == 2 && r.failed[1] == "no" }); err != nil {
		t.Fatal(err)
	}
	if m, err := p.server.Recv(ctx); err != nil || m.ID != 3 {
		t.Fatalf("then: ID %d %v", m.ID, err)
	}
	_ = m2
}

// TestHeldMessagesStayIntact feeds a session messages of random sizes while the application keeps
// some of them held for a long time and settles the rest: the held ones pin the ring, which grows
// past them and wraps; a requeued message straddling the ring's end comes back the same. Every held
// message's Data must be unchanged when it is finally settled.
func TestHeldMessagesStayIntact(t *testing.T) {
	s := newParseHarness()
	s.maxInFlight = maxMaxInFlight
	rng := mrand.New(mrand.NewPCG(11, 12))
	type heldMsg struct {
		m    Message
		want []byte
	}
	var kept []heldMsg
	mid := uint64(0)
	wrapped, requeued := 0, 0
	for round := 0; round < 200; round++ {
		w := &wireStream{}
		w.pid = s.rd.rPID
		var want [][]byte
		for k := 0; k < 20; k++ {
			mid++
			p := make([]byte, rng.IntN(6000))
			for i := range p {
				p[i] = byte(mid*7 + uint64(i))
			}
			w.message(mid, AckProcessed, string(p), MaxFramePayload)
			want = append(want, p)
		}
		// Settle the oldest kept messages until the round fits in the credit, as a sender would wait.
		var cost uint64
		for _, p := range want {
			cost += messageCost(len(p))
		}
		for s.rd.recvCost+cost > s.releasedCost+s.peer.window {
			k := kept[0]
			kept = kept[1:]
			if !bytes.Equal(k.m.Data, k.want) {
				t.Fatalf("held message %d changed", k.m.ID)
			}
			if err := s.Settle(k.m.ID, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.feed(w.b, 1000); err != nil {
			t.Fatal(err)
		}
		for _, p := range want {
			s.mu.Lock()
			var m Message
			ok := s.takeLocked(&m)
			s.mu.Unlock()
			if !ok {
				t.Fatal("no message to take")
			}
			if !bytes.Equal(m.Data, p) {
				t.Fatalf("message %d arrived wrong", m.ID)
			}
			if a, b := s.rbuf.span(s.rTake-uint64(len(p)), s.rTake); len(a) > 0 && len(b) > 0 {
				wrapped++
				if err := s.Requeue(m.ID); err != nil {
					t.Fatal(err)
				}
				s.mu.Lock()
				var again Message
				ok = s.takeLocked(&again)
				s.mu.Unlock()
				if !ok || again.ID != m.ID || !bytes.Equal(again.Data, p) {
					t.Fatalf("requeued message %d came back as %d", m.ID, again.ID)
				}
				requeued++
			}
			if rng.IntN(10) == 0 {
				kept = append(kept, heldMsg{m, p})
			} else if err := s.Settle(m.ID, nil); err != nil {
				t.Fatal(err)
			}
		}
		// Now and then a kept message is settled, out of order.
		for len(kept) > 0 && rng.IntN(3) == 0 {
			i := rng.IntN(len(kept))
			k := kept[i]
			kept = append(kept[:i], kept[i+1:]...)
			if !bytes.Equal(k.m.Data, k.want) {
				t.Fatalf("held message %d changed", k.m.ID)
			}
			if err := s.Settle(k.m.ID, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range kept {
		if !bytes.Equal(k.m.Data, k.want) {
			t.Fatalf("held message %d changed", k.m.ID)
		}
	}
	t.Logf("%d messages straddled the ring's end; ring %d bytes", wrapped, len(s.rbuf.buf))
	if wrapped == 0 || requeued == 0 {
		t.Fatalf("no message straddled the ring's end (%d, %d): the test lost its point", wrapped, requeued)
	}
}

// panicky is an Observer that panics on every call.
type panicky struct{}

func (panicky) Progress(Progress)         { panic("progress") }
func (panicky) Failed(uint64, string)     { panic("failed") }
func (panicky) StateChanged(State, error) { panic("state") }

// TestObserversSideBySide: a layer's observer and the application's both hear every note; one
// that panics is counted and harms neither the session nor the others; a removed one hears no more.
func TestObserversSideBySide(t *testing.T) {
	p := newPair(t, "pipe", Config{AckDelay: time.Millisecond}, Config{})
	ctx := testCtx(t)
	layer, app := newRecorder(), newRecorder()
	p.client.Observe(layer)
	p.client.Observe(panicky{})
	removeApp := p.client.Observe(app)
	for i := 1; i <= 3; i++ {
		if _, err := p.client.Send(ctx, []byte{byte(i)}, AckProcessed); err != nil {
			t.Fatal(err)
		}
		m, err := p.server.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var fail error
		if i == 2 {
			fail = errors.New("two")
		}
		_ = p.server.Settle(m.ID, fail)
	}
	for _, r := range []*recorder{layer, app} {
		if err := r.await(ctx, func(r *recorder) bool { return r.progress.Processed == 3 && r.failed[2] == "two" }); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.client.Stats().ObserverPanics; n == 0 {
		t.Fatal("no observer panic counted")
	}
	removeApp()
	if _, err := p.client.Send(ctx, []byte{4}, AckProcessed); err != nil {
		t.Fatal(err)
	}
	m, err := p.server.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = p.server.Settle(m.ID, nil)
	if err := layer.await(ctx, func(r *recorder) bool { return r.progress.Processed == 4 }); err != nil {
		t.Fatal(err)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if app.progress.Processed != 3 {
		t.Fatalf("a removed observer heard processed %d", app.progress.Processed)
	}
}

// gatedConn is a connection whose writes can be made to block until it is closed: a peer that
// stopped reading, with the socket buffers full.
type gatedConn struct {
	net.Conn
	gated  atomic.Bool
	closed chan struct{}
	once   sync.Once
}

func (c *gatedConn) Write(b []byte) (int, error) {
	if c.gated.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

func (c *gatedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

type gatedListener struct {
	net.Listener
	conns chan *gatedConn
}

func (l gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	g := &gatedConn{Conn: c, closed: make(chan struct{})}
	l.conns <- g
	return g, nil
}

// TestTLSCloseWritesNothingUnderLock: when a TLS session's connection is closed while the peer
// reads nothing, closing must not write TLS's close_notify alert under the session's lock, where
// it would wait for a peer that never reads and hold up every call on the session.
func TestTLSCloseWritesNothingUnderLock(t *testing.T) {
	ctx := testCtx(t)
	base := runtime.NumGoroutine()
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := gatedListener{nl, make(chan *gatedConn, 4)}
	stls, ctls := testTLS(t)
	ln, err := NewListener(gl, Config{TLS: stls})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := Dial(ctx, nl.Addr().String(), Config{TLS: ctls})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gc := <-gl.conns
	gc.gated.Store(true) // the server can no longer write a byte
	c.Abort()            // the server reads ABORT and ends its session, closing the connection
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		_ = gc.Close() // let the stuck write go, so the test can end
		t.Fatal("the server session did not end: closing its TLS connection is stuck writing under the session's lock")
	}
	if !errors.Is(s.Err(), ErrSessionClosed) {
		t.Fatalf("server session ended with %v", s.Err())
	}
	waitDone(t, c)
	_ = ln.Close()
	checkGoroutines(t, base)
}

// TestAddressesAndTLSState: both ends know the connection's addresses, and with mutual TLS the
// server sees the client's certificate.
func TestAddressesAndTLSState(t *testing.T) {
	for _, transport := range []string{"tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			var ccfg, scfg Config
			if transport == "tls" {
				st, ct := testTLS(t)
				scfg.TLS = st.Clone()
				scfg.TLS.ClientAuth = tls.RequireAnyClientCert
				ccfg.TLS = ct.Clone()
				ccfg.TLS.Certificates = st.Certificates // the test's one certificate serves both ends
			}
			p := newPair(t, "tcp", ccfg, scfg)
			if p.client.RemoteAddr().String() != p.server.LocalAddr().String() ||
				p.server.RemoteAddr().String() != p.client.LocalAddr().String() {
				t.Fatalf("client %v -> %v, server %v <- %v", p.client.LocalAddr(), p.client.RemoteAddr(),
					p.server.LocalAddr(), p.server.RemoteAddr())
			}
			st, ok := p.server.ConnectionState()
			if ok != (transport == "tls") {
				t.Fatalf("TLS state reported: %v", ok)
			}
			if ok && (len(st.PeerCertificates) != 1 || st.PeerCertificates[0].Subject.CommonName != "ftsl test") {
				t.Fatalf("server sees client certificates %v", st.PeerCertificates)
			}
		})
	}
}

// TestSettleAndRecv: settling the message held and taking the next in one call; a message not
// held is refused and nothing is received.
func TestSettleAndRecv(t *testing.T) {
	p := newPair(t, "pipe", Config{AckDelay: time.Millisecond}, Config{})
	ctx := testCtx(t)
	rec := newRecorder()
	p.client.Observe(rec)
	for i := 1; i <= 3; i++ {
		if _, err := p.client.Send(ctx, []byte{byte(i)}, AckProcessed); err != nil {
			t.Fatal(err)
		}
	}
	m, err := p.server.Recv(ctx)
	if err != nil || m.ID != 1 {
		t.Fatalf("first: %d %v", m.ID, err)
	}
	if m, err = p.server.SettleAndRecv(ctx, 1, errors.New("bad")); err != nil || m.ID != 2 {
		t.Fatalf("second: %d %v", m.ID, err)
	}
	if _, err := p.server.SettleAndRecv(ctx, 1, nil); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("settling a message settled before: %v", err)
	}
	if m, err = p.server.SettleAndRecv(ctx, 2, nil); err != nil || m.ID != 3 {
		t.Fatalf("third: %d %v", m.ID, err)
	}
	_ = p.server.Settle(3, nil)
	if err := rec.await(ctx, func(r *recorder) bool { return r.progress.Processed == 3 && r.failed[1] == "bad" }); err != nil {
		t.Fatal(err)
	}
}

// TestOnArrival: a server handles a session's messages in place, on its reader goroutine, with
// TryRecv until nothing is left, and no goroutine of its own; the sender sees every one processed.
func TestOnArrival(t *testing.T) {
	p := newPair(t, "tcp", Config{AckDelay: time.Millisecond}, Config{})
	ctx := testCtx(t)
	rec := newRecorder()
	p.client.Observe(rec)
	var got atomic.Int64
	p.server.OnArrival(func() {
		for {
			m, ok, err := p.server.TryRecv()
			if err != nil || !ok {
				return
			}
			if m.ID != uint64(got.Load()+1) {
				t.Errorf("message %d after %d", m.ID, got.Load())
			}
			got.Add(1)
			_ = p.server.Settle(m.ID, nil)
		}
	})
	if _, ok, err := p.server.TryRecv(); ok || err != nil {
		t.Fatalf("TryRecv with nothing there: %v %v", ok, err)
	}
	const n = 2000
	for i := 0; i < n; i++ {
		if _, err := p.client.Send(ctx, payload(4, uint64(i), 100), AckProcessed); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.await(ctx, func(r *recorder) bool { return r.progress.Processed == n }); err != nil {
		t.Fatal(err)
	}
	if got.Load() != n {
		t.Fatalf("handled %d of %d", got.Load(), n)
	}
	p.client.Abort()
	<-p.server.Done()
	if _, ok, err := p.server.TryRecv(); ok || !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("TryRecv after the end: %v %v", ok, err)
	}
}
