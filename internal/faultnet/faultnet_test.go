package faultnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitTimeout bounds every wait on an event that should come promptly, so a
// broken implementation fails the test instead of hanging it.
const waitTimeout = 5 * time.Second

// testServer is a loopback server that runs handle for each connection and
// reports how each connection's reading ended, so tests can check that the
// server side saw a fault.
type testServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	ended chan error // one per connection: the error that ended its reads (io.EOF included)

	mu    sync.Mutex
	conns []net.Conn
}

func newTestServer(t *testing.T, handle func(c net.Conn) error) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{ln: ln, ended: make(chan error, 100)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				err := handle(c)
				c.Close()
				s.ended <- err
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *testServer) addr() string { return s.ln.Addr().String() }

func (s *testServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// echo copies everything back and returns the error that ended reading,
// io.EOF for an orderly close (io.Copy would hide it).
func echo(c net.Conn) error {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
}

// source writes data and then waits for the peer to go away, so that a
// test can count how much of a one-way stream arrived. If gate is not nil,
// each connection waits for a token from it before writing: when the proxy
// breaks a connection after a few bytes, the reset can otherwise reach the
// client before its own connect has completed, and the dial itself fails.
func source(data []byte, gate <-chan struct{}) func(net.Conn) error {
	return func(c net.Conn) error {
		if gate != nil {
			select {
			case <-gate:
			case <-time.After(waitTimeout):
				return errors.New("source: never started")
			}
		}
		if _, err := c.Write(data); err != nil {
			return err
		}
		_, err := io.Copy(io.Discard, c)
		return err
	}
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := NewProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// dialMaybeRefused dials addr where the proxy may reset the connection at
// once; a reset can then already fail the connect, which is fine.
func dialMaybeRefused(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		if !isBroken(err) {
			t.Fatal(err)
		}
		return nil
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ping checks one round trip through an echo server, which also proves the
// proxy has finished dialing the server for this connection.
func ping(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(waitTimeout))
	defer c.SetDeadline(time.Time{})
	msg := []byte("ping")
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("ping write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("ping read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("ping: got %q", got)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// readUntilError reads until an error and returns everything read.
func readUntilError(c net.Conn) ([]byte, error) {
	var got bytes.Buffer
	buf := make([]byte, 777) // odd size so reads do not line up with the budget
	for {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			return got.Bytes(), err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
}

// isBroken reports whether err is what a peer sees from a dead connection.
func isBroken(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

func waitErr(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(waitTimeout):
		t.Fatalf("%s: no error within %v", what, waitTimeout)
		return nil
	}
}

func TestProxyForwardsIntact(t *testing.T) {
	srv := newTestServer(t, echo)
	p := newProxy(t, srv.addr())

	const clients = 3
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		data := randomBytes(t, 1<<20)
		c := dial(t, p.Addr())
		c.SetDeadline(time.Now().Add(30 * time.Second))
		wg.Add(1)
		go func() {
			defer wg.Done()
			werr := make(chan error, 1)
			go func() { _, err := c.Write(data); werr <- err }()
			got := make([]byte, len(data))
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- err
				return
			}
			if err := <-werr; err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, data) {
				errs <- errors.New("data corrupted")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := p.Stats(); s.Accepted != clients || s.Killed != 0 || s.Stalled != 0 {
		t.Errorf("stats = %+v", s)
	}
}

func TestProxyKillAll(t *testing.T) {
	srv := newTestServer(t, echo)
	p := newProxy(t, srv.addr())
	const n = 2
	var conns []net.Conn
	for range n {
		c := dial(t, p.Addr())
		ping(t, c)
		conns = append(conns, c)
	}
	if s := p.Stats(); s.Live != n {
		t.Fatalf("live = %d, want %d", s.Live, n)
	}

	if got := p.KillAll(); got != n {
		t.Fatalf("KillAll = %d, want %d", got, n)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(waitTimeout))
		_, err := c.Read(make([]byte, 1))
		if !isBroken(err) {
			t.Errorf("client %d: read error %v, want EOF or reset", i, err)
		}
	}
	for i := range n {
		if err := waitErr(t, srv.ended, "server side"); !isBroken(err) {
			t.Errorf("server conn %d: ended with %v, want EOF or reset", i, err)
		}
	}
	if s := p.Stats(); s.Killed != n || s.Live != 0 || s.Accepted != n {
		t.Errorf("stats = %+v", s)
	}
	if got := p.KillAll(); got != 0 {
		t.Errorf("second KillAll = %d, want 0", got)
	}

	// The proxy itself must keep working.
	ping(t, dial(t, p.Addr()))
}

func TestProxyStallAll(t *testing.T) {
	srv := newTestServer(t, echo)
	p := newProxy(t, srv.addr())
	c := dial(t, p.Addr())
	ping(t, c)

	if got := p.StallAll(); got != 1 {
		t.Fatalf("StallAll = %d, want 1", got)
	}
	if _, err := c.Write([]byte("lost")); err != nil {
		t.Fatalf("write on stalled conn: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	n, err := c.Read(make([]byte, 16))
	if n != 0 || !isTimeout(err) {
		t.Fatalf("read on stalled conn = %d, %v; want a timeout", n, err)
	}
	// Silent: the socket is still open and the server saw nothing.
	if _, err := c.Write([]byte("still open")); err != nil {
		t.Errorf("write after timeout: %v", err)
	}
	select {
	case err := <-srv.ended:
		t.Errorf("server conn ended (%v) on a stall", err)
	default:
	}
	if s := p.Stats(); s.Stalled != 1 || s.Live != 1 || s.Killed != 0 {
		t.Errorf("stats = %+v", s)
	}

	// New connections are not stalled.
	ping(t, dial(t, p.Addr()))
	if got := p.StallAll(); got != 1 {
		t.Errorf("second StallAll = %d, want 1 (only the new conn)", got)
	}

	// Killing a stalled connection turns the silence into a reset.
	if got := p.KillAll(); got != 2 {
		t.Errorf("KillAll = %d, want 2", got)
	}
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := c.Read(make([]byte, 1)); !isBroken(err) {
		t.Errorf("read after KillAll: %v", err)
	}
}

func TestProxyChaos(t *testing.T) {
	data := randomBytes(t, 256<<10)
	tests := []struct {
		name     string
		min, max int64
		stall    bool
	}{
		{"reset at 1000", 1000, 1000, false},
		{"reset at 1", 1, 1, false},
		{"reset inside a 32 KiB read", 40000, 40000, false},
		{"stall at 1000", 1000, 1000, true},
		{"reset at random", 1, 100000, false},
		{"reset beyond the socket buffers", 200000, 200000, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The server sends only one way, so every byte the
			// budget counts is one the client receives.
			gate := make(chan struct{}, 1)
			srv := newTestServer(t, source(data, gate))
			p := newProxy(t, srv.addr())
			ratio := 0.0
			if tc.stall {
				ratio = 1
			}
			p.SetChaos(Chaos{MinBytes: tc.min, MaxBytes: tc.max, StallRatio: ratio, Seed: 42})

			for i := range 3 {
				c := dial(t, p.Addr())
				gate <- struct{}{}
				if tc.stall {
					c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				} else {
					c.SetReadDeadline(time.Now().Add(waitTimeout))
				}
				got, err := readUntilError(c)
				if tc.stall {
					if !isTimeout(err) {
						t.Fatalf("conn %d: err = %v, want timeout on stall", i, err)
					}
				} else if !isBroken(err) {
					t.Fatalf("conn %d: err = %v, want reset", i, err)
				}
				if int64(len(got)) < tc.min || int64(len(got)) > tc.max {
					t.Fatalf("conn %d: got %d bytes, want %d..%d", i, len(got), tc.min, tc.max)
				}
				if !bytes.Equal(got, data[:len(got)]) {
					t.Fatalf("conn %d: delivered bytes are not a prefix of the stream", i)
				}
			}
			s := p.Stats()
			if tc.stall && (s.Stalled != 3 || s.Killed != 0) || !tc.stall && (s.Killed != 3 || s.Stalled != 0) {
				t.Errorf("stats = %+v", s)
			}
		})
	}
}

func TestProxyChaosReproducible(t *testing.T) {
	data := randomBytes(t, 256<<10)
	gate := make(chan struct{}, 1)
	srv := newTestServer(t, source(data, gate))
	run := func() []int {
		p := newProxy(t, srv.addr())
		p.SetChaos(Chaos{MinBytes: 1, MaxBytes: 200000, Seed: 7})
		var lens []int
		for range 4 {
			c := dial(t, p.Addr())
			gate <- struct{}{}
			c.SetReadDeadline(time.Now().Add(waitTimeout))
			got, _ := readUntilError(c)
			lens = append(lens, len(got))
		}
		return lens
	}
	a, b := run(), run()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different cuts: %v vs %v", a, b)
		}
	}
}

func TestProxyChaosOffAndZeroBudget(t *testing.T) {
	srv := newTestServer(t, echo)
	p := newProxy(t, srv.addr())

	// A zero budget breaks the connection before any byte flows.
	p.SetChaos(Chaos{MinBytes: 0, MaxBytes: 0, Seed: 1, StallRatio: 0})
	if c := dialMaybeRefused(t, p.Addr()); c != nil {
		c.SetReadDeadline(time.Now().Add(waitTimeout))
		if got, err := readUntilError(c); len(got) != 0 || !isBroken(err) {
			t.Errorf("zero budget: got %d bytes, err %v", len(got), err)
		}
	}
	if s := p.Stats(); s.Killed != 1 {
		t.Errorf("stats = %+v", s)
	}

	p.SetChaos(Chaos{})
	ping(t, dial(t, p.Addr()))
}

func TestProxyRefuse(t *testing.T) {
	srv := newTestServer(t, echo)
	p := newProxy(t, srv.addr())
	p.Refuse(true)
	for range 2 {
		if c := dialMaybeRefused(t, p.Addr()); c != nil {
			c.SetReadDeadline(time.Now().Add(waitTimeout))
			if _, err := c.Read(make([]byte, 1)); !isBroken(err) {
				t.Errorf("refused conn: read err %v, want EOF or reset", err)
			}
		}
	}
	if s := p.Stats(); s.Accepted != 2 || s.Live != 0 {
		t.Errorf("stats = %+v", s)
	}
	p.Refuse(false)
	ping(t, dial(t, p.Addr()))
}

func TestProxySetTarget(t *testing.T) {
	a := newTestServer(t, source([]byte("a"), nil))
	b := newTestServer(t, source([]byte("b"), nil))
	p := newProxy(t, a.addr())
	first := dial(t, p.Addr())
	readByte := func(c net.Conn) byte {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(waitTimeout))
		buf := make([]byte, 1)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		return buf[0]
	}
	if got := readByte(first); got != 'a' {
		t.Fatalf("got %q from first target", got)
	}
	p.SetTarget(b.addr())
	if got := readByte(dial(t, p.Addr())); got != 'b' {
		t.Fatalf("got %q from new target", got)
	}
	if s := p.Stats(); s.Live != 2 {
		t.Errorf("existing connection disturbed: %+v", s)
	}

	// An unreachable target looks like a refused connection to the client.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p.SetTarget(dead)
	if c := dialMaybeRefused(t, p.Addr()); c != nil {
		c.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := c.Read(make([]byte, 1)); !isBroken(err) {
			t.Errorf("unreachable target: read err %v", err)
		}
	}
}

func TestProxyCloseTwiceAndAfterClose(t *testing.T) {
	srv := newTestServer(t, echo)
	p, err := NewProxy(srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	ping(t, c)
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := p.KillAll(); got != 0 {
		t.Errorf("KillAll after Close = %d", got)
	}
	if got := p.StallAll(); got != 0 {
		t.Errorf("StallAll after Close = %d", got)
	}
	p.SetChaos(Chaos{MinBytes: 1, MaxBytes: 2})
	p.Refuse(true)
	p.SetTarget("127.0.0.1:1")
	if s := p.Stats(); s.Live != 0 {
		t.Errorf("stats after Close = %+v", s)
	}
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := c.Read(make([]byte, 1)); !isBroken(err) {
		t.Errorf("client after Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Errorf("proxy still accepting after Close")
	}
}

func TestProxyCloseLeaksNoGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		srv := newTestServer(t, echo)
		defer srv.close()
		p, err := NewProxy(srv.addr())
		if err != nil {
			t.Fatal(err)
		}
		var conns []net.Conn
		for i := range 6 {
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			ping(t, c)
			if i == 2 {
				p.StallAll()
			}
		}
		// One stalled connection loses its client: the proxy must
		// still reclaim the half that is left.
		conns[0].Close()
		if err := p.Close(); err != nil {
			t.Error(err)
		}
		for _, c := range conns {
			c.Close()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tcpPair returns two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.Accept(); ch <- res{c, err} }()
	client = dial(t, ln.Addr().String())
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return client, r.c
}

func TestConnReadBudget(t *testing.T) {
	tests := []struct {
		name   string
		budget int64
		bufs   []int // Read buffer sizes, cycled
	}{
		{"budget inside first read", 10, []int{64}},
		{"budget across reads", 100, []int{7}},
		{"budget equals read", 32, []int{32}},
		{"one byte", 1, []int{1000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, peer := tcpPair(t)
			c := Wrap(raw, Plan{ReadBudget: tc.budget})
			data := randomBytes(t, int(tc.budget)+500)
			if _, err := peer.Write(data); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(waitTimeout))
			var got []byte
			var err error
			for i := 0; err == nil; i++ {
				buf := make([]byte, tc.bufs[i%len(tc.bufs)])
				var n int
				n, err = c.Read(buf)
				got = append(got, buf[:n]...)
			}
			if int64(len(got)) != tc.budget || !bytes.Equal(got, data[:len(got)]) {
				t.Fatalf("read %d bytes before the break, want %d", len(got), tc.budget)
			}
			if !errors.Is(err, syscall.ECONNRESET) || isTimeout(err) {
				t.Fatalf("err = %v, want an injected reset", err)
			}
			if !c.Broken() {
				t.Error("Broken() = false after budget")
			}
			// The peer sees the reset.
			peer.SetReadDeadline(time.Now().Add(waitTimeout))
			if _, err := io.Copy(io.Discard, peer); err != nil && !isBroken(err) {
				t.Errorf("peer: %v", err)
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("write after cut: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Errorf("Close after cut: %v", err)
			}
		})
	}
}

func TestConnWriteBudget(t *testing.T) {
	tests := []struct {
		name   string
		budget int64
		writes []int
		wantN  []int // per write; the last one gets the error
	}{
		{"single write crosses", 10, []int{25}, []int{10}},
		{"second write crosses", 10, []int{6, 6}, []int{6, 4}},
		{"exact then next breaks", 10, []int{10, 5}, []int{10, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, peer := tcpPair(t)
			c := Wrap(raw, Plan{WriteBudget: tc.budget})
			var sent []byte
			for i, size := range tc.writes {
				data := randomBytes(t, size)
				n, err := c.Write(data)
				sent = append(sent, data[:n]...)
				last := i == len(tc.writes)-1
				if n != tc.wantN[i] || (err != nil) != last {
					t.Fatalf("write %d = %d, %v; want %d, error=%v", i, n, err, tc.wantN[i], last)
				}
				if last && !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("err = %v, want an injected reset", err)
				}
			}
			// The peer gets exactly the budget, then the reset.
			peer.SetReadDeadline(time.Now().Add(waitTimeout))
			got, err := readUntilError(peer)
			if !bytes.Equal(got, sent) || int64(len(got)) != tc.budget {
				t.Fatalf("peer got %d bytes, want %d", len(got), tc.budget)
			}
			if !isBroken(err) {
				t.Fatalf("peer err = %v", err)
			}
		})
	}
}

func TestConnStallPlan(t *testing.T) {
	raw, peer := tcpPair(t)
	c := Wrap(raw, Plan{ReadBudget: 5, WriteBudget: 3, Stall: true})

	// Write: 3 bytes reach the peer, the rest vanish, no error anywhere.
	if n, err := c.Write([]byte("abcdef")); n != 6 || err != nil {
		t.Fatalf("write = %d, %v; want 6, nil", n, err)
	}
	if n, err := c.Write([]byte("more")); n != 4 || err != nil {
		t.Fatalf("write on stalled = %d, %v", n, err)
	}
	peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	got, err := readUntilError(peer)
	if string(got) != "abc" || !isTimeout(err) {
		t.Fatalf("peer got %q, %v; want \"abc\" then timeout", got, err)
	}

	// Read: the conn is already stalled, so nothing more arrives.
	peer.Write([]byte("0123456789"))
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 10)); n != 0 || !isTimeout(err) {
		t.Fatalf("read on stalled = %d, %v; want timeout", n, err)
	}
}

