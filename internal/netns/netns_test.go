//go:build linux

package netns_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/netns"
)

func requireNetns(t *testing.T) {
	t.Helper()
	if ok, why := netns.Available(); !ok {
		t.Skip("network namespaces unavailable: " + why)
	}
}

// echoServer accepts on ln and echoes every connection until ln is closed.
// wait blocks until the accept loop and all handlers have returned; it
// closes the accepted connections first.
func echoServer(ln net.Listener) (wait func()) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	return func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

func exchange(t *testing.T, c net.Conn, msg string, timeout time.Duration) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo of %q: %v", msg, err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}

func waitGoroutines(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), baseline, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func nsExists(name string) bool {
	_, err := os.Lstat("/var/run/netns/" + name)
	return err == nil
}

// TestLinkOutageIsSilence checks that taking the link down makes an
// established connection go silent (no error, no reset), that new dials
// fail while it is down, and that the same connection and new dials work
// again after the link comes back.
func TestLinkOutageIsSilence(t *testing.T) {
	requireNetns(t)
	baseline := runtime.NumGoroutine()

	pair, err := netns.NewPair(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	t.Logf("namespaces %s / %s, veth %s / %s", pair.NameA, pair.NameB, pair.VethA, pair.VethB)

	ln, err := pair.ListenB("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); host != pair.AddrB {
		t.Fatalf("listener address %v, want host %s", ln.Addr(), pair.AddrB)
	}
	stopServer := echoServer(ln)
	defer stopServer()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pair.DialA(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if host, _, _ := net.SplitHostPort(conn.LocalAddr().String()); host != pair.AddrA {
		t.Fatalf("client local address %v, want host %s", conn.LocalAddr(), pair.AddrA)
	}
	exchange(t, conn, "hello", 5*time.Second)

	// Pull the cable.
	if err := pair.LinkDown(); err != nil {
		t.Fatal(err)
	}
	downAt := time.Now()
	if _, err := conn.Write([]byte("lost")); err != nil {
		t.Fatalf("write while link down: %v (want it buffered, no error)", err)
	}
	conn.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 16)
	n, err := conn.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read while link down = %d, %v; want a timeout", n, err)
	}

	// A new dial while down fails.
	dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
	start := time.Now()
	c2, err := pair.DialA(dctx, "tcp", ln.Addr().String())
	dcancel()
	if err == nil {
		c2.Close()
		t.Fatal("DialA succeeded while link down")
	}
	t.Logf("DialA while down failed after %v: %v", time.Since(start).Round(time.Millisecond), err)

	// Plug it back in: the same connection carries bytes again once TCP
	// retransmits "lost".
	if err := pair.LinkUp(); err != nil {
		t.Fatal(err)
	}
	upAt := time.Now()
	t.Logf("link was down for %v", upAt.Sub(downAt).Round(time.Millisecond))
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(conn, buf[:4]); err != nil {
		t.Fatalf("read after link up: %v", err)
	}
	if string(buf[:4]) != "lost" {
		t.Fatalf("after link up read %q, want %q", buf[:4], "lost")
	}
	t.Logf("retransmitted data echoed %v after LinkUp", time.Since(upAt).Round(time.Millisecond))
	exchange(t, conn, "again", 5*time.Second)

	// A new dial after the link is back works.
	dctx, dcancel = context.WithTimeout(context.Background(), 5*time.Second)
	c3, err := pair.DialA(dctx, "tcp", ln.Addr().String())
	dcancel()
	if err != nil {
		t.Fatalf("DialA after LinkUp: %v", err)
	}
	exchange(t, c3, "fresh", 5*time.Second)
	c3.Close()

	conn.Close()
	stopServer()
	if err := pair.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := pair.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if nsExists(pair.NameA) || nsExists(pair.NameB) {
		t.Fatalf("namespaces %s/%s still exist after Close", pair.NameA, pair.NameB)
	}
	if _, err := pair.DialA(context.Background(), "tcp", ln.Addr().String()); err == nil {
		t.Fatal("DialA after Close succeeded")
	}
	waitGoroutines(t, baseline)
}

