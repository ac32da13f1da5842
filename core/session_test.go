package core

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// exchange sends n messages each way at once, of sizes drawn by size, and checks that each side
// receives exactly the other's messages, in order and byte for byte.
func exchange(t *testing.T, a, b *Session, n int, seed uint64, size func(r *mrand.Rand) int) {
	t.Helper()
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	send := func(s *Session, seed uint64) {
		defer wg.Done()
		r := mrand.New(mrand.NewPCG(seed, 0))
		for i := uint64(1); i <= uint64(n); i++ {
			m := payload(seed, i, size(r))
			id, err := s.Send(ctx, m, AckLevel(i%3))
			if err != nil {
				errs <- fmt.Errorf("send %d: %w", i, err)
				return
			}
			if id != i {
				errs <- fmt.Errorf("send %d: got message ID %d", i, id)
				return
			}
		}
	}
	recv := func(s *Session, seed uint64) {
		defer wg.Done()
		r := mrand.New(mrand.NewPCG(seed, 0))
		for i := uint64(1); i <= uint64(n); i++ {
			m, err := s.Recv(ctx)
			if err != nil {
				errs <- fmt.Errorf("recv %d: %w", i, err)
				return
			}
			if m.ID != i || m.Level != AckLevel(i%3) {
				errs <- fmt.Errorf("recv %d: got ID %d level %v", i, m.ID, m.Level)
				return
			}
			if err := checkPayload(m.Data, seed, i, size(r)); err != nil {
				errs <- err
				return
			}
			_ = s.Settle(m.ID, nil)
		}
	}
	wg.Add(4)
	go send(a, seed)
	go send(b, seed+1)
	go recv(b, seed)
	go recv(a, seed+1)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSendRecvBothWays(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			p := newPair(t, tr, Config{}, Config{})
			exchange(t, p.client, p.server, 2000, 7, func(r *mrand.Rand) int {
				if r.IntN(50) == 0 {
					return r.IntN(200 << 10) // several chunks
				}
				return r.IntN(300)
			})
			if p.client.ID() != p.server.ID() || p.client.ID() == 0 {
				t.Errorf("session IDs %d and %d", p.client.ID(), p.server.ID())
			}
			st := p.client.Stats()
			if st.MessagesSent != 2000 || st.MessagesReceived != 2000 {
				t.Errorf("client stats %+v", st)
			}
		})
	}
}

// TestSmallBuffers runs traffic through buffers barely larger than a message, so credit and the
// sent buffer are exhausted all the time.
func TestSmallBuffers(t *testing.T) {
	cfg := Config{MaxMessageSize: 3000, SendBufferBytes: 4096, ReceiveBufferBytes: 4096}
	p := newPair(t, "tcp", cfg, cfg)
	exchange(t, p.client, p.server, 3000, 11, func(r *mrand.Rand) int { return r.IntN(3001) })
}

func TestEmptyMessage(t *testing.T) {
	p := newPair(t, "pipe", Config{}, Config{})
	ctx := testCtx(t)
	for _, m := range [][]byte{nil, {}, []byte("x"), nil} {
		if _, err := p.client.Send(ctx, m, AckNone); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []string{"", "", "x", ""} {
		m, err := p.server.Recv(ctx)
		if err != nil || string(m.Data) != want || m.ID != uint64(i+1) {
			t.Fatalf("message %d: %q %d %v", i, m.Data, m.ID, err)
		}
		_ = p.server.Settle(m.ID, nil)
	}
}

func TestMessageTooLarge(t *testing.T) {
	p := newPair(t, "pipe", Config{MaxMessageSize: 100 << 10}, Config{MaxMessageSize: 50 << 10})
	ctx := testCtx(t)
	// The server accepts at most 50 KiB, so the client may send no more, whatever its own limit.
	if _, err := p.client.Send(ctx, make([]byte, 50<<10+1), AckNone); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("client: %v, want ErrMessageTooLarge", err)
	}
	if _, err := p.server.TrySend(make([]byte, 50<<10+1), AckNone); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("server: %v, want ErrMessageTooLarge", err)
	}
	if st := p.client.Stats(); st.SendBuffered != 0 || st.MessagesSent != 0 {
		t.Fatalf("refused message was buffered: %+v", st)
	}
	if _, err := p.client.Send(ctx, make([]byte, 50<<10), AckNone); err != nil {
		t.Fatal(err)
	}
	m, err := p.server.Recv(ctx)
	if err != nil || len(m.Data) != 50<<10 || m.ID != 1 {
		t.Fatalf("%d bytes, ID %d, %v", len(m.Data), m.ID, err)
	}
}

