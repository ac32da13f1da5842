package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/testkit"

	"github.com/ftsl-go/ftsl/internal/faultnet"
)

func chaosSize(r *mrand.Rand) int { return testkit.LogUniformSize(r, 64<<10) }

func chaosLevel(i uint64) AckLevel { return AckLevel((i * 7) % 3) }

// chaosFails says whether the receiving application fails message i (for good).
func chaosFails(i uint64) bool { return chaosLevel(i) == AckProcessed && i%5 == 0 }

func chaosVerdict(i uint64) error {
	if chaosFails(i) {
		return errors.New("chaos says no")
	}
	return nil
}

// chaosWorkers receive the server's side of a chaos test.
const chaosWorkers = 4

// TestChaos: two sessions exchange messages of random sizes both ways (a third of them shared, as in
// a fan-out), with all ack levels, while a
// proxy kills the connection after a random number of bytes (so mid-frame and mid-handshake) and
// some connections die before their handshake completes. Every message must arrive exactly once,
// in order, byte for byte; every failure must be reported exactly once, before processed passes
// it; progress never goes backwards; and the connection must really have died hundreds of times.
func TestChaos(t *testing.T) {
	n := testkit.ChaosMessages()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d messages each way", seed, n)
	base := testGoroutines()

	// Heartbeats every few milliseconds put PINGs, PONGs and the buffer trimming they trigger
	// into the mix whenever a side falls idle.
	const heartbeat = 5 * time.Millisecond
	ln, err := Listen("127.0.0.1:0", Config{AckDelay: time.Millisecond, HeartbeatInterval: heartbeat,
		MaxInFlight: chaosWorkers})
	if err != nil {
		t.Fatal(err)
	}
	px, err := faultnet.NewProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// About 600 MB cross the proxy in each run; a kill every 1.5 MB on average gives the hundreds
	// of kills we want while leaving room for progress.
	px.SetChaos(faultnet.Chaos{MinBytes: 1, MaxBytes: 3 << 20, Seed: int64(seed)})
	var tiny atomic.Int64
	r0 := mrand.New(mrand.NewPCG(seed, 99))
	var rmu sync.Mutex
	d := faultnet.NewDialer(func() faultnet.Plan {
		rmu.Lock()
		defer rmu.Unlock()
		if r0.IntN(10) == 0 {
			// Some connections die inside the handshake or the first frames.
			tiny.Add(1)
			b := int64(r0.IntN(300))
			return faultnet.Plan{ReadBudget: b + 1, WriteBudget: int64(r0.IntN(300)) + 1}
		}
		return faultnet.Plan{}
	})
	cfg := Config{BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond, AckDelay: time.Millisecond,
		HeartbeatInterval: heartbeat, Dial: d.DialContext}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var client *Session
	for client == nil {
		if client, err = Dial(ctx, px.Addr(), cfg); err != nil && ctx.Err() != nil {
			t.Fatal(err)
		}
	}
	server, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	crec, srec := newRecorder(), newRecorder()
	client.Observe(crec)
	server.Observe(srec)

	start := time.Now()
	var moved atomic.Int64 // messages received, for the watchdog
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	send := func(s *Session, seed uint64) {
		defer wg.Done()
		r := mrand.New(mrand.NewPCG(seed, 0))
		buf := make([]byte, 64<<10)
		for i := uint64(1); i <= uint64(n); i++ {
			m := buf[:chaosSize(r)]
			fillPayload(m, seed, i)
			send := s.Send
			if i%3 == 0 {
				// A third of the messages are shared, as a fan-out sends them: a per-session prefix
				// (sometimes too long to stay beside the reference) and a payload the sent buffer
				// keeps by reference, so they go out and again from outside the ring.
				m = bytes.Clone(m)
				k := min(len(m), int(i%400))
				send = func(ctx context.Context, m []byte, level AckLevel) (uint64, error) {
					return s.SendShared(ctx, m[:k], m[k:], level)
				}
			}
			if _, err := send(ctx, m, chaosLevel(i)); err != nil {
				errs <- fmt.Errorf("send %d: %w", i, err)
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
			moved.Add(1)
			if m.ID != i || m.Level != chaosLevel(i) {
				errs <- fmt.Errorf("recv %d: got ID %d level %v", i, m.ID, m.Level)
				return
			}
			if err := checkPayload(m.Data, seed, i, chaosSize(r)); err != nil {
				errs <- err
				return
			}
			if err := s.Settle(i, chaosVerdict(i)); err != nil {
				errs <- fmt.Errorf("settle %d: %w", i, err)
				return
			}
		}
	}
	// The server's side is a pool of workers, each settling its message after a random pause, so
	// messages are settled out of order: pMID advances over a settled prefix with holes behind
	// it, and FAIL reports go out of MID order. (A worker must not hold a message while it waits
	// in Recv: held messages pin the receive window, and the one it waits for might never fit.)
	recvPool := func(s *Session, seed uint64) {
		defer wg.Done()
		sizes := make([]int, n+1)
		r := mrand.New(mrand.NewPCG(seed, 0))
		for i := 1; i <= n; i++ {
			sizes[i] = chaosSize(r)
		}
		seen := make([]atomic.Bool, n+1)
		var got atomic.Int64
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		var pool sync.WaitGroup
		for w := range chaosWorkers {
			pool.Add(1)
			go func() {
				defer pool.Done()
				rw := mrand.New(mrand.NewPCG(seed, uint64(w)+1))
				last := uint64(0)
				for {
					m, err := s.Recv(wctx)
					if err != nil {
						if wctx.Err() == nil {
							errs <- fmt.Errorf("worker recv: %w", err)
						}
						return
					}
					moved.Add(1)
					id := m.ID
					if id == 0 || id > uint64(n) || id <= last || seen[id].Swap(true) || m.Level != chaosLevel(id) {
						errs <- fmt.Errorf("worker got ID %d (level %v) after %d: out of order, repeated or unknown", id, m.Level, last)
						return
					}
					last = id
					for range rw.IntN(20) {
						runtime.Gosched()
					}
					if err := checkPayload(m.Data, seed, id, sizes[id]); err != nil {
						errs <- err
						return
					}
					if err := s.Settle(id, chaosVerdict(id)); err != nil {
						errs <- fmt.Errorf("settle %d: %w", id, err)
						return
					}
					if got.Add(1) == int64(n) {
						stop()
					}
				}
			}()
		}
		pool.Wait()
	}
	// A watchdog: if nothing moves for 10 s, say where everything is, to debug a hang.
	watchdog := make(chan struct{})
	go func() {
		last, since := int64(-1), time.Now()
		for {
			select {
			case <-watchdog:
				return
			case <-time.After(time.Second):
			}
			if m := moved.Load(); m != last {
				last, since = m, time.Now()
			} else if time.Since(since) > 10*time.Second {
				t.Errorf("no progress for 10 s:\nclient %s\nserver %s\nproxy %+v", client.debugState(), server.debugState(), px.Stats())
				since = time.Now()
			}
		}
	}()
	wg.Add(4)
	go send(client, seed)
	go send(server, seed+1)
	go recvPool(server, seed)
	go recv(client, seed+1)
	wg.Wait()
	close(watchdog)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		px.SetChaos(faultnet.Chaos{})
		client.Abort()
		_ = ln.Close()
		_ = px.Close()
		return
	}

	// Every ticket-relevant outcome reached each sender, exactly once, in the right order.
	for _, side := range []struct {
		name string
		rec  *recorder
	}{{"client", crec}, {"server", srec}} {
		if err := side.rec.await(ctx, func(r *recorder) bool { return r.progress.Processed == uint64(n) }); err != nil {
			t.Fatalf("%s: %v", side.name, err)
		}
		side.rec.mu.Lock()
		for i := uint64(1); i <= uint64(n); i++ {
			_, failed := side.rec.failed[i]
			if failed != chaosFails(i) {
				t.Errorf("%s: message %d failure reported: %v", side.name, i, failed)
			}
		}
		side.rec.mu.Unlock()
		if a := side.rec.anomalies(); len(a) > 0 {
			t.Errorf("%s: %v", side.name, a)
		}
	}
	elapsed := time.Since(start)
	px.SetChaos(faultnet.Chaos{})
	ps := px.Stats()
	cs := client.Stats()
	t.Logf("%v: %d connections, %d killed by the proxy, %d cut early by the dialer, %d reconnects, %d frames resent, %d MB each way",
		elapsed.Round(time.Millisecond), ps.Accepted, ps.Killed, tiny.Load(), cs.Reconnects, cs.FramesResent, cs.BytesSent>>20)
	if kills := ps.Killed + tiny.Load(); kills < 200 && n >= 50000 {
		t.Errorf("only %d connections killed: want at least 200", kills)
	}
	if err := client.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	waitDone(t, client, server)
	_ = ln.Close()
	_ = px.Close()
	checkGoroutines(t, base)
}
