package core

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// helloFrame is a valid HELLO with default settings, as a client sends it.
func helloFrame(t testing.TB) []byte {
	t.Helper()
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, headerLen+helloLen)
	header{typ: frameHello, length: helloLen}.put(b)
	cfg.offer().put(b[headerLen:])
	return b
}

// attack opens connections to addr from n goroutines and reopens each as soon as the server
// drops it, until stop is called. Idle ones send nothing; slow ones dribble a valid HELLO one byte
// every interval, never done before the server's first-frame deadline.
type attack struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	dropped atomic.Int64 // connections the server closed
	slowCut atomic.Int64 // of those, connections that had sent part of a HELLO
	// going is closed once the server has dropped as many connections as the attack has
	// goroutines, twice: by then all of them are in, and in again.
	going   chan struct{}
	goingAt int64
}

func startAttack(addr string, idle, slow int, hello []byte, interval time.Duration) *attack {
	ctx, cancel := context.WithCancel(context.Background())
	a := &attack{cancel: cancel, going: make(chan struct{}), goingAt: 2 * int64(idle+slow)}
	for i := range idle + slow {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.run(ctx, addr, i >= idle, hello, interval)
		}()
	}
	return a
}

func (a *attack) run(ctx context.Context, addr string, slow bool, hello []byte, interval time.Duration) {
	var d net.Dialer
	for ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			time.Sleep(time.Millisecond) // the accept queue overflowed, say: try again
			continue
		}
		stop := context.AfterFunc(ctx, func() { _ = c.Close() })
		var b [64]byte
		for sent := 0; ; {
			if slow {
				_ = c.SetReadDeadline(time.Now().Add(interval))
			}
			_, err := c.Read(b[:])
			var ne net.Error
			if slow && errors.As(err, &ne) && ne.Timeout() {
				if sent < len(hello)-1 { // never the last byte
					_, _ = c.Write(hello[sent : sent+1])
					sent++
				}
				continue
			}
			if ctx.Err() == nil {
				if a.dropped.Add(1) == a.goingAt {
					close(a.going)
				}
				if sent > 0 {
					a.slowCut.Add(1)
				}
			}
			break
		}
		stop()
		_ = c.Close()
	}
}

func (a *attack) stop() {
	a.cancel()
	a.wg.Wait()
}

// strangerLines counts the lines a Listener logs about strangers.
type strangerLines struct{ n atomic.Int64 }

func (w *strangerLines) Write(p []byte) (int, error) {
	var line struct{ Remote string }
	if json.Unmarshal(p, &line) == nil && line.Remote != "" {
		w.n.Add(1)
	}
	return len(p), nil
}

// botnet is a net.Listener that tells the hostile test's clients apart, though all of them
// connect over 127.0.0.1: a connection from a port that a legitimate client registered (dial) comes
// from 127.0.0.1; any other comes from one of botnetSize attacker addresses, chosen by its port.
type botnet struct {
	net.Listener
	mu    sync.Mutex
	legit map[int]bool
}

// botnetSize attacker addresses may hold up to botnetSize*64 handshakes, more than a listener's
// 256: the listener's bound is reached, and its evictions are what the clients meet.
const botnetSize = 8

func (b *botnet) Accept() (net.Conn, error) {
	c, err := b.Listener.Accept()
	if err != nil {
		return nil, err
	}
	port := c.RemoteAddr().(*net.TCPAddr).Port
	b.mu.Lock()
	legit := b.legit[port]
	b.mu.Unlock()
	if legit {
		return c, nil
	}
	bot := netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + port%botnetSize)})
	return sourcedConn{c, net.TCPAddrFromAddrPort(netip.AddrPortFrom(bot, uint16(port)))}, nil
}