func TestConnStallReadBudget(t *testing.T) {
	raw, peer := tcpPair(t)
	c := Wrap(raw, Plan{ReadBudget: 5, Stall: true})
	peer.Write([]byte("0123456789"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	got, err := readUntilError(c)
	if string(got) != "01234" || !isTimeout(err) {
		t.Fatalf("got %q, %v; want \"01234\" then timeout", got, err)
	}
	if !c.Broken() {
		t.Error("Broken() = false")
	}
}

func TestConnStall(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		raw, peer := tcpPair(t)
		c := Wrap(raw, Plan{})
		ping := []byte("hi")
		peer.Write(ping)
		c.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
			t.Fatal(err)
		}
		c.Stall()
		if !c.Broken() {
			t.Error("Broken() = false after Stall")
		}
		peer.Write(ping)
		start := time.Now()
		c.SetDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Read(make([]byte, 2))
		if n != 0 || !isTimeout(err) {
			t.Fatalf("read = %d, %v; want timeout", n, err)
		}
		if el := time.Since(start); el < 150*time.Millisecond {
			t.Errorf("timed out after %v, before the deadline", el)
		}
		// A deadline in the past fails at once.
		if _, err := c.Read(make([]byte, 2)); !isTimeout(err) {
			t.Errorf("read past deadline: %v", err)
		}
		if n, err := c.Write([]byte("swallowed")); n != 9 || err != nil {
			t.Errorf("write = %d, %v", n, err)
		}
		peer.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := peer.Read(make([]byte, 16)); n != 0 || !isTimeout(err) {
			t.Errorf("peer read = %d, %v; want nothing", n, err)
		}
	})

	t.Run("deadline moved while blocked", func(t *testing.T) {
		raw, _ := tcpPair(t)
		c := Wrap(raw, Plan{})
		c.Stall()
		done := make(chan error, 1)
		started := make(chan struct{})
		go func() {
			close(started)
			_, err := c.Read(make([]byte, 1))
			done <- err
		}()
		<-started
		// Whether the Read is already waiting or not, pulling the
		// deadline in must end it.
		c.SetReadDeadline(time.Now())
		if err := waitErr(t, done, "stalled read"); !isTimeout(err) {
			t.Errorf("err = %v, want timeout", err)
		}
	})

	t.Run("close unblocks", func(t *testing.T) {
		raw, _ := tcpPair(t)
		c := Wrap(raw, Plan{})
		c.Stall()
		done := readInBackground(c)
		c.Close()
		if err := waitErr(t, done, "stalled read"); !errors.Is(err, net.ErrClosed) {
			t.Errorf("err = %v, want net.ErrClosed", err)
		}
	})

	t.Run("stall during blocked read", func(t *testing.T) {
		raw, peer := tcpPair(t)
		c := Wrap(raw, Plan{})
		done := readInBackground(c)
		c.Stall()
		// Bytes arriving after the stall are lost; the Read keeps
		// waiting until the deadline.
		peer.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if err := waitErr(t, done, "stalled read"); !isTimeout(err) {
			t.Errorf("err = %v, want timeout", err)
		}
	})

	t.Run("cut ends a stall", func(t *testing.T) {
		raw, peer := tcpPair(t)
		c := Wrap(raw, Plan{})
		c.Stall()
		done := readInBackground(c)
		c.Cut()
		if err := waitErr(t, done, "stalled read"); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("err = %v, want injected reset", err)
		}
		peer.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := peer.Read(make([]byte, 1)); !isBroken(err) {
			t.Errorf("peer: %v", err)
		}
	})
}

