//go:build !race

// The race detector enlarges every goroutine's stack and heap object: a memory figure measured
// under it means nothing, so these build only without it.

package pubsub

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/oneway"
)

// idleClientsEnv tells a child test process to be the clients of idleSubscriberCost:
// "ADDR,N" dials N clients to ADDR, each subscribing to a subject of its own.
const idleClientsEnv = "FTSL_PUBSUB_IDLE_CLIENTS"

func init() { childMains[idleClientsEnv] = runIdleClients }

// idleSubscriberCost serves n subscribed clients, dialled from a child process so that only the
// hub's side is counted, waits until their sessions have given back their buffers, and returns
// what one costs the hub then: heap and stack bytes, and goroutines.
func idleSubscriberCost(tb testing.TB, n int) (bytes, goroutines float64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	sess := oneway.Config{Core: core.Config{HeartbeatInterval: time.Second, AcceptBacklog: 1024}}
	h, err := NewHub(HubConfig{Session: sess})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := oneway.Listen("127.0.0.1:0", sess)
	if err != nil {
		tb.Fatal(err)
	}
	heap0, stack0 := memInUse()
	g0 := runtime.NumGoroutine()
	served := make(chan error, 1)
	go func() { served <- h.Serve(ctx, ln) }()

	t0 := time.Now()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", idleClientsEnv, ln.Addr(), n))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	defer func() {
		// The hub first: its Close ends every session cleanly while the clients are still there.
		_ = h.Close(ctx)
		<-served
		_ = in.Close()
		_ = cmd.Wait()
	}()
	// The child says "ready" once every client's subscription was confirmed by the hub.
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		tb.Fatalf("clients: %q %v", line, err)
	}
	tb.Logf("ready after %v", time.Since(t0))
	if st := h.Stats(); st.Clients != n || st.Subscriptions != n {
		tb.Fatalf("the hub has %d clients and %d subscriptions, want %d", st.Clients, st.Subscriptions, n)
	}
	// No event says "buffers given back": poll, as the sessions' own heartbeats decide when.
	for h.Stats().BufferMemory > 0 {
		if ctx.Err() != nil {
			tb.Fatalf("the sessions still hold %d bytes of buffers", h.Stats().BufferMemory)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Logf("buffers back after %v", time.Since(t0))
	heap1, stack1 := memInUse()
	g1 := runtime.NumGoroutine() - 1 // the Serve loop
	return float64(heap1-heap0+stack1-stack0) / float64(n), float64(g1-g0) / float64(n)
}

// runIdleClients is the child process of idleSubscriberCost: it dials the clients, subscribes
// each, says "ready", and holds them until its stdin closes.
func runIdleClients(spec string) error {
	addr, count, _ := strings.Cut(spec, ",")
	n, err := strconv.Atoi(count)
	if err != nil {
		return err
	}
	ctx := context.Background()
	cfg := Config{Session: oneway.Config{Core: core.Config{HeartbeatInterval: time.Second}}}
	clients := make([]*Client, 0, n)
	for i := range n {
		c, err := Dial(ctx, addr, cfg)
		if err != nil {
			return fmt.Errorf("client %d: %w", i, err)
		}
		clients = append(clients, c)
		if _, err := c.Subscribe(fmt.Sprintf("idle.%d", i), func(context.Context, *Msg) error { return nil }); err != nil {
			return fmt.Errorf("client %d: %w", i, err)
		}
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes it
	for _, c := range clients {
		c.Abort()
	}
	return nil
}

func memInUse() (heap, stack uint64) {
	runtime.GC()
	runtime.GC() // the second empties the pools' victim caches
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse
}

// TestIdleSubscriberCost: a subscribed client idle at the hub costs it under 16 KiB, stacks
// included, and no goroutine beyond its session's two. BenchmarkIdleSubscribers measures it at
// 10,000.
func TestIdleSubscriberCost(t *testing.T) {
	bytes, goroutines := idleSubscriberCost(t, 300)
	t.Logf("%.0f B and %.2f goroutines per idle subscriber", bytes, goroutines)
	if bytes > 16<<10 {
		t.Errorf("%.0f B per idle subscriber, want under 16 KiB", bytes)
	}
	if goroutines > 2.05 {
		t.Errorf("%.2f goroutines per idle subscriber, want its session's 2", goroutines)
	}
}

// BenchmarkIdleSubscribers reports the hub's cost per idle subscribed client, at
// FTSL_IDLE_SUBSCRIBERS clients (default 10,000).
func BenchmarkIdleSubscribers(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("FTSL_IDLE_SUBSCRIBERS")); err == nil && v > 0 {
		n = v
	}
	for range b.N {
		bytes, goroutines := idleSubscriberCost(b, n)
		b.ReportMetric(bytes, "B/subscriber")
		b.ReportMetric(goroutines, "goroutines/subscriber")
	}
}