// dial is a legitimate client's Config.Dial. It connects from a port below the ephemeral range
// (which the attackers' ports come from), registered before it connects.
func (b *botnet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	for {
		port := 20000 + mrand.IntN(10000)
		b.mu.Lock()
		b.legit[port] = true
		b.mu.Unlock()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}
		c, err := d.DialContext(ctx, network, addr)
		if !errors.Is(err, syscall.EADDRINUSE) {
			return c, err
		}
	}
}

// TestHostileHandshakes floods a listener with the default handshake limits with idle and
// slowloris connections from a botnet, reopened as soon as they are dropped, and checks that
// legitimate clients still open new sessions and resume an existing one, within a deadline well
// below HandshakeTimeout, and that the log about the attackers stays a trickle.
func TestHostileHandshakes(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the loopback")
	}
	base := testGoroutines()
	logs := &strangerLines{}
	const handshakeTimeout = 10 * time.Second // the default; legitimate clients need far less
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bots := &botnet{Listener: nl, legit: make(map[int]bool)}
	ln, err := NewListener(bots, Config{
		HandshakeTimeout:  handshakeTimeout,
		FirstFrameTimeout: 500 * time.Millisecond,
		Logger:            zerolog.New(logs).Level(zerolog.DebugLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx := testCtx(t)
	quick := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, handshakeTimeout/3)
	}
	fast := Config{BackoffMin: time.Millisecond, BackoffMax: 50 * time.Millisecond, Dial: bots.dial}

	// A session opened before the attack, whose connection the test can reset.
	conns := make(chan net.Conn, 16)
	cfg := fast
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := bots.dial(ctx, network, addr)
		if err == nil {
			select {
			case conns <- c:
			default:
			}
		}
		return c, err
	}
	old, err := Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	oldServer, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldConn := <-conns

	start := time.Now()
	a := startAttack(addr, 2000, 300, helloFrame(t), 50*time.Millisecond)
	defer a.stop()
	select {
	case <-a.going:
	case <-ctx.Done():
		t.Fatal("the attack never got going")
	}

	// New sessions, all at once.
	const clients = 8
	errs := make(chan error, clients)
	sessions := make(chan *Session, clients)
	attempts := countDials{next: bots.dial}
	var slowest atomic.Int64
	for range clients {
		go func() {
			dctx, cancel := quick()
			defer cancel()
			cfg := fast
			cfg.Dial = attempts.dial
			t0 := time.Now()
			c, err := Dial(dctx, addr, cfg)
			for d, was := int64(time.Since(t0)), slowest.Load(); d > was && !slowest.CompareAndSwap(was, d); {
				was = slowest.Load()
			}
			if err == nil {
				sessions <- c
			}
			errs <- err
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Errorf("new session during the attack: %v", err)
		}
	}
	close(sessions)
	var servers []*Session
	for c := range sessions {
		s, err := ln.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, s)
		c.Abort()
		waitDone(t, c)
	}

	// The old session's connection is reset: it must resume and carry a message.
	resumeStart := time.Now()
	_ = oldConn.(*net.TCPConn).SetLinger(0)
	_ = oldConn.Close()
	rctx, cancel := quick()
	defer cancel()
	if _, err := old.Send(rctx, []byte("still here"), AckNone); err != nil {
		t.Fatalf("send after the reset: %v", err)
	}
	m, err := oldServer.Recv(rctx)
	if err != nil {
		t.Fatalf("resume during the attack: %v (client %v)", err, old.Stats())
	}
	if string(m.Data) != "still here" || old.Stats().Reconnects == 0 {
		t.Fatalf("got %q after %d reconnections", m.Data, old.Stats().Reconnects)
	}

	resumed := time.Since(resumeStart)
	a.stop()
	elapsed := time.Since(start)
	t.Logf("%v under attack: %d attacker connections dropped (%d slowloris mid-HELLO), %d stranger log lines",
		elapsed.Round(time.Millisecond), a.dropped.Load(), a.slowCut.Load(), logs.n.Load())
	t.Logf("%d new sessions in %d attempts, the slowest in %v; resumed in %v", clients, attempts.n.Load(),
		time.Duration(slowest.Load()).Round(time.Millisecond), resumed.Round(time.Millisecond))
	if a.slowCut.Load() == 0 {
		t.Error("no slowloris connection was cut: the attack did not reach the listener")
	}
	// Ten warnings and ten debug lines a second, and a period may have begun before the attack.
	if limit := 2 * logBurst * (int64(elapsed/logPeriod) + 2); logs.n.Load() > limit {
		t.Errorf("%d log lines about strangers in %v, want at most %d", logs.n.Load(), elapsed, limit)
	}
	old.Abort()
	_ = ln.Close()
	waitDone(t, append(servers, old, oldServer)...)
	checkGoroutines(t, base)
}

