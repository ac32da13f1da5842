package core

import (
	"encoding/binary"
	"errors"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/faultnet"
)

// proxied is a session whose connections go through a fault-injecting proxy.
type proxied struct {
	pair
	proxy *faultnet.Proxy
}

// newProxied opens a session over TCP through a faultnet.Proxy.
func newProxied(t *testing.T, clientCfg, serverCfg Config) proxied {
	t.Helper()
	ctx := testCtx(t)
	base := testGoroutines()
	ln, err := Listen("127.0.0.1:0", serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	px, err := faultnet.NewProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(ctx, px.Addr(), clientCfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Abort()
		_ = ln.Close()
		_ = px.Close()
		waitDone(t, c, s)
		checkGoroutines(t, base)
	})
	return proxied{pair: pair{client: c, server: s, ln: ln}, proxy: px}
}

// fastResume is a client config that reconnects at once, for tests that break connections often.
var fastResume = Config{BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond}

func TestResumeAfterKills(t *testing.T) {
	p := newProxied(t, fastResume, Config{})
	stop := make(chan struct{})
	var kills atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := mrand.New(mrand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(r.IntN(20)) * time.Millisecond):
			}
			kills.Add(int64(p.proxy.KillAll()))
		}
	}()
	exchange(t, p.client, p.server, 3000, 21, func(r *mrand.Rand) int { return r.IntN(20000) })
	close(stop)
	wg.Wait()
	if kills.Load() < 5 {
		t.Fatalf("only %d connections killed: the test proved nothing", kills.Load())
	}
	t.Logf("%d kills, client %+v", kills.Load(), p.client.Stats())
	if p.client.Stats().Reconnects == 0 {
		t.Fatal("no reconnection")
	}
}

// TestResumeMidFrame cuts the client's connection after every possible small byte count, so the
// cut lands inside the handshake, inside frame headers and inside payloads.
func TestResumeMidFrame(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var budget atomic.Int64
	budget.Store(1)
	d := faultnet.NewDialer(func() faultnet.Plan {
		// Grow the budget by a prime so cuts sweep over every offset modulo frame sizes.
		b := budget.Add(37)
		return faultnet.Plan{ReadBudget: b, WriteBudget: b * 3}
	})
	cfg := fastResume
	cfg.Dial = d.DialContext
	ctx := testCtx(t)
	var c *Session
	for c == nil { // the first connections are cut before their handshake completes
		c, err = Dial(ctx, ln.Addr().String(), cfg)
		if err != nil && d.Dials() > 100 {
			t.Fatal(err)
		}
	}
	s, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.Abort()
		waitDone(t, c, s)
	}()
	exchange(t, c, s, 500, 31, func(r *mrand.Rand) int { return r.IntN(3000) })
	if n := d.Dials(); n < 20 {
		t.Fatalf("only %d connections: the test proved nothing", n)
	} else {
		t.Logf("%d connections, %d resent frames", n, c.Stats().FramesResent)
	}
}