func TestInvalidConfig(t *testing.T) {
	for _, cfg := range []Config{
		{MaxMessageSize: 1 << 20, ReceiveBufferBytes: 1 << 20},
		{MaxMessageSize: 1 << 20, SendBufferBytes: 1 << 19},
		{DeadPeerTimeout: time.Millisecond},
		{HeartbeatInterval: time.Second, DeadPeerTimeout: time.Second},
		{BackoffMin: time.Second, BackoffMax: time.Millisecond},
		{SendBufferBytes: -1},
		{ReceiveBufferBytes: maxWindow + 1},
	} {
		if _, err := Dial(context.Background(), "127.0.0.1:1", cfg); err == nil {
			t.Errorf("Dial accepted %+v", cfg)
		}
		if _, err := Listen("127.0.0.1:0", cfg); err == nil {
			t.Errorf("Listen accepted %+v", cfg)
		}
	}
}

// TestBufferFull fills the peer's window and then the sent buffer while the receiving application
// reads nothing: TrySend must refuse, Send must block until its context ends, and nothing may be
// lost once the application reads again.
func TestBufferFull(t *testing.T) {
	cfg := Config{MaxMessageSize: 1000, SendBufferBytes: 8 << 10, ReceiveBufferBytes: 8 << 10}
	p := newPair(t, "tcp", cfg, cfg)
	ctx := testCtx(t)
	msg := make([]byte, 1000)
	sent := fill(t, p.client, msg)
	// Both the peer's window (8 KiB) and the sent buffer (8 KiB) hold at most 8 of these each.
	if sent > 16 {
		t.Fatalf("%d KiB accepted into 16 KiB of buffers", sent)
	}
	if _, err := p.client.TrySend(msg, AckNone); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("TrySend on a full buffer: %v", err)
	}
	// A blocked Send completes once the reader makes room, whatever its context: one that
	// never ends (context.Background()) must block, not fail like TrySend.
	done := make(chan error, 1)
	go func() {
		_, err := p.client.Send(context.Background(), msg, AckNone)
		done <- err
	}()
	for i := 0; i < sent+1; i++ {
		m, err := p.server.Recv(ctx)
		if err != nil || m.ID != uint64(i+1) {
			t.Fatalf("recv %d: ID %d, %v", i+1, m.ID, err)
		}
		_ = p.server.Settle(m.ID, nil)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the blocked Send never completed")
	}
}

// fill sends msg until Send blocks for 200 ms, and returns how many it sent. Send blocks only
// when both the peer's window and the sent buffer are full (the peer application not reading).
func fill(t *testing.T, s *Session, msg []byte) int {
	t.Helper()
	for n := 0; ; n++ {
		ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
		_, err := s.Send(ctx, msg, AckNone)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		if n > 1000 {
			t.Fatal("Send never blocks")
		}
	}
}