// holdHandshake opens a raw connection that sends a valid HELLO and reads WELCOME, then neither
// confirms the session nor hangs up: its handshake holds a place on the listener, and is never
// evicted since it sent its first frame. confirm sends the confirming ACK, which frees the place.
func holdHandshake(t *testing.T, addr string, tlsCfg *tls.Config) (confirm func()) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	var hc net.Conn = c
	if tlsCfg != nil {
		hc = tls.Client(c, tlsCfg)
	}
	_ = hc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := hc.Write(helloFrame(t)); err != nil {
		t.Fatal(err)
	}
	var buf handshakeBuf
	if _, _, err := readHandshakeFrame(hc, &buf, frameWelcome); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := hc.Write(appendAck(nil, ackBlock{})); err != nil {
			t.Error(err)
		}
	}
}

// countDials counts a client's connection attempts; if tick is set, it also signals them while
// it has room.
type countDials struct {
	n    atomic.Int64
	tick chan struct{}
	next func(ctx context.Context, network, addr string) (net.Conn, error) // default: net.Dialer
}

func (d *countDials) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.n.Add(1)
	select {
	case d.tick <- struct{}{}: // a nil channel never takes it
	default:
	}
	if d.next != nil {
		return d.next(ctx, network, addr)
	}
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

// busyCase is a listener kept busy in one way, for the busy-answer tests.
type busyCase struct {
	name   string
	server Config
	tls    bool
	// hold makes the listener busy; free, if given, ends that.
	hold func(t *testing.T, addr string, ln *Listener, clientTLS *tls.Config) (free func())
}

var busyCases = []busyCase{
	{
		name:   "accept backlog",
		server: Config{AcceptBacklog: 1},
		hold: func(t *testing.T, addr string, ln *Listener, clientTLS *tls.Config) func() {
			c, err := Dial(testCtx(t), addr, Config{TLS: clientTLS})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Abort(); waitDone(t, c) })
			return func() {
				if _, err := ln.Accept(testCtx(t)); err != nil {
					t.Error(err)
				}
			}
		},
	},
	{
		// The backlog is full before the session that fills it is confirmed: a client that
		// got WELCOME then would have its session dropped later, for want of room.
		name:   "accept backlog reserved",
		server: Config{AcceptBacklog: 1},
		hold: func(t *testing.T, addr string, ln *Listener, clientTLS *tls.Config) func() {
			confirm := holdHandshake(t, addr, clientTLS)
			return func() {
				confirm()
				s, err := ln.Accept(testCtx(t))
				if err != nil {
					t.Error(err)
					return
				}
				t.Cleanup(func() { s.Abort(); waitDone(t, s) })
			}
		},
	},
	{
		name:   "handshakes",
		server: Config{MaxHandshakes: 1},
		hold: func(t *testing.T, addr string, ln *Listener, clientTLS *tls.Config) func() {
			return holdHandshake(t, addr, clientTLS)
		},
	},
	{
		name:   "handshakes over TLS",
		server: Config{MaxHandshakes: 1},
		tls:    true,
		hold: func(t *testing.T, addr string, ln *Listener, clientTLS *tls.Config) func() {
			return holdHandshake(t, addr, clientTLS)
		},
	},
	{
		name:   "handshakes per source",
		server: Config{MaxHandshakes: 8, MaxHandshakesPerSource: 1},
		hold: func(t *testing.T, addr string, ln *Listener, clientTLS *tls.Config) func() {
			return holdHandshake(t, addr, clientTLS)
		},
	},
}

