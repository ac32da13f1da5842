package core

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// idleCost opens n sessions over loopback TCP, exchanges a message each way on each, waits until
// every end has given back its buffers (a heartbeat interval of idleness), and returns what an end
// costs then: heap and stack bytes, and goroutines. The heartbeat paces the giving back; at scale,
// it must leave the machine time for the handshakes.
func idleCost(tb testing.TB, n int, heartbeat time.Duration) (bytes, goroutines float64) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := Config{HeartbeatInterval: heartbeat}
	ln, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	heap0, stack0 := memInUse()
	g0 := runtime.NumGoroutine()
	ends := make([]*Session, 0, 2*n)
	defer func() {
		for _, s := range ends {
			s.Abort()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := Dial(ctx, ln.Addr().String(), cfg)
		if err != nil {
			tb.Fatal(err)
		}
		s, err := ln.Accept(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		ends = append(ends, c, s)
		for _, pair := range [][2]*Session{{c, s}, {s, c}} {
			if _, err := pair[0].Send(ctx, []byte("hello"), AckProcessed); err != nil {
				tb.Fatal(err)
			}
			m, err := pair[1].Recv(ctx)
			if err != nil {
				tb.Fatal(err)
			}
			_ = pair[1].Settle(m.ID, nil)
		}
	}
	// No event says "buffers given back": poll, as the sessions' own heartbeats decide when.
	for _, s := range ends {
		for s.Stats().BufferMemory > 0 {
			if ctx.Err() != nil {
				tb.Fatalf("session %d still holds %d bytes of buffers", s.ID(), s.Stats().BufferMemory)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	heap1, stack1 := memInUse()
	g1 := runtime.NumGoroutine()
	ends2 := float64(len(ends))
	return float64(heap1-heap0+stack1-stack0) / ends2, float64(g1-g0) / ends2
}

func memInUse() (heap, stack uint64) {
	runtime.GC()
	runtime.GC() // the second empties the pools' victim caches
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse
}

// TestIdleSessionCost: an idle session end, after traffic, costs under 16 KiB, stacks included,
// and two goroutines (its connection's reader and writer). A hub holding 10,000 subscribers
// needs this; BenchmarkIdleSessions measures it at that scale.
func TestIdleSessionCost(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector enlarges every goroutine's stack and heap object: the figure means nothing under it")
	}
	bytes, goroutines := idleCost(t, 300, 100*time.Millisecond)
	t.Logf("idle session end: %.0f bytes, %.2f goroutines", bytes, goroutines)
	if bytes >= 16<<10 {
		t.Errorf("an idle session end costs %.0f bytes, want under 16 KiB", bytes)
	}
	if goroutines > 2 {
		t.Errorf("an idle session end runs %.2f goroutines, want at most 2", goroutines)
	}
}

// BenchmarkIdleSessions reports what an idle session costs a server (a hub's view) with
// FTSL_IDLE_SESSIONS sessions open at once (default 1,000): the clients run in a child process
// (this test binary, see TestMain), so each process needs only one socket per session.
func BenchmarkIdleSessions(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("FTSL_IDLE_SESSIONS")); err == nil && v > 0 {
		n = v
	}
	for range b.N {
		bytes, goroutines := hubIdleCost(b, n)
		b.ReportMetric(bytes, "B/session")
		b.ReportMetric(goroutines, "goroutines/session")
	}
}

// hubIdleCost is idleCost for the server ends only, the clients in a child process.
func hubIdleCost(b *testing.B, n int) (bytes, goroutines float64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg := Config{HeartbeatInterval: time.Second, AcceptBacklog: 1024}
	ln, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	heap0, stack0 := memInUse()
	g0 := runtime.NumGoroutine()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("FTSL_BENCH_CLIENTS=%s,%d", ln.Addr(), n))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = in.Close(); _ = cmd.Wait() }()
	ends := make([]*Session, 0, n)
	defer func() {
		for _, s := range ends {
			s.Abort()
		}
	}()
	for len(ends) < n {
		s, err := ln.Accept(ctx)
		if err != nil {
			b.Fatal(err)
		}
		ends = append(ends, s)
		m, err := s.Recv(ctx)
		if err != nil {
			b.Fatal(err)
		}
		_ = s.Settle(m.ID, nil)
		if _, err := s.Send(ctx, []byte("welcome"), AckProcessed); err != nil {
			b.Fatal(err)
		}
	}
	for _, s := range ends {
		for s.Stats().BufferMemory > 0 {
			if ctx.Err() != nil {
				b.Fatalf("session %d still holds %d bytes of buffers", s.ID(), s.Stats().BufferMemory)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	heap1, stack1 := memInUse()
	g1 := runtime.NumGoroutine()
	return float64(heap1-heap0+stack1-stack0) / float64(n), float64(g1-g0) / float64(n)
}

// runBenchClients is the child process of BenchmarkIdleSessions: it opens the sessions, sends a
// message on each and takes the answer, then holds them until its stdin closes.
func runBenchClients(spec string) error {
	addr, count, _ := strings.Cut(spec, ",")
	n, err := strconv.Atoi(count)
	if err != nil {
		return err
	}
	ctx := context.Background()
	cfg := Config{HeartbeatInterval: time.Second}
	for i := 0; i < n; i++ {
		c, err := Dial(ctx, addr, cfg)
		if err != nil {
			return err
		}
		if _, err := c.Send(ctx, []byte("hello"), AckProcessed); err != nil {
			return err
		}
		m, err := c.Recv(ctx)
		if err != nil {
			return err
		}
		_ = c.Settle(m.ID, nil)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}