// TestDialCancel checks that cancelling ctx aborts a DialA that would
// otherwise hang (the link is down on B's side, so the SYN vanishes).
func TestDialCancel(t *testing.T) {
	requireNetns(t)
	baseline := runtime.NumGoroutine()
	pair, err := netns.NewPair(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	// Take B's end down behind the helper's back: A keeps its route, so
	// the SYN is sent and silently dropped, and connect blocks.
	if out, err := exec.Command("ip", "-n", pair.NameB, "link", "set", pair.VethB, "down").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	c, err := pair.DialA(ctx, "tcp", net.JoinHostPort(pair.AddrB, "9"))
	if err == nil {
		c.Close()
		t.Fatal("DialA succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("DialA error = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancelled DialA took %v", d)
	}
	if err := pair.Close(); err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, baseline)
}

// TestCloseAfterExternalDelete checks Close tolerates namespaces that the
// test already deleted.
func TestCloseAfterExternalDelete(t *testing.T) {
	requireNetns(t)
	pair, err := netns.NewPair(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{pair.NameA, pair.NameB} {
		if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	if err := pair.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := pair.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestPairsAreIsolated checks that two pairs exist side by side with the
// same addresses, and that names are unique.
func TestPairsAreIsolated(t *testing.T) {
	requireNetns(t)
	p1, err := netns.NewPair("same/prefix with spaces and a rather long name")
	if err != nil {
		t.Fatal(err)
	}
	defer p1.Close()
	p2, err := netns.NewPair("same/prefix with spaces and a rather long name")
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if p1.NameA == p2.NameA || p1.NameB == p2.NameB {
		t.Fatalf("names not unique: %s %s", p1.NameA, p2.NameA)
	}
	if len(p1.VethA) > 15 || len(p1.VethB) > 15 {
		t.Fatalf("interface names too long: %q %q", p1.VethA, p1.VethB)
	}
	ln1, err := p1.ListenB("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln1.Close()
	ln2, err := p2.ListenB("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	stop1 := echoServer(ln1)
	defer stop1()
	stop2 := echoServer(ln2)
	defer stop2()

	// Link down on p1 must not affect p2.
	if err := p1.LinkDown(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := p2.DialA(ctx, "tcp", ln2.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange(t, c, "p2", 5*time.Second)

	// p1's listener port is not reachable from p2's namespace A unless
	// it happens to equal p2's; p2 has no listener on p1's port.
	if ln1.Addr().String() != ln2.Addr().String() {
		c, err := p2.DialA(ctx, "tcp", ln1.Addr().String())
		if err == nil {
			c.Close()
			t.Fatal("p2 reached p1's listener")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial p1's port from p2 = %v, want connection refused", err)
		}
	}
	if err := p1.LinkUp(); err != nil {
		t.Fatal(err)
	}
	c1, err := p1.DialA(ctx, "tcp", ln1.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	exchange(t, c1, "p1", 5*time.Second)
}

func TestAddressValidation(t *testing.T) {
	requireNetns(t)
	pair, err := netns.NewPair(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	if _, err := pair.DialA(context.Background(), "tcp", "example.com:80"); err == nil {
		t.Fatal("DialA with a host name succeeded; want an error (no name resolution)")
	}
	if _, err := pair.ListenB("tcp", "localhost:0"); err == nil {
		t.Fatal("ListenB with a host name succeeded")
	}
	ln, err := pair.ListenB("tcp", "127.0.0.1:0") // B's own loopback
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

// TestThreadsNotReused checks that the threads that entered A or B are
// thrown away: afterwards every thread of the process except possibly the
// main thread (which the runtime parks forever instead of exiting) is in
// the host's network namespace.
func TestThreadsNotReused(t *testing.T) {
	requireNetns(t)
	host := threadNetns(t)
	pair, err := netns.NewPair(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	ln, err := pair.ListenB("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	stop := echoServer(ln)
	defer stop()
	for i := 0; i < 20; i++ {
		c, err := pair.DialA(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		exchange(t, c, "x", 5*time.Second)
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		foreign := foreignThreads(t, host)
		if len(foreign) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads outside the host network namespace: %v", foreign)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// threadNetns returns the network namespace of a thread that has not been
// touched by the helper.
func threadNetns(t *testing.T) string {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func foreignThreads(t *testing.T, host string) []string {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*")
	if err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(os.Getpid())
	var foreign []string
	for _, task := range tasks {
		if filepath.Base(task) == pid {
			continue // main thread: wedged, never reused, if it ran a helper goroutine
		}
		ns, err := os.Readlink(task + "/ns/net")
		if err != nil {
			continue // thread exited meanwhile
		}
		if ns != host {
			foreign = append(foreign, filepath.Base(task)+":"+ns)
		}
	}
	return foreign
}

// TestSweepsLeftovers checks that NewPair deletes namespaces left behind by
// an earlier, crashed process with the same prefix.
func TestSweepsLeftovers(t *testing.T) {
	requireNetns(t)
	dead := 0
	// Start at a random pid, so that two test processes running at once pick different ones.
	for pid := 4194303 - rand.IntN(100000); pid > 4000000; pid-- {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			dead = pid
			break
		}
	}
	if dead == 0 {
		t.Skip("no unused pid found")
	}
	leftover := "ftsl-" + t.Name() + "-" + strconv.Itoa(dead) + "-1-a"
	if out, err := exec.Command("ip", "netns", "add", leftover).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "delete", leftover).Run()
	pair, err := netns.NewPair(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	if nsExists(leftover) {
		t.Fatalf("leftover namespace %s not swept", leftover)
	}
}