// busyListener starts a listener for bc and makes it busy. It returns the address, the client
// config to use, and the function that frees the listener.
func busyListener(t *testing.T, bc busyCase) (addr string, client Config, free func()) {
	t.Helper()
	server := bc.server
	server.HandshakeTimeout = 5 * time.Second
	if bc.tls {
		server.TLS, client.TLS = testTLS(t)
	}
	ln, err := Listen("127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	addr = ln.Addr().String()
	free = bc.hold(t, addr, ln, client.TLS)
	client.BackoffMin, client.BackoffMax = time.Millisecond, 20*time.Millisecond
	return addr, client, free
}

// TestDialRetriesBusy: Dial retries a busy listener and gets in once there is room.
func TestDialRetriesBusy(t *testing.T) {
	for _, bc := range busyCases {
		t.Run(bc.name, func(t *testing.T) {
			base := testGoroutines()
			t.Cleanup(func() { checkGoroutines(t, base) })
			addr, cfg, free := busyListener(t, bc)
			d := countDials{tick: make(chan struct{}, 100)}
			cfg.Dial = d.dial
			done := make(chan error, 1)
			var c *Session
			go func() {
				var err error
				c, err = Dial(testCtx(t), addr, cfg)
				done <- err
			}()
			for range 3 { // refused twice, and trying again
				select {
				case <-d.tick:
				case err := <-done:
					t.Fatalf("Dial returned while the listener was busy: %v", err)
				}
			}
			free()
			if err := <-done; err != nil {
				t.Fatalf("Dial after the listener had room again: %v", err)
			}
			c.Abort()
			waitDone(t, c)
		})
	}
}

// TestDialReadsBusy: a client whose Dial gives up on a listener that stays busy gets the
// listener's REJECT busy, not a connection reset or EOF.
func TestDialReadsBusy(t *testing.T) {
	for _, bc := range busyCases {
		t.Run(bc.name, func(t *testing.T) {
			base := testGoroutines()
			t.Cleanup(func() { checkGoroutines(t, base) })
			addr, cfg, _ := busyListener(t, bc)
			var d countDials
			cfg.Dial = d.dial
			ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
			defer cancel()
			c, err := Dial(ctx, addr, cfg)
			if err == nil {
				c.Abort()
				t.Fatal("Dial succeeded on a busy listener")
			}
			var rej *RejectError
			if !errors.As(err, &rej) || rej.Code != RejectBusy {
				t.Fatalf("after %d attempts: %v, want a busy REJECT", d.n.Load(), err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%v does not say the context ended", err)
			}
			if d.n.Load() < 2 {
				t.Errorf("%d attempts: busy was not retried", d.n.Load())
			}
		})
	}
}

// TestBusyAnswerIsReadable sends a HELLO to a listener that is busy before reading anything, and
// closes nothing: the REJECT must arrive whole, then the end of the stream, and no reset, however
// the HELLO and the server's answer cross.
func TestBusyAnswerIsReadable(t *testing.T) {
	addr, _, _ := busyListener(t, busyCases[2]) // busy before the first frame is read
	hello := helloFrame(t)
	for i := range 50 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		var buf handshakeBuf
		h, body, err := readHandshakeFrame(c, &buf, frameReject)
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		if code, _, _ := parseCodeReason(h.typ, body); RejectCode(code) != RejectBusy {
			t.Fatalf("code %d", code)
		}
		if n, err := c.Read(buf[:]); n != 0 || err != io.EOF {
			t.Fatalf("after REJECT: %d bytes, %v; want EOF", n, err)
		}
		_ = c.Close()
	}
}

// sourcesListener reports each connection it accepts as coming from the address set last with
// from (the port is the real one), so that tests play several sources over 127.0.0.1.
type sourcesListener struct {
	net.Listener
	mu  sync.Mutex
	src netip.Addr
}

func (l *sourcesListener) from(ip string) {
	l.mu.Lock()
	l.src = netip.MustParseAddr(ip)
	l.mu.Unlock()
}

func (l *sourcesListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	src := l.src
	l.mu.Unlock()
	port := c.RemoteAddr().(*net.TCPAddr).Port
	return sourcedConn{c, net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, uint16(port)))}, nil
}