func TestConnCut(t *testing.T) {
	raw, peer := tcpPair(t)
	c := Wrap(raw, Plan{})
	if c.Broken() {
		t.Fatal("Broken() before any fault")
	}
	if _, err := c.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	peer.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadFull(peer, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	c.Cut()
	c.Cut() // idempotent
	if !c.Broken() {
		t.Error("Broken() = false after Cut")
	}
	_, err := peer.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("peer read after Cut: %v, want connection reset", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read after Cut: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("write after Cut: %v", err)
	}
	c.Stall() // no effect after a cut
	if err := c.Close(); err != nil {
		t.Errorf("Close after Cut: %v", err)
	}
	if c.LocalAddr() == nil || c.RemoteAddr() == nil {
		t.Error("addresses lost")
	}
}

func TestConnPassThrough(t *testing.T) {
	raw, peer := tcpPair(t)
	c := Wrap(raw, Plan{ReadBudget: 1 << 20, WriteBudget: 1 << 20})
	go func() { io.Copy(peer, peer) }()
	ping(t, c)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
		t.Errorf("deadline not passed through: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}
}

func TestDialer(t *testing.T) {
	srv := newTestServer(t, echo)
	t.Run("no plan", func(t *testing.T) {
		d := NewDialer(nil)
		if d.LastConn() != nil || d.Dials() != 0 {
			t.Fatal("fresh dialer has state")
		}
		nc, err := d.DialContext(context.Background(), "tcp", srv.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		ping(t, nc)
		if d.Dials() != 1 || d.LastConn() != nc {
			t.Errorf("Dials = %d, LastConn = %p, want 1, %p", d.Dials(), d.LastConn(), nc)
		}
		// The test breaks the current conn through the dialer.
		d.LastConn().Cut()
		if _, err := nc.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("read after Cut: %v", err)
		}
	})
	t.Run("plan per dial", func(t *testing.T) {
		calls := 0
		d := NewDialer(func() Plan { calls++; return Plan{WriteBudget: int64(calls)} })
		for i := 1; i <= 2; i++ {
			nc, err := d.DialContext(context.Background(), "tcp", srv.addr())
			if err != nil {
				t.Fatal(err)
			}
			n, err := nc.Write([]byte("abc"))
			nc.Close()
			if n != i || err == nil {
				t.Errorf("dial %d: write = %d, %v; want %d and an error", i, n, err, i)
			}
		}
		if d.Dials() != 2 {
			t.Errorf("Dials = %d", d.Dials())
		}
	})
	t.Run("failed dial", func(t *testing.T) {
		d := NewDialer(nil)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if nc, err := d.DialContext(context.Background(), "tcp", addr); err == nil || nc != nil {
			t.Errorf("dial to closed port = %v, %v", nc, err)
		}
		if d.Dials() != 0 || d.LastConn() != nil {
			t.Error("failed dial recorded")
		}
	})
}

// readInBackground starts a one-byte Read on c and returns where its error will come.
func readInBackground(c net.Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	return done
}