// TestSilentFailure stalls the connection (bytes stop, nothing closes) during traffic. The session
// must notice within DeadPeerTimeout, reconnect, and lose nothing.
func TestSilentFailure(t *testing.T) {
	const dead = 300 * time.Millisecond
	cfg := fastResume
	cfg.DeadPeerTimeout = dead
	p := newProxied(t, cfg, Config{DeadPeerTimeout: dead})
	ctx := testCtx(t)
	rec := newRecorder()
	p.client.Observe(rec)
	done := make(chan struct{})
	go func() {
		defer close(done)
		exchange(t, p.client, p.server, 2000, 41, func(r *mrand.Rand) int { return r.IntN(5000) })
	}()
	// Let traffic flow, then stall every connection.
	if err := rec.await(ctx, func(r *recorder) bool { return r.progress.Acked > 0 }); err != nil {
		t.Fatal(err)
	}
	stalled := time.Now()
	if n := p.proxy.StallAll(); n != 1 {
		t.Fatalf("stalled %d connections", n)
	}
	err := rec.await(ctx, func(r *recorder) bool {
		for _, st := range r.states {
			if st == StateDisconnected {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	noticed := time.Since(stalled)
	<-done
	t.Logf("noticed after %v (DeadPeerTimeout %v)", noticed, dead)
	// TCP alone would wait minutes; allow generous scheduling slack on a loaded machine.
	if noticed > 4*dead {
		t.Errorf("dead connection noticed after %v", noticed)
	}
	if st := p.client.Stats(); st.Reconnects == 0 {
		t.Fatal("no reconnection after the stall")
	}
}

// TestServerUnawareResume: the client notices a dead connection long before the server does; the
// resume must take over from the connection the server still holds.
func TestServerUnawareResume(t *testing.T) {
	d := faultnet.NewDialer(nil)
	cfg := fastResume
	cfg.Dial = d.DialContext
	cfg.DeadPeerTimeout = 200 * time.Millisecond
	p := newPair(t, "tcp", cfg, Config{DeadPeerTimeout: time.Minute})
	ctx := testCtx(t)
	if _, err := p.client.Send(ctx, []byte("one"), AckNone); err != nil {
		t.Fatal(err)
	}
	if m, err := p.server.Recv(ctx); err != nil || string(m.Data) != "one" {
		t.Fatal(m, err)
	} else {
		_ = p.server.Settle(m.ID, nil)
	}
	d.LastConn().Stall() // silent for the client; the server's socket stays open
	if _, err := p.client.Send(ctx, []byte("two"), AckNone); err != nil {
		t.Fatal(err)
	}
	m, err := p.server.Recv(ctx)
	if err != nil || string(m.Data) != "two" {
		t.Fatal(m, err)
	}
	if d.Dials() < 2 || p.server.Stats().Reconnects < 1 {
		t.Fatalf("dials %d, server reconnects %d", d.Dials(), p.server.Stats().Reconnects)
	}
}

// rawResume dials addr and sends a RESUME for session sid with token, returning the server's answer.
func rawResume(t *testing.T, addr string, sid uint64, token [tokenLen]byte) (frameType, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg, _ := Config{}.withDefaults()
	var buf handshakeBuf
	header{typ: frameResume, length: resumeLen}.put(buf[:])
	resume{hello: cfg.offer(), sid: sid, token: token, acks: ackBlock{credit: 1 << 20}}.put(buf[headerLen:])
	if _, err := c.Write(buf[:headerLen+resumeLen]); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, body, err := readHandshakeFrame(c, &buf, frameWelcome, frameReject)
	if err != nil {
		t.Fatal(err)
	}
	return h.typ, append([]byte(nil), body...)
}

func TestForgedResume(t *testing.T) {
	p := newPair(t, "tcp", Config{}, Config{})
	ctx := testCtx(t)
	addr := p.ln.Addr().String()
	wrong := p.client.token
	wrong[0] ^= 1
	for name, c := range map[string]struct {
		sid   uint64
		token [tokenLen]byte
	}{
		"wrong token":     {p.client.ID(), wrong},
		"zero token":      {p.client.ID(), [tokenLen]byte{}},
		"unknown session": {p.client.ID() + 1, p.client.token},
	} {
		typ, body := rawResume(t, addr, c.sid, c.token)
		if typ != frameReject {
			t.Fatalf("%s: server answered %v", name, typ)
		}
		code, _, err := parseCodeReason(typ, body)
		if err != nil || RejectCode(code) != RejectUnknownSession {
			t.Fatalf("%s: code %d err %v", name, code, err)
		}
	}
	// The real session never noticed.
	if _, err := p.client.Send(ctx, []byte("still here"), AckNone); err != nil {
		t.Fatal(err)
	}
	if m, err := p.server.Recv(ctx); err != nil || string(m.Data) != "still here" {
		t.Fatal(m, err)
	}
	if st := p.server.Stats(); st.Reconnects != 0 {
		t.Fatalf("server reconnects %d", st.Reconnects)
	}
}

// TestCloseWhileDisconnected: Close waits for the connection to come back, then completes.
func TestCloseWhileDisconnected(t *testing.T) {
	p := newProxied(t, fastResume, Config{})
	ctx := testCtx(t)
	rec := newRecorder()
	p.client.Observe(rec)
	p.proxy.Refuse(true)
	p.proxy.KillAll()
	if err := rec.await(ctx, func(r *recorder) bool { return len(r.states) > 0 }); err != nil {
		t.Fatal(err)
	}
	if _, err := p.client.Send(ctx, []byte("queued"), AckNone); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- p.client.Close(ctx) }()
	p.proxy.Refuse(false)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if m, err := p.server.Recv(ctx); err != nil || string(m.Data) != "queued" {
		t.Fatal(m, err)
	}
}

// TestFailuresSurviveCrashes: FAIL reports and pMID cross many connection kills; every failure
// is reported exactly once and before the processed mark passes it.
func TestFailuresSurviveCrashes(t *testing.T) {
	cfg := fastResume
	cfg.AckDelay = time.Millisecond
	p := newProxied(t, cfg, Config{AckDelay: time.Millisecond})
	ctx := testCtx(t)
	rec := newRecorder()
	p.client.Observe(rec)
	const n = 3000
	go func() {
		for i := 0; i < n; i++ {
			if _, err := p.client.Send(ctx, []byte{byte(i)}, AckProcessed); err != nil {
				return
			}
		}
	}()
	kills := 0
	for i := uint64(1); i <= n; i++ {
		if i%20 == 0 {
			kills += p.proxy.KillAll() // cuts land between a FAIL, its ack and the pMID passing it
		}
		m, err := p.server.Recv(ctx)
		if err != nil || m.ID != i {
			t.Fatalf("recv %d: %d %v", i, m.ID, err)
		}
		var fail error
		if i%3 == 0 {
			fail = errors.New("three")
		}
		if err := p.server.Settle(i, fail); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.server.Send(ctx, nil, AckNone); err != nil { // flush the last acks
		t.Fatal(err)
	}
	if err := rec.await(ctx, func(r *recorder) bool { return r.progress.Processed == n }); err != nil {
		t.Fatal(err)
	}
	if kills < 10 {
		t.Fatalf("only %d kills", kills)
	}
	rec.mu.Lock()
	nf := len(rec.failed)
	rec.mu.Unlock()
	if nf != n/3 {
		t.Fatalf("%d failures reported, want %d", nf, n/3)
	}
	if a := rec.anomalies(); len(a) > 0 {
		t.Fatal(a)
	}
	t.Logf("%d kills", kills)
}

func TestListenerRejectsGarbage(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", Config{HandshakeTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	var hello [headerLen + helloLen]byte
	header{typ: frameHello, length: helloLen}.put(hello[:])
	okOffer, _ := Config{}.withDefaults()
	okOffer.offer().put(hello[headerLen:])
	badVersion := hello
	badVersion[headerLen+4], badVersion[headerLen+5] = 9, 9
	tinyWindow := hello
	binary.BigEndian.PutUint32(tinyWindow[headerLen+12:], 100)
	huge := [8]byte{byte(frameHello), 0, 0, 0, 0xff, 0xff, 0xff, 0xff}
	data := [8]byte{byte(frameData), 1, 0, 0, 0, 0, 0, 16}
	for name, tc := range map[string]struct {
		in   []byte
		code RejectCode // 0: the server just closes
	}{
		"http":             {[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), RejectMalformed},
		"oversize length":  {huge[:], RejectMalformed},
		"data first":       {data[:], RejectMalformed},
		"bad version":      {badVersion[:], RejectVersion},
		"tiny window":      {tinyWindow[:], RejectMalformed},
		"short then close": {hello[:10], 0},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.in); err != nil {
				t.Fatal(err)
			}
			if tc.code == 0 {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var buf handshakeBuf
			h, body, err := readHandshakeFrame(c, &buf, frameReject)
			if tc.code == 0 {
				if err == nil {
					t.Fatalf("got %v", h.typ)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			code, reason, _ := parseCodeReason(h.typ, body)
			if RejectCode(code) != tc.code {
				t.Fatalf("code %d (%s), want %d", code, reason, tc.code)
			}
			// EOF, or a reset since the server did not read all we sent: either way, closed.
			_, err = c.Read(buf[:1])
			if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
				t.Fatalf("connection left open after REJECT: %v", err)
			}
		})
	}
	// The listener still works.
	ctx := testCtx(t)
	c, err := Dial(ctx, addr, Config{})
	if err != nil {
		t.Fatal(err)
	}
	c.Abort()
	waitDone(t, c)
	if n := ln.Sessions(); n > 1 {
		t.Fatalf("garbage created sessions: %d", n)
	}
}

// TestHandshakeFlood opens many connections that never speak. The listener holds at most
// MaxHandshakes of them, evicting the oldest silent ones as newer ones come and closing the rest
// at their first-frame deadline, never sends them a byte, and serves a real client afterwards.
// (TestHostileHandshakes has real clients get through during such a flood.)
func TestHandshakeFlood(t *testing.T) {
	base := testGoroutines()
	const maxHS = 8
	ln, err := Listen("127.0.0.1:0", Config{MaxHandshakes: maxHS, HandshakeTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	var conns []net.Conn
	for i := 0; i < 100; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Every one of them is closed by the server: evicted by newer ones, or at the deadline.
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var b [1]byte
		if _, err := c.Read(b[:]); err == nil {
			t.Fatal("server sent bytes to a silent connection")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("server never closed a silent connection")
		}
		_ = c.Close()
	}
	ctx := testCtx(t)
	c, err := Dial(ctx, addr, Config{})
	if err != nil {
		t.Fatal(err)
	}
	c.Abort()
	waitDone(t, c)
	_ = ln.Close()
	checkGoroutines(t, base)
}

// TestRequestReplyKills: request-reply traffic (quiet links, so Send writes inline, and large
// requests leave part of the write to the writer) while the proxy resets the connection often.
// A write still under way on a dead connection must neither block the next one nor move the
// resume point.
func TestRequestReplyKills(t *testing.T) {
	p := newProxied(t, fastResume, Config{})
	ctx := testCtx(t)
	go func() {
		for {
			m, err := p.server.Recv(ctx)
			if err != nil {
				return
			}
			_, err = p.server.Send(ctx, m.Data, AckNone)
			_ = p.server.Settle(m.ID, nil)
			if err != nil {
				return
			}
		}
	}()
	r := mrand.New(mrand.NewPCG(5, 6))
	kills := 0
	for i := uint64(1); i <= 2000; i++ {
		n := r.IntN(2000)
		if i%50 == 0 {
			n = 300<<10 + r.IntN(500<<10) // too big for one non-blocking write
		}
		if r.IntN(8) == 0 {
			kills += p.proxy.KillAll()
		}
		if _, err := p.client.Send(ctx, payload(8, i, n), AckNone); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			kills += p.proxy.KillAll() // while the writer finishes what Send could not write
		}
		m, err := p.client.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.ID != i {
			t.Fatalf("reply %d has ID %d", i, m.ID)
		}
		if err := checkPayload(m.Data, 8, i, n); err != nil {
			t.Fatal(err)
		}
		_ = p.client.Settle(m.ID, nil)
	}
	if kills < 50 {
		t.Fatalf("only %d kills", kills)
	}
	t.Logf("%d kills", kills)
}

// TestStaleResumeRefused: a RESUME that reports less than the client already acknowledged was
// sent before the session moved on (a connection attempt the client gave up on, which the server
// reads late). The server must refuse it without touching the live session, not take it and end
// the session as beyond repair.
func TestStaleResumeRefused(t *testing.T) {
	p := newPair(t, "tcp", Config{}, Config{AckDelay: time.Millisecond})
	ctx := testCtx(t)
	rec := newRecorder()
	p.server.Observe(rec)
	for i := 0; i < 10; i++ {
		if _, err := p.server.Send(ctx, []byte("to the client"), AckDelivered); err != nil {
			t.Fatal(err)
		}
		m, err := p.client.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = p.client.Settle(m.ID, nil)
	}
	if err := rec.await(ctx, func(r *recorder) bool { return r.progress.Acked == 10 }); err != nil {
		t.Fatal(err)
	}
	typ, body := rawResume(t, p.ln.Addr().String(), p.client.ID(), p.client.token) // reports nothing received
	if typ != frameReject {
		t.Fatalf("server answered a stale RESUME with %v", typ)
	}
	if code, _, _ := parseCodeReason(typ, body); RejectCode(code) != RejectBusy {
		t.Errorf("stale RESUME refused with code %d, want %d (busy: a client reading it retries)", code, RejectBusy)
	}
	if _, err := p.client.Send(ctx, []byte("still here"), AckNone); err != nil {
		t.Fatal(err)
	}
	if m, err := p.server.Recv(ctx); err != nil || string(m.Data) != "still here" {
		t.Fatal(m, err)
	}
	if st := p.server.Stats(); st.Reconnects != 0 || p.server.State() != StateConnected {
		t.Fatalf("server reconnects %d, state %v", st.Reconnects, p.server.State())
	}
}