type sourcedConn struct {
	net.Conn
	remote net.Addr
}

func (c sourcedConn) RemoteAddr() net.Addr { return c.remote }

// SetLinger and CloseWrite are what the listener uses of a *net.TCPConn.
func (c sourcedConn) SetLinger(sec int) error { return c.Conn.(*net.TCPConn).SetLinger(sec) }
func (c sourcedConn) CloseWrite() error       { return c.Conn.(*net.TCPConn).CloseWrite() }

// TestEviction: when a source has no place left, a newcomer takes the place of its oldest
// handshake that has sent no first frame; when the listener has none left, it takes that of the
// source that holds the most. One that sent its HELLO keeps its place.
func TestEviction(t *testing.T) {
	base := testGoroutines()
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl := &sourcesListener{Listener: nl}
	ln, err := NewListener(sl, Config{MaxHandshakes: 4, MaxHandshakesPerSource: 3, HandshakeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx := testCtx(t)
	silent := func(src string) net.Conn {
		sl.from(src)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	newcomer := func(src string) {
		sl.from(src)
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := Dial(dctx, addr, Config{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c.Abort()
		waitDone(t, c, s)
	}
	const a, b, c = "192.0.2.1", "198.51.100.1", "203.0.113.1"

	b1 := silent(b) // the oldest silent handshake of all
	waitPlaces(t, ln, 1)
	sl.from(a)
	confirm := holdHandshake(t, addr, nil) // it sent HELLO
	waitPlaces(t, ln, 2)
	a1 := silent(a)
	waitPlaces(t, ln, 3)
	a2 := silent(a)
	waitPlaces(t, ln, 4) // a is full, and so is the listener
	newcomer(c)          // the heaviest source, a, gives up its oldest silent handshake
	dropped(t, a1)
	waitPlaces(t, ln, 3)
	a3 := silent(a)
	waitPlaces(t, ln, 4)
	newcomer(a) // a is full: its oldest silent handshake goes, though b's is older
	dropped(t, a2)
	for _, c := range []net.Conn{b1, a3} {
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
			t.Fatalf("a newer silent handshake was dropped: %v", err)
		}
	}
	confirm()
	s, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = ln.Close()
	waitDone(t, s)
	checkGoroutines(t, base)
}

// dropped checks that the server closed c.
func dropped(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("handshake not dropped: %v", err)
	}
}

// waitPlaces waits until n handshakes hold a place on ln.
func waitPlaces(t *testing.T, ln *Listener, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		ln.mu.Lock()
		got := ln.places
		ln.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d handshakes hold a place, want %d", got, n)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestFirstFrameDeadline: a connection that sends nothing, or dribbles its HELLO, is closed at
// FirstFrameTimeout, long before HandshakeTimeout.
func TestFirstFrameDeadline(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", Config{FirstFrameTimeout: 100 * time.Millisecond, HandshakeTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hello := helloFrame(t)
	for _, dribble := range []bool{false, true} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		deadline := time.Now().Add(10 * time.Second)
		for i := 0; ; i++ {
			wait := time.Until(deadline)
			if dribble {
				wait = 20 * time.Millisecond
				_, _ = c.Write(hello[i%(len(hello)-1) : i%(len(hello)-1)+1])
			}
			_ = c.SetReadDeadline(time.Now().Add(wait))
			_, err := c.Read(make([]byte, 1))
			if err == nil {
				t.Fatal("the server answered an unfinished HELLO")
			}
			if !isTimeout(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dribble %v: not closed after 10 s", dribble)
			}
		}
	}
}

// TestLogLimiter: a burst per period goes through; the first line after it says how many were
// held back.
func TestLogLimiter(t *testing.T) {
	var r logLimiter
	t0 := time.Unix(1000, 0)
	for i := range logBurst {
		if ok, held := r.allow(t0.Add(time.Duration(i))); !ok || held != 0 {
			t.Fatalf("line %d: %v, %d", i, ok, held)
		}
	}
	for i := range 7 {
		if ok, _ := r.allow(t0.Add(logPeriod / 2)); ok {
			t.Fatalf("line %d past the burst let through", logBurst+i)
		}
	}
	if ok, held := r.allow(t0.Add(logPeriod)); !ok || held != 7 {
		t.Fatalf("next period: %v, %d held; want true, 7", ok, held)
	}
	if ok, held := r.allow(t0.Add(logPeriod + 1)); !ok || held != 0 {
		t.Fatalf("then: %v, %d held; want true, 0", ok, held)
	}
}

// linesLike signals each log line that contains want.
type linesLike struct {
	want string
	seen chan string
}

func (w *linesLike) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.want) {
		select {
		case w.seen <- string(p):
		default:
		}
	}
	return len(p), nil
}

// TestResumeReadsBusy: a client resuming on a listener with no place left reads the busy
// answer, tries again, and resumes once there is room.
func TestResumeReadsBusy(t *testing.T) {
	base := testGoroutines()
	ln, err := Listen("127.0.0.1:0", Config{MaxHandshakes: 1, HandshakeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	ctx := testCtx(t)
	busy := &linesLike{want: "server busy", seen: make(chan string, 1)}
	conns := make(chan net.Conn, 1)
	c, err := Dial(ctx, addr, Config{
		BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond,
		Logger: zerolog.New(busy).Level(zerolog.DebugLevel),
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				select {
				case conns <- c:
				default:
				}
			}
			return c, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	confirm := holdHandshake(t, addr, nil)
	_ = (<-conns).Close()
	select {
	case line := <-busy.seen:
		t.Logf("client: %s", line)
	case <-time.After(5 * time.Second):
		t.Fatal("the resume never read a busy answer")
	}
	confirm()
	held, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, []byte("back"), AckNone); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Recv(ctx); err != nil || string(m.Data) != "back" {
		t.Fatalf("after the resume: %q, %v", m.Data, err)
	}
	c.Abort()
	_ = ln.Close()
	waitDone(t, c, s, held)
	checkGoroutines(t, base)
}

// TestConfigHandshakeDefences: the defaults of the new fields follow the fields they are bound
// by, and values past those bounds are refused by name.
func TestConfigHandshakeDefences(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.FirstFrameTimeout != DefaultFirstFrameTimeout || cfg.MaxHandshakesPerSource != DefaultMaxHandshakesPerSource {
		t.Fatalf("defaults: %v, %d", cfg.FirstFrameTimeout, cfg.MaxHandshakesPerSource)
	}
	cfg, err = Config{HandshakeTimeout: time.Second, MaxHandshakes: 10}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.FirstFrameTimeout != time.Second || cfg.MaxHandshakesPerSource != 10 {
		t.Fatalf("defaults under small bounds: %v, %d", cfg.FirstFrameTimeout, cfg.MaxHandshakesPerSource)
	}
	for field, bad := range map[string]Config{
		"FirstFrameTimeout":      {HandshakeTimeout: time.Second, FirstFrameTimeout: 2 * time.Second},
		"MaxHandshakesPerSource": {MaxHandshakes: 10, MaxHandshakesPerSource: 11},
	} {
		if _, err := bad.withDefaults(); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}