func TestMessageWriter(t *testing.T) {
	p := newPair(t, "tcp", Config{}, Config{})
	ctx := testCtx(t)
	// A message streamed in pieces that do not line up with chunks.
	w, err := p.client.NewMessage(ctx, AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	whole := payload(1, 1, 900<<10)
	for off := 0; off < len(whole); {
		n := min(len(whole)-off, 10000+off%7)
		if _, err := w.Write(whole[off : off+n]); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	// Other messages wait for the stream to end.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = p.client.Send(short, []byte("during"), AckNone)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send while a message streams: %v, want it to wait", err)
	}
	if _, err := p.client.TrySend([]byte("during"), AckNone); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("TrySend while a message streams: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.Send(ctx, []byte("after"), AckNone); err != nil {
		t.Fatal(err)
	}
	// A cancelled message is never delivered, and its ID is used up.
	w2, err := p.client.NewMessage(ctx, AckNone)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Write(make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	if err := w2.Cancel(); err != nil {
		t.Fatal(err)
	}
	// Too large: cancelled by Write itself.
	w3, err := p.client.NewMessage(ctx, AckNone)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w3.Write(make([]byte, 1<<20+1)); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("oversize stream: %v", err)
	}
	if err := w3.Close(); err == nil {
		t.Fatal("Close after a cancelling Write succeeded")
	}
	if _, err := p.client.Send(ctx, []byte("last"), AckNone); err != nil {
		t.Fatal(err)
	}

	m, err := p.server.Recv(ctx)
	if err != nil || m.ID != 1 || m.Level != AckProcessed {
		t.Fatalf("streamed message: ID %d level %v err %v", m.ID, m.Level, err)
	}
	if err := checkPayload(m.Data, 1, 1, 900<<10); err != nil {
		t.Fatal(err)
	}
	_ = p.server.Settle(m.ID, nil)
	m, err = p.server.Recv(ctx)
	if err != nil || string(m.Data) != "after" || m.ID != 2 {
		t.Fatalf("got %q ID %d err %v, want \"after\" ID 2", m.Data, m.ID, err)
	}
	_ = p.server.Settle(m.ID, nil)
	m, err = p.server.Recv(ctx)
	if err != nil || string(m.Data) != "last" || m.ID != 5 {
		t.Fatalf("got %q ID %d err %v, want \"last\" ID 5 (3 and 4 cancelled)", m.Data, m.ID, err)
	}
}

func TestSettleAndProgress(t *testing.T) {
	p := newPair(t, "tcp", Config{AckDelay: time.Millisecond}, Config{MaxInFlight: 5})
	ctx := testCtx(t)
	rec := newRecorder()
	p.client.Observe(rec)
	levels := []AckLevel{AckProcessed, AckDelivered, AckProcessed, AckNone, AckProcessed}
	for i, l := range levels {
		if _, err := p.client.Send(ctx, []byte{byte(i)}, l); err != nil {
			t.Fatal(err)
		}
	}
	// All five are held at once.
	for i, l := range levels {
		m, err := p.server.Recv(ctx)
		if err != nil || m.Level != l || m.ID != uint64(i+1) {
			t.Fatalf("message %d: ID %d level %v err %v", i+1, m.ID, m.Level, err)
		}
	}
	if err := p.server.Settle(6, nil); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("Settle of a message not received: %v", err)
	}
	// Out of order: 3 fails before 1 is confirmed; 5 stays held.
	if err := p.server.Settle(3, errors.New("bad input")); err != nil {
		t.Fatal(err)
	}
	if err := p.server.Settle(1, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.server.Settle(1, nil); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second Settle: %v", err)
	}
	if err := p.server.Settle(2, errors.New("ignored")); err != nil {
		t.Fatalf("Settle of a message that asked for no processing: %v", err)
	}
	err := rec.await(ctx, func(r *recorder) bool { return r.progress.Processed >= 4 && r.progress.Delivered == 5 })
	if err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	if len(rec.failed) != 1 || rec.failed[3] != "bad input" {
		t.Errorf("failures %v", rec.failed)
	}
	if rec.progress.Processed != 4 {
		t.Errorf("progress %+v: message 5 is held unsettled, so processed must stop at 4", rec.progress)
	}
	rec.mu.Unlock()
	if err := p.server.Settle(5, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.server.Settle(4, nil); err != nil {
		t.Fatal(err)
	}
	if err := rec.await(ctx, func(r *recorder) bool { return r.progress.Processed == 5 }); err != nil {
		t.Fatal(err)
	}
	if a := rec.anomalies(); len(a) > 0 {
		t.Fatal(a)
	}
	if st := p.server.Stats(); st.RecvBuffered != 0 {
		t.Errorf("%d bytes still buffered after every message was settled", st.RecvBuffered)
	}
}

func TestCloseGraceful(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			p := newPair(t, tr, Config{}, Config{})
			ctx := testCtx(t)
			crec, srec := newRecorder(), newRecorder()
			p.client.Observe(crec)
			p.server.Observe(srec)
			const n = 500
			for i := 0; i < n; i++ {
				if _, err := p.client.Send(ctx, payload(3, uint64(i+1), 1000), AckNone); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.client.Close(ctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			// Close returned: the server had everything before it answered.
			if st := p.client.State(); st != StateClosed {
				t.Fatalf("client state %v", st)
			}
			if _, err := p.client.Send(ctx, []byte("x"), AckNone); !errors.Is(err, ErrSessionClosed) {
				t.Fatalf("Send after Close: %v", err)
			}
			for i := 0; i < n; i++ {
				m, err := p.server.Recv(ctx)
				if err != nil {
					t.Fatalf("recv %d after the peer closed: %v", i+1, err)
				}
				if err := checkPayload(m.Data, 3, uint64(i+1), 1000); err != nil {
					t.Fatal(err)
				}
				_ = p.server.Settle(m.ID, nil)
			}
			if _, err := p.server.Recv(ctx); !errors.Is(err, ErrSessionClosed) {
				t.Fatalf("Recv at the end: %v, want ErrSessionClosed", err)
			}
			waitDone(t, p.client, p.server)
			if err := p.client.Err(); err != nil {
				t.Errorf("client Err after a clean close: %v", err)
			}
			if err := p.client.Close(ctx); err != nil {
				t.Errorf("second Close: %v", err)
			}
			p.client.Abort() // after Close: harmless
			if err := crec.await(ctx, func(r *recorder) bool { return len(r.states) > 0 && r.states[len(r.states)-1] == StateClosed }); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCloseBothWays: the server closes while the client still has data in flight; the client's
// data all reaches the server before the session ends, and both closing at once works.
func TestCloseBothWays(t *testing.T) {
	p := newPair(t, "tcp", Config{}, Config{})
	ctx := testCtx(t)
	const n = 2000
	go func() {
		for i := 0; i < n; i++ {
			if _, err := p.client.Send(ctx, payload(5, uint64(i+1), 500), AckNone); err != nil {
				return
			}
		}
		_ = p.client.Close(ctx)
	}()
	got := make(chan int, 1)
	go func() {
		k := 0
		for {
			m, err := p.server.Recv(ctx)
			if err != nil {
				got <- k
				return
			}
			k++
			if m.ID != uint64(k) {
				got <- -k
				return
			}
			_ = p.server.Settle(m.ID, nil)
		}
	}()
	// Close from the server side too, concurrently with the client's sends and close.
	if err := p.server.Close(ctx); err != nil {
		t.Fatalf("server Close: %v", err)
	}
	k := <-got
	// Every message the client's Send accepted before the server closed arrived.
	if k < 0 {
		t.Fatalf("out of order at %d", -k)
	}
	st := p.client.Stats()
	if uint64(k) != st.MessagesSent {
		t.Fatalf("server received %d messages, client sent %d", k, st.MessagesSent)
	}
	waitDone(t, p.client, p.server)
}

func TestAbort(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			p := newPair(t, tr, Config{}, Config{})
			ctx := testCtx(t)
			if _, err := p.server.Send(ctx, []byte("unread"), AckNone); err != nil {
				t.Fatal(err)
			}
			p.client.Abort()
			p.client.Abort()
			if _, err := p.server.Recv(ctx); !errors.Is(err, ErrSessionClosed) {
				t.Fatalf("peer's Recv after Abort: %v", err)
			}
			if _, err := p.client.Recv(ctx); !errors.Is(err, ErrSessionClosed) {
				t.Fatalf("Recv after Abort: %v (buffered messages are dropped)", err)
			}
			if err := p.client.Close(ctx); !errors.Is(err, ErrSessionClosed) {
				t.Fatalf("Close after Abort: %v", err)
			}
			waitDone(t, p.client, p.server)
		})
	}
}

// TestCloseTimeout: Close cannot finish while the peer grants no credit; its context bounds it and
// the session is aborted.
func TestCloseTimeout(t *testing.T) {
	cfg := Config{MaxMessageSize: 1000, SendBufferBytes: 8 << 10, ReceiveBufferBytes: 8 << 10}
	p := newPair(t, "tcp", cfg, cfg)
	ctx := testCtx(t)
	fill(t, p.client, make([]byte, 1000))
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := p.client.Close(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v", err)
	}
	waitDone(t, p.client)
	if st := p.client.State(); st != StateClosed {
		t.Fatalf("state %v", st)
	}
}

func TestRecvContext(t *testing.T) {
	p := newPair(t, "pipe", Config{}, Config{})
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error)
	go func() {
		_, err := p.server.Recv(ctx)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

func TestListenerClose(t *testing.T) {
	p := newPair(t, "tcp", Config{}, Config{})
	ctx := testCtx(t)
	if err := p.ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ln.Accept(ctx); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
	// The listener aborted its session; the client hears of it.
	if _, err := p.client.Recv(ctx); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("client Recv after the listener closed: %v", err)
	}
	if err := p.ln.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestManySessionsEnd(t *testing.T) {
	base := testGoroutines()
	ln, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	var clients []*Session
	for i := 0; i < 50; i++ {
		c, err := Dial(ctx, ln.Addr().String(), Config{})
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		s, err := ln.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Send(ctx, []byte("hi"), AckNone); err != nil {
			t.Fatal(err)
		}
		if m, err := s.Recv(ctx); err != nil || string(m.Data) != "hi" {
			t.Fatal(m, err)
		}
	}
	if n := ln.Sessions(); n != 50 {
		t.Fatalf("listener holds %d sessions", n)
	}
	for i, c := range clients {
		if i%2 == 0 {
			if err := c.Close(ctx); err != nil {
				t.Fatal(err)
			}
		} else {
			c.Abort()
		}
	}
	waitDone(t, clients...)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	checkGoroutines(t, base)
}

func testGoroutines() int { return runtime.NumGoroutine() }

// TestLargeRequestReply sends big messages on a quiet link, one at a time each way: Send's
// inline write cannot take a whole message at once, and the writer must finish it.
func TestLargeRequestReply(t *testing.T) {
	p := newPair(t, "tcp", Config{}, Config{})
	ctx := testCtx(t)
	for i := uint64(1); i <= 20; i++ {
		n := int(1<<20 - i*1000)
		if _, err := p.client.Send(ctx, payload(9, i, n), AckNone); err != nil {
			t.Fatal(err)
		}
		m, err := p.server.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkPayload(m.Data, 9, i, n); err != nil {
			t.Fatal(err)
		}
		if _, err := p.server.Send(ctx, m.Data, AckNone); err != nil {
			t.Fatal(err)
		}
		_ = p.server.Settle(m.ID, nil)
		m, err = p.client.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkPayload(m.Data, 9, i, n); err != nil {
			t.Fatal(err)
		}
		_ = p.client.Settle(m.ID, nil)
	}
}

// TestIdleAfterRequests: after request-reply traffic (Send writing inline), an idle session keeps
// its heartbeats going, so neither side declares the connection dead.
func TestIdleAfterRequests(t *testing.T) {
	cfg := Config{DeadPeerTimeout: 300 * time.Millisecond} // margin for a loaded CI machine
	p := newPair(t, "tcp", cfg, cfg)
	ctx := testCtx(t)
	pingPong(t, ctx, p, 300)
	time.Sleep(8 * cfg.DeadPeerTimeout) // the test: nothing may happen while idle
	if c, s := p.client.Stats(), p.server.Stats(); c.Reconnects+s.Reconnects != 0 {
		t.Fatalf("reconnects: client %d, server %d", c.Reconnects, s.Reconnects)
	}
	// Both ends ping while idle, whichever of them started first.
	if c, s := p.client.Stats(), p.server.Stats(); c.RTT <= 0 || s.RTT <= 0 {
		t.Fatalf("heartbeat round trips: client %v, server %v", c.RTT, s.RTT)
	}
}
