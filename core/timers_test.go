package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ftsl-go/ftsl/internal/testkit"
)

// The tests in this file check the timers of PROTOCOL.md ("Timers") on a fake clock. Each runs in
// a testing/synctest bubble, where time moves only once every goroutine of the test is blocked on
// something inside the bubble: a dead-peer timeout of a minute takes no real time, and every
// instant is exact, so the tests assert when things happen, to the nanosecond.
//
// Connections are net.Pipe pairs made inside the bubble. A goroutine blocked on one waits on the
// bubble's channels (and a pipe's deadlines are bubble timers), so the clock can move. TCP cannot
// be used: a goroutine waiting in the network poller is not durably blocked, the clock never
// moves, and the test hangs. So Send's inline write, which exists only for a *net.TCPConn
// (inline_linux.go), is out of reach here; TestIdleAfterRequests covers it over TCP in real time.

// epoch is when every bubble's clock starts.
var epoch = time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)

// bubbleTime formats t as the fake time elapsed in the bubble, for failure messages.
func bubbleTime(t time.Time) string { return t.Sub(epoch).String() }

// timeline is an Observer that stamps what it hears with the (fake) time.
type timeline struct {
	mu     sync.Mutex
	events []timedEvent
}

type timedEvent struct {
	at    time.Time
	state State // 0: a progress report
	err   error
	p     Progress
}

func (tl *timeline) Progress(p Progress)              { tl.add(timedEvent{p: p}) }
func (tl *timeline) Failed(uint64, string)            {}
func (tl *timeline) StateChanged(st State, err error) { tl.add(timedEvent{state: st, err: err}) }

func (tl *timeline) add(e timedEvent) {
	e.at = time.Now()
	tl.mu.Lock()
	tl.events = append(tl.events, e)
	tl.mu.Unlock()
}

// entered reports when the session first entered state st, and why.
func (tl *timeline) entered(st State) (time.Time, error, bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, e := range tl.events {
		if e.state == st {
			return e.at, e.err, true
		}
	}
	return time.Time{}, nil, false
}

// acked reports when the peer first acknowledged message mid.
func (tl *timeline) acked(mid uint64) (time.Time, bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, e := range tl.events {
		if e.state == 0 && e.p.Acked >= mid {
			return e.at, true
		}
	}
	return time.Time{}, false
}

func (tl *timeline) String() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var sb strings.Builder
	for _, e := range tl.events {
		if e.state == 0 {
			fmt.Fprintf(&sb, "[%s progress %+v] ", bubbleTime(e.at), e.p)
		} else {
			fmt.Fprintf(&sb, "[%s %v %v] ", bubbleTime(e.at), e.state, e.err)
		}
	}
	return sb.String()
}

// slowConn is a connection whose every Write first takes latency of (fake) time, so that a
// heartbeat's round trip is exactly 2*latency.
type slowConn struct {
	net.Conn
	latency time.Duration
}

func (c slowConn) Write(b []byte) (int, error) {
	time.Sleep(c.latency)
	return c.Conn.Write(b)
}

// pipeNet connects clients to a listener over net.Pipe connections, each Write on them taking
// latency. Like faultnet.Proxy over TCP, it can cut every connection and refuse new ones.
type pipeNet struct {
	pl      *pipeListener
	latency time.Duration
	mu      sync.Mutex
	conns   []net.Conn
	down    bool
}

func (n *pipeNet) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	n.mu.Lock()
	if n.down {
		n.mu.Unlock()
		return nil, errServerDown
	}
	a, b := net.Pipe()
	n.conns = append(n.conns, a, b)
	n.mu.Unlock()
	select {
	case n.pl.conns <- slowConn{b, n.latency}:
		return slowConn{a, n.latency}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// cut closes every connection made so far, both ends.
func (n *pipeNet) cut() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		_ = c.Close()
	}
	n.conns = nil
}

// setDown makes the dials that follow fail at once (down) or reach the listener again.
func (n *pipeNet) setDown(down bool) {
	n.mu.Lock()
	n.down = down
	n.mu.Unlock()
}

// pipePair opens a session over a pipeNet with the given latency. Call it inside a bubble. The
// sessions are aborted when the test ends, and the bubble checks that every goroutine returned.
func pipePair(t *testing.T, latency time.Duration, clientCfg, serverCfg Config) (pair, *pipeNet) {
	t.Helper()
	ctx := testCtx(t)
	pn := &pipeNet{pl: newPipeListener(), latency: latency}
	clientCfg.Dial = pn.dial
	ln, err := NewListener(pn.pl, serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(ctx, "pipe", clientCfg)
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	s, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Abort()
		_ = ln.Close()
		<-c.Done()
		<-s.Done()
	})
	return pair{client: c, server: s, ln: ln}, pn
}

// rawEnd is the far end of a session's pipe, played by the test: it writes the bytes the test
// gives it, and records every frame the session writes with the fake time it arrived.
type rawEnd struct {
	t      *testing.T
	conn   net.Conn
	done   chan struct{} // closed when the connection closed
	mu     sync.Mutex
	frames []rawFrame
	closed time.Time // when reading failed: the session (or the test) closed the connection
}

type rawFrame struct {
	at    time.Time
	typ   frameType
	flags uint8
	body  []byte
}

func (f rawFrame) String() string {
	return fmt.Sprintf("%s@%s", f.typ, bubbleTime(f.at))
}

// acks is the ack block an ACK frame, or a DATA frame with flag ACKS, carries.
func (f rawFrame) acks() (ackBlock, bool) {
	switch {
	case f.typ == frameAck:
		return parseAckBlock(f.body), true
	case f.typ == frameData && f.flags&flagAcks != 0:
		return parseAckBlock(f.body[dataFixedLen:]), true
	}
	return ackBlock{}, false
}

func newRawEnd(t *testing.T, c net.Conn) *rawEnd {
	return &rawEnd{t: t, conn: c, done: make(chan struct{})}
}

// record reads frames until the connection closes. (A frame cut short means the test closed its
// end while the session was writing, say an ABORT as the test ends.)
func (e *rawEnd) record() {
	defer close(e.done)
	var hb [headerLen]byte
	for {
		if _, err := io.ReadFull(e.conn, hb[:]); err != nil {
			break
		}
		h, err := parseHeader(hb[:])
		if err != nil {
			e.t.Errorf("the session wrote a bad frame: %v", err)
			_ = e.conn.Close()
			return
		}
		f := rawFrame{at: time.Now(), typ: h.typ, flags: h.flags, body: make([]byte, h.length)}
		if _, err := io.ReadFull(e.conn, f.body); err != nil {
			break
		}
		e.mu.Lock()
		e.frames = append(e.frames, f)
		e.mu.Unlock()
	}
	e.mu.Lock()
	e.closed = time.Now()
	e.mu.Unlock()
}

// take returns the frames recorded since the last call.
func (e *rawEnd) take() []rawFrame {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.frames
	e.frames = nil
	return f
}

// closedAt reports when the connection closed, if it did.
func (e *rawEnd) closedAt() (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed, !e.closed.IsZero()
}

func (e *rawEnd) write(b []byte) {
	e.t.Helper()
	if _, err := e.conn.Write(b); err != nil {
		e.t.Fatalf("raw write: %v", err)
	}
}

func (e *rawEnd) close() {
	_ = e.conn.Close()
	<-e.done
}

// rawServer answers a client's handshakes by hand: every connection the client dials is a pipe
// whose far end the test plays. It records when each dial came, and can refuse them all.
type rawServer struct {
	t     *testing.T
	offer hello        // the parameters WELCOME advertises
	ends  chan *rawEnd // each connection, once WELCOME is written
	mu    sync.Mutex
	dials []time.Time
	down  bool
}

const rawSessionID = 0x5e55

var rawToken = [tokenLen]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

var errServerDown = errors.New("test: server down")

// defaultOffer is what a side with the default Config advertises.
func defaultOffer() hello {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		panic(err)
	}
	return cfg.offer()
}

func newRawServer(t *testing.T, offer hello) *rawServer {
	return &rawServer{t: t, offer: offer, ends: make(chan *rawEnd, 16)}
}

// setDown makes the dials that follow fail at once (down) or reach the server again.
func (rs *rawServer) setDown(down bool) {
	rs.mu.Lock()
	rs.down = down
	rs.mu.Unlock()
}

func (rs *rawServer) dialTimes() []time.Time {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]time.Time(nil), rs.dials...)
}

// dial is the client's Config.Dial.
func (rs *rawServer) dial(context.Context, string, string) (net.Conn, error) {
	rs.mu.Lock()
	rs.dials = append(rs.dials, time.Now())
	down := rs.down
	rs.mu.Unlock()
	if down {
		return nil, errServerDown
	}
	a, b := net.Pipe()
	e := newRawEnd(rs.t, b)
	go func() {
		var buf handshakeBuf
		h, body, err := readHandshakeFrame(b, &buf, frameHello, frameResume)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				rs.t.Errorf("raw server: handshake: %v", err) // not a client that gave up
			}
			_ = b.Close()
			close(e.done)
			return
		}
		w := welcome{version: 1, sid: rawSessionID, token: rawToken, acks: ackBlock{credit: uint64(rs.offer.window)}}
		w.maxMessage, w.window, w.deadPeerMs, w.sendBuffer = rs.offer.maxMessage, rs.offer.window, rs.offer.deadPeerMs, rs.offer.sendBuffer
		if h.typ == frameResume {
			r, err := parseResume(body)
			if err != nil || r.sid != rawSessionID || r.token != rawToken {
				rs.t.Errorf("raw server: bad RESUME %+v: %v", r, err)
			}
			w.token = [tokenLen]byte{}
		}
		header{typ: frameWelcome, length: welcomeLen}.put(buf[:])
		w.put(buf[headerLen:])
		if _, err := b.Write(buf[:headerLen+welcomeLen]); err != nil {
			close(e.done) // the client gave up on this connection
			return
		}
		rs.ends <- e
		e.record()
	}()
	return a, nil
}

// dialRaw opens a client session with cfg against a raw server, and returns the session and the
// server's end of its connection.
func dialRaw(t *testing.T, rs *rawServer, cfg Config) (*Session, *rawEnd) {
	t.Helper()
	cfg.Dial = rs.dial
	c, err := Dial(testCtx(t), "raw", cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := <-rs.ends
	t.Cleanup(func() {
		c.Abort() // first, or closing e would make it reconnect
		<-c.Done()
		e.close()
	})
	return c, e
}

// helloFrameOf is a whole HELLO frame offering h.
func helloFrameOf(h hello) []byte {
	b := make([]byte, headerLen+helloLen)
	header{typ: frameHello, length: helloLen}.put(b)
	h.put(b[headerLen:])
	return b
}

// resumeFrame is a whole RESUME frame.
func resumeFrame(r resume) []byte {
	b := make([]byte, headerLen+resumeLen)
	header{typ: frameResume, length: resumeLen}.put(b)
	r.put(b[headerLen:])
	return b
}

// rawConnect connects a client played by the test to the listener on pl: it writes frame (HELLO
// or RESUME), reads the server's answer, and from then on records what the server writes.
func rawConnect(t *testing.T, pl *pipeListener, frame []byte) (*rawEnd, header, []byte) {
	t.Helper()
	a, b := net.Pipe()
	pl.conns <- b
	if _, err := a.Write(frame); err != nil {
		t.Fatal(err)
	}
	var buf handshakeBuf
	h, body, err := readHandshakeFrame(a, &buf, frameWelcome, frameReject)
	if err != nil {
		t.Fatal(err)
	}
	e := newRawEnd(t, a)
	go e.record()
	t.Cleanup(e.close)
	return e, h, bytes.Clone(body)
}

// rawSession opens a server session with a client played by the test, which offers h. It returns
// the session, the client's end and the WELCOME it got.
func rawSession(t *testing.T, ln *Listener, pl *pipeListener, h hello) (*Session, *rawEnd, welcome) {
	t.Helper()
	e, hdr, body := rawConnect(t, pl, helloFrameOf(h))
	if hdr.typ != frameWelcome {
		t.Fatalf("server answered HELLO with %v", hdr.typ)
	}
	w, err := parseWelcome(body)
	if err != nil {
		t.Fatal(err)
	}
	e.write(appendAck(nil, ackBlock{})) // confirms the session
	s, err := ln.Accept(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return s, e, w
}

// pipeServer starts a listener on pipes, closed when the test ends.
func pipeServer(t *testing.T, cfg Config) (*Listener, *pipeListener) {
	t.Helper()
	pl := newPipeListener()
	ln, err := NewListener(pl, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln, pl
}

// sleepUntil sleeps until the fake clock reads at, then lets everything due then happen.
func sleepUntil(at time.Time) {
	time.Sleep(time.Until(at))
	synctest.Wait()
}

// wantFrames checks that frames are exactly want: types and arrival times.
func wantFrames(t *testing.T, what string, frames []rawFrame, want ...rawFrame) {
	t.Helper()
	ok := len(frames) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = frames[i].typ == want[i].typ && frames[i].at.Equal(want[i].at)
	}
	if !ok {
		t.Fatalf("%s: frames %v, want %v", what, frames, want)
	}
}

func pingFrame(v uint64) []byte { return appendSimple(nil, framePing, v) }

// ---------------------------------------------------------------------------------------------
// Delayed acks

// TestAckDelay: a received message's ack goes out alone exactly AckDelay after it arrived when
// the receiver sends nothing meanwhile, and rides on the receiver's data as soon as it sends some.
// The sender's Observer sees the acknowledgement at that instant.
func TestAckDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 5 * time.Millisecond
		p, _ := pipePair(t, 0, Config{}, Config{AckDelay: delay})
		ctx := testCtx(t)
		tl := &timeline{}
		p.client.Observe(tl)

		time.Sleep(time.Second)
		t1 := time.Now()
		if _, err := p.client.Send(ctx, []byte("one"), AckNone); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if at, ok := tl.acked(1); !ok || !at.Equal(t1.Add(delay)) {
			t.Fatalf("message 1 sent at %s, acknowledged at %s (%v), want %s: %v", bubbleTime(t1), bubbleTime(at), ok,
				bubbleTime(t1.Add(delay)), tl)
		}

		t2 := time.Now()
		if _, err := p.client.Send(ctx, []byte("two"), AckNone); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay / 2)
		if _, err := p.server.Send(ctx, []byte("reply"), AckNone); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if at, ok := tl.acked(2); !ok || !at.Equal(t2.Add(delay/2)) {
			t.Fatalf("message 2 sent at %s, acknowledged at %s (%v), want %s with the reply: %v", bubbleTime(t2), bubbleTime(at), ok,
				bubbleTime(t2.Add(delay/2)), tl)
		}
	})
}

// processedAt reports when the peer first reported message mid processed.
func (tl *timeline) processedAt(mid uint64) (time.Time, bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, e := range tl.events {
		if e.state == 0 && e.p.Processed >= mid {
			return e.at, true
		}
	}
	return time.Time{}, false
}

// TestPromptAck: a message sent on a quiet link (nothing else unacknowledged: a request) is
// acknowledged the moment its level is reached, not AckDelay later, so a request-reply exchange
// costs a round trip and no timer; messages sent while others are in flight (a stream) keep the
// delayed ack, and their acks are batched.
func TestPromptAck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 5 * time.Millisecond
		p, _ := pipePair(t, 0, Config{}, Config{AckDelay: delay, MaxInFlight: 3})
		ctx := testCtx(t)
		tl := &timeline{}
		p.client.Observe(tl)
		time.Sleep(time.Second)

		for mid := uint64(1); mid <= 3; mid++ {
			if _, err := p.client.Send(ctx, []byte("req"), AckProcessed); err != nil {
				t.Fatal(err)
			}
			m, err := p.server.Recv(ctx)
			if err != nil || m.ID != mid {
				t.Fatalf("Recv: %+v %v", m, err)
			}
			time.Sleep(time.Millisecond) // the application's work
			settled := time.Now()
			if err := p.server.Settle(m.ID, nil); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			if at, ok := tl.processedAt(mid); !ok || !at.Equal(settled) {
				t.Fatalf("request %d settled at %s, reported processed at %s (%v): %v", mid, bubbleTime(settled), bubbleTime(at), ok, tl)
			}
		}

		// A stream: the first message goes on a quiet link, the others behind it.
		for range 3 {
			if _, err := p.client.Send(ctx, []byte("stream"), AckProcessed); err != nil {
				t.Fatal(err)
			}
		}
		var ms []Message
		for range 3 {
			m, err := p.server.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ms = append(ms, m)
		}
		time.Sleep(time.Second)
		settled := time.Now()
		if err := p.server.Settle(ms[0].ID, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if at, ok := tl.processedAt(4); !ok || !at.Equal(settled) {
			t.Fatalf("the stream's first message settled at %s, reported processed at %s (%v): %v", bubbleTime(settled), bubbleTime(at), ok, tl)
		}
		settled = time.Now()
		for _, m := range ms[1:] {
			if err := p.server.Settle(m.ID, nil); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)
		if at, ok := tl.processedAt(6); !ok || !at.Equal(settled.Add(delay)) {
			t.Fatalf("the stream's others settled at %s, reported processed at %s (%v), want AckDelay later: %v", bubbleTime(settled), bubbleTime(at), ok, tl)
		}
	})
}

// TestAckFrames checks the delayed-ack rule frame by frame, on a client whose server the test
// plays: a standalone ACK exactly AckDelay after the data; none when data goes out first, which
// carries the ack block instead; and an ACK at once when a quarter of what the peer can have in
// flight arrived.
func TestAckFrames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 5 * time.Millisecond
		offer := defaultOffer()
		offer.sendBuffer = 4096 // so 1024 bytes of cost make an ack urgent
		rs := newRawServer(t, offer)
		c, e := dialRaw(t, rs, Config{AckDelay: delay})
		ctx := testCtx(t)
		t0 := time.Now()
		synctest.Wait()
		wantFrames(t, "after the handshake", e.take(), rawFrame{typ: frameAck, at: t0}) // the client confirms at once
		in := &wireStream{}

		time.Sleep(time.Second)
		t1 := time.Now()
		e.write(in.data(1, wireFlags(AckNone, true), "hello").b)
		in.b = nil
		time.Sleep(time.Second)
		f := e.take()
		wantFrames(t, "alone", f, rawFrame{typ: frameAck, at: t1.Add(delay)})
		if a, _ := f[0].acks(); a.rPID != 1 {
			t.Fatalf("ACK %+v, want rPID 1", a)
		}

		t2 := time.Now()
		e.write(in.data(2, wireFlags(AckNone, true), "again").b)
		in.b = nil
		time.Sleep(delay / 2)
		if _, err := c.Send(ctx, []byte("reply"), AckNone); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		f = e.take()
		wantFrames(t, "riding on data", f, rawFrame{typ: frameData, at: t2.Add(delay / 2)})
		if a, ok := f[0].acks(); !ok || a.rPID != 2 {
			t.Fatalf("DATA flags 0x%02x, ack block %+v: want the ack block with rPID 2", f[0].flags, a)
		}

		t3 := time.Now()
		e.write(in.data(3, wireFlags(AckNone, true), strings.Repeat("x", 1024-dataHdrLen)).b)
		in.b = nil
		time.Sleep(time.Second)
		f = e.take()
		wantFrames(t, "a quarter of the peer's send buffer", f, rawFrame{typ: frameAck, at: t3})
		if a, _ := f[0].acks(); a.rPID != 3 {
			t.Fatalf("ACK %+v, want rPID 3", a)
		}
	})
}

// ---------------------------------------------------------------------------------------------
// Heartbeats

// TestHeartbeatInterval: a side that writes nothing for its heartbeat interval sends PING, counted
// from its last write of any kind.
func TestHeartbeatInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const hb = time.Second
		offer := defaultOffer()
		offer.deadPeerMs = 60000 // no cap from the peer
		rs := newRawServer(t, offer)
		c, e := dialRaw(t, rs, Config{HeartbeatInterval: hb})
		t0 := time.Now()
		sleepUntil(t0.Add(3*hb + hb/2))
		if _, err := c.Send(testCtx(t), []byte("data"), AckNone); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t0.Add(5 * hb))
		wantFrames(t, "idle client", e.take(),
			rawFrame{typ: frameAck, at: t0},
			rawFrame{typ: framePing, at: t0.Add(hb)},
			rawFrame{typ: framePing, at: t0.Add(2 * hb)},
			rawFrame{typ: framePing, at: t0.Add(3 * hb)},
			rawFrame{typ: frameData, at: t0.Add(3*hb + hb/2)},
			rawFrame{typ: framePing, at: t0.Add(4*hb + hb/2)})
	})
}

// TestHeartbeatCappedByPeer: whatever its own HeartbeatInterval, a side pings at least every third
// of the dead-peer timeout its peer advertised, on the client and on the server.
func TestHeartbeatCappedByPeer(t *testing.T) {
	const peerDead = 900 * time.Millisecond
	own := Config{HeartbeatInterval: 10 * time.Second, DeadPeerTimeout: 30 * time.Second}
	t.Run("client", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			offer := defaultOffer()
			offer.deadPeerMs = uint32(peerDead / time.Millisecond)
			_, e := dialRaw(t, newRawServer(t, offer), own)
			t0 := time.Now()
			sleepUntil(t0.Add(peerDead + peerDead/6))
			wantFrames(t, "client", e.take(),
				rawFrame{typ: frameAck, at: t0},
				rawFrame{typ: framePing, at: t0.Add(peerDead / 3)},
				rawFrame{typ: framePing, at: t0.Add(2 * peerDead / 3)},
				rawFrame{typ: framePing, at: t0.Add(peerDead)})
		})
	})
	t.Run("server", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ln, pl := pipeServer(t, own)
			offer := defaultOffer()
			offer.deadPeerMs = uint32(peerDead / time.Millisecond)
			_, e, _ := rawSession(t, ln, pl, offer)
			t0 := time.Now()
			sleepUntil(t0.Add(peerDead + peerDead/6))
			wantFrames(t, "server", e.take(),
				rawFrame{typ: framePing, at: t0.Add(peerDead / 3)},
				rawFrame{typ: framePing, at: t0.Add(2 * peerDead / 3)},
				rawFrame{typ: framePing, at: t0.Add(peerDead)})
		})
	})
}

// TestHeartbeatFloor: a peer advertising a dead-peer timeout of 10 ms (the protocol's least)
// cannot make a server ping it every 3 ms: it gets HeartbeatFloor's pace.
func TestHeartbeatFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln, pl := pipeServer(t, Config{})
		offer := defaultOffer()
		offer.deadPeerMs = 10
		_, e, _ := rawSession(t, ln, pl, offer)
		t0 := time.Now()
		sleepUntil(t0.Add(350 * time.Millisecond))
		wantFrames(t, "server", e.take(),
			rawFrame{typ: framePing, at: t0.Add(DefaultHeartbeatFloor)},
			rawFrame{typ: framePing, at: t0.Add(2 * DefaultHeartbeatFloor)},
			rawFrame{typ: framePing, at: t0.Add(3 * DefaultHeartbeatFloor)})
	})
}

// TestPeerNotReading: a client that keeps pinging but never reads would pin the server's sent
// buffer forever; the server drops the connection once written frames have waited
// DeadPeerTimeout for an ack, as it does for a silent peer.
func TestPeerNotReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const dead = time.Second
		ln, pl := pipeServer(t, Config{DeadPeerTimeout: dead})
		a, b := net.Pipe()
		pl.conns <- b
		offer := defaultOffer()
		offer.deadPeerMs = uint32(dead / time.Millisecond)
		if _, err := a.Write(helloFrameOf(offer)); err != nil {
			t.Fatal(err)
		}
		var buf handshakeBuf
		if _, _, err := readHandshakeFrame(a, &buf, frameWelcome); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Write(appendAck(nil, ackBlock{credit: uint64(offer.window)})); err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		if _, err := s.TrySend(make([]byte, 1000), AckNone); err != nil {
			t.Fatal(err)
		}
		// From now on the client only pings, every 100 ms, and reads nothing.
		stop := make(chan struct{})
		go func() {
			for i := uint64(1); ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := a.Write(pingFrame(i)); err != nil {
					return
				}
			}
		}()
		sleepUntil(t0.Add(dead - 150*time.Millisecond))
		if st := s.State(); st != StateConnected {
			t.Fatalf("state %v before DeadPeerTimeout", st)
		}
		sleepUntil(t0.Add(dead + 150*time.Millisecond))
		if st := s.State(); st != StateDisconnected {
			t.Fatalf("state %v after the peer acknowledged nothing for DeadPeerTimeout", st)
		}
		close(stop)
		_ = a.Close()
	})
}

// TestHeartbeatRTTBothEnds: on an idle link where the client's heartbeats come first, the server,
// kept busy answering them, never goes a heartbeat interval without writing; it pings with its
// PONGs, so both ends measure the round trip (PROTOCOL.md, PING).
func TestHeartbeatRTTBothEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = 3 * time.Millisecond
		p, _ := pipePair(t, latency, Config{HeartbeatInterval: time.Second}, Config{HeartbeatInterval: 3 * time.Second})
		time.Sleep(10 * time.Second)
		if c, s := p.client.Stats(), p.server.Stats(); c.RTT != 2*latency || s.RTT != 2*latency {
			t.Fatalf("round trips: client %v, server %v, want %v", c.RTT, s.RTT, 2*latency)
		}
	})
}

// TestIdleAfterRequestsOnPipes: after request-reply traffic, an idle session keeps its heartbeats
// going, so neither side declares the connection dead, and both measure the round trip. (The
// writer's path; TestIdleAfterRequests checks Send's inline writes over TCP.)
func TestIdleAfterRequestsOnPipes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = time.Millisecond
		cfg := Config{DeadPeerTimeout: 300 * time.Millisecond}
		p, _ := pipePair(t, latency, cfg, cfg)
		ctx := testCtx(t)
		tl := &timeline{}
		p.client.Observe(tl)
		p.server.Observe(tl)
		pingPong(t, ctx, p, 300)
		time.Sleep(8 * cfg.DeadPeerTimeout)
		if _, _, ok := tl.entered(StateDisconnected); ok {
			t.Fatalf("a side lost the connection while idle: %v", tl)
		}
		if c, s := p.client.Stats(), p.server.Stats(); c.RTT != 2*latency || s.RTT != 2*latency {
			t.Fatalf("heartbeat round trips: client %v, server %v, want %v", c.RTT, s.RTT, 2*latency)
		}
	})
}

// ---------------------------------------------------------------------------------------------
// Dead peer

// TestDeadPeer: a peer that stops writing is declared dead between 3/4 of DeadPeerTimeout and
// DeadPeerTimeout after the last byte it wrote, whatever came before: the read deadline moves at
// most every quarter of the timeout (PROTOCOL.md). Each case says when the peer writes, counted
// from the end of the handshake, and when the session must give up on it.
func TestDeadPeer(t *testing.T) {
	const d = time.Second
	for _, tc := range []struct {
		name   string
		writes []time.Duration
		dead   time.Duration
	}{
		{"silent", nil, d},
		{"early byte", []time.Duration{d / 5}, d},                                       // deadline not moved
		{"late byte", []time.Duration{d / 2}, d/2 + d},                                  // moved
		{"steady then silent", []time.Duration{d / 5, 2 * d / 5, 3 * d / 5}, 2*d/5 + d}, // moved at 2d/5 only
		{"last byte just short of a move", []time.Duration{d / 2, d/2 + d/4 - 1}, d/2 + d},
	} {
		for _, side := range []string{"client", "server"} {
			t.Run(tc.name+"/"+side, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					cfg := Config{DeadPeerTimeout: d}
					var s *Session
					var e *rawEnd
					if side == "client" {
						rs := newRawServer(t, defaultOffer())
						s, e = dialRaw(t, rs, cfg)
						rs.setDown(true) // no reconnection
					} else {
						ln, pl := pipeServer(t, cfg)
						s, e, _ = rawSession(t, ln, pl, defaultOffer())
					}
					tl := &timeline{}
					s.Observe(tl)
					t0 := time.Now()
					last := t0
					for _, w := range tc.writes {
						sleepUntil(t0.Add(w))
						e.write(pingFrame(uint64(w)))
						last = time.Now()
					}
					time.Sleep(2 * d)
					at, err, ok := tl.entered(StateDisconnected)
					if !ok || !errors.Is(err, errDeadPeer) {
						t.Fatalf("not declared dead: %v", tl)
					}
					if silent := at.Sub(last); silent < 3*d/4 || silent > d {
						t.Errorf("declared dead %v after the last byte, want within [%v, %v]", silent, 3*d/4, d)
					}
					if !at.Equal(t0.Add(tc.dead)) {
						t.Errorf("declared dead at %s, want %s", bubbleTime(at), bubbleTime(t0.Add(tc.dead)))
					}
					if closed, ok := e.closedAt(); !ok || !closed.Equal(at) {
						t.Errorf("connection closed at %s (%v), want %s", bubbleTime(closed), ok, bubbleTime(at))
					}
				})
			})
		}
	}
}

// TestSlowReaderKeepsSessionAlive: a receiving application that stops reading must not starve
// the session of heartbeats and acks (credit keeps data from blocking them).
func TestSlowReaderKeepsSessionAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{MaxMessageSize: 1000, SendBufferBytes: 8 << 10, ReceiveBufferBytes: 8 << 10,
			DeadPeerTimeout: 300 * time.Millisecond}
		p, _ := pipePair(t, 0, cfg, cfg) // no latency: Wait below lets every write arrive
		ctx := testCtx(t)
		tl := &timeline{}
		p.client.Observe(tl)
		p.server.Observe(tl)
		sent := 0
		for ; sent < 20; sent++ {
			if _, err := p.client.TrySend(payload(2, uint64(sent+1), 1000), AckNone); err != nil {
				if !errors.Is(err, ErrBufferFull) {
					t.Fatal(err)
				}
				break
			}
			synctest.Wait()
		}
		// The server's window (8 KiB) and the client's sent buffer (8 KiB) hold 8 each.
		if sent != 16 {
			t.Fatalf("%d messages of 1000 bytes fit, want 16", sent)
		}
		time.Sleep(8 * cfg.DeadPeerTimeout) // the reader stays slow throughout
		if _, _, ok := tl.entered(StateDisconnected); ok {
			t.Fatalf("a side lost the connection while the reader was slow: %v", tl)
		}
		if st := p.client.Stats(); st.Reconnects != 0 || p.client.State() != StateConnected {
			t.Fatalf("client reconnected %d times, state %v", st.Reconnects, p.client.State())
		}
		for i := 1; i <= sent; i++ {
			m, err := p.server.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkPayload(m.Data, 2, uint64(i), 1000); err != nil {
				t.Fatal(err)
			}
			_ = p.server.Settle(m.ID, nil)
		}
	})
}

// ---------------------------------------------------------------------------------------------
// Resume window

// TestResumeWindowServer: a server keeps a session without a connection for exactly
// ResumeWindow; a resume before then keeps it, and the window starts again when that connection
// dies.
func TestResumeWindowServer(t *testing.T) {
	const window = 10 * time.Second
	t.Run("expires", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			p, pn := pipePair(t, 0, Config{BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond},
				Config{ResumeWindow: window})
			ctx := testCtx(t)
			srec, crec := &timeline{}, &timeline{}
			p.server.Observe(srec)
			p.client.Observe(crec)
			time.Sleep(time.Second)
			pn.setDown(true)
			pn.cut()
			t1 := time.Now()
			sleepUntil(t1.Add(window - 1))
			if at, _, ok := srec.entered(StateDisconnected); !ok || !at.Equal(t1) {
				t.Fatalf("connection cut at %s: %v", bubbleTime(t1), srec)
			}
			if st, n := p.server.State(), p.ln.Sessions(); st != StateDisconnected || n != 1 {
				t.Fatalf("1ns before the window ends: state %v, listener holds %d sessions", st, n)
			}
			sleepUntil(t1.Add(window))
			if at, err, ok := srec.entered(StateLost); !ok || !at.Equal(t1.Add(window)) || !errors.Is(err, ErrSessionLost) {
				t.Fatalf("cut at %s, want lost at %s: %v", bubbleTime(t1), bubbleTime(t1.Add(window)), srec)
			}
			if n := p.ln.Sessions(); n != 0 {
				t.Fatalf("listener still holds %d sessions", n)
			}
			if _, err := p.server.Recv(ctx); !errors.Is(err, ErrSessionLost) {
				t.Fatalf("server Recv: %v", err)
			}
			// The client gets through after the window: its resume is refused, and it is lost.
			pn.setDown(false)
			time.Sleep(time.Second)
			if _, _, ok := crec.entered(StateLost); !ok {
				t.Fatalf("client not lost: %v", crec)
			}
			_, err := p.client.Send(ctx, []byte("x"), AckNone)
			var rej *RejectError
			if !errors.Is(err, ErrSessionLost) || !errors.As(err, &rej) || rej.Code != RejectUnknownSession {
				t.Fatalf("client Send after loss: %v, want ErrSessionLost carrying the server's refusal", err)
			}
		})
	})
	t.Run("resumed just in time", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ln, pl := pipeServer(t, Config{ResumeWindow: window})
			offer := defaultOffer()
			s, e, w := rawSession(t, ln, pl, offer)
			tl := &timeline{}
			s.Observe(tl)
			e.close()
			t1 := time.Now()
			sleepUntil(t1.Add(window - 1))
			e2, h, _ := rawConnect(t, pl, resumeFrame(resume{hello: offer, sid: w.sid, token: w.token,
				acks: ackBlock{credit: uint64(offer.window)}}))
			if h.typ != frameWelcome {
				t.Fatalf("RESUME 1ns before the window ends answered %v", h.typ)
			}
			sleepUntil(t1.Add(2 * window))
			if _, _, ok := tl.entered(StateLost); ok || s.State() != StateConnected {
				t.Fatalf("state %v after a resume in time: %v", s.State(), tl)
			}
			e2.close()
			t2 := time.Now()
			sleepUntil(t2.Add(window - 1))
			if st := s.State(); st != StateDisconnected {
				t.Fatalf("state %v 1ns before the new window ends", st)
			}
			sleepUntil(t2.Add(window))
			if at, _, ok := tl.entered(StateLost); !ok || !at.Equal(t2.Add(window)) {
				t.Fatalf("second connection closed at %s, want lost at %s: %v", bubbleTime(t2), bubbleTime(t2.Add(window)), tl)
			}
		})
	})
}

// TestResumeWindowClient: a client whose reconnection attempts all fail gives up once
// ResumeWindow has passed since its connection died, and not before its last attempt in it.
func TestResumeWindowClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{ResumeWindow: time.Second, BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond}
		rs := newRawServer(t, defaultOffer())
		c, e := dialRaw(t, rs, cfg)
		tl := &timeline{}
		c.Observe(tl)
		rs.setDown(true)
		time.Sleep(time.Second)
		e.close()
		t1 := time.Now()
		time.Sleep(2 * cfg.ResumeWindow)
		lost, err, ok := tl.entered(StateLost)
		if !ok || !errors.Is(err, ErrSessionLost) {
			t.Fatalf("client not lost: %v", tl)
		}
		dials := rs.dialTimes()[1:]
		checkBackoff(t, t1, dials, cfg.BackoffMin, cfg.BackoffMax)
		last := dials[len(dials)-1]
		if last.After(t1.Add(cfg.ResumeWindow)) || !lost.After(t1.Add(cfg.ResumeWindow)) {
			t.Fatalf("connection died at %s; last attempt at %s, lost at %s: want the attempts within %v and the loss after",
				bubbleTime(t1), bubbleTime(last), bubbleTime(lost), cfg.ResumeWindow)
		}
		// It gives up when the wait after the last attempt ends.
		if wait := lost.Sub(last); wait < cfg.BackoffMax/2 || wait > cfg.BackoffMax {
			t.Fatalf("lost %v after the last attempt, want a backoff in [%v, %v]", wait, cfg.BackoffMax/2, cfg.BackoffMax)
		}
		if _, err := c.Recv(testCtx(t)); !errors.Is(err, ErrSessionLost) {
			t.Fatalf("Recv after giving up: %v", err)
		}
		if _, err := c.Send(testCtx(t), []byte("x"), AckNone); !errors.Is(err, ErrSessionLost) {
			t.Fatalf("Send after giving up: %v", err)
		}
	})
}

// ---------------------------------------------------------------------------------------------
// Backoff

// checkBackoff checks the client's reconnection attempts after a connection died at died: the
// first at once, then each after a wait in [b/2, b], b doubling from min up to max.
func checkBackoff(t *testing.T, died time.Time, dials []time.Time, lo, hi time.Duration) {
	t.Helper()
	if len(dials) == 0 || !dials[0].Equal(died) {
		t.Fatalf("connection died at %s; attempts at %v, want the first at once", bubbleTime(died), dials)
	}
	b := lo
	for k := 1; k < len(dials); k++ {
		if wait := dials[k].Sub(dials[k-1]); wait < b/2 || wait > b {
			t.Fatalf("attempt %d came %v after the one before, want within [%v, %v]", k+1, wait, b/2, b)
		}
		b = min(2*b, hi)
	}
}

// TestReconnectBackoff counts the client's reconnection attempts through its Config.Dial: the
// first comes at once, the next ones after jittered waits doubling from BackoffMin to
// BackoffMax, and a successful reconnection starts the sequence over.
func TestReconnectBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{BackoffMin: 10 * time.Millisecond, BackoffMax: 80 * time.Millisecond}
		rs := newRawServer(t, defaultOffer())
		c, e := dialRaw(t, rs, cfg)
		rs.setDown(true)
		time.Sleep(time.Second)
		e.close()
		t1 := time.Now()
		time.Sleep(time.Second)
		dials := rs.dialTimes()[1:]
		checkBackoff(t, t1, dials, cfg.BackoffMin, cfg.BackoffMax)
		if last := dials[len(dials)-1]; time.Since(last) > cfg.BackoffMax {
			t.Fatalf("last of %d attempts at %s, now %s: the client stopped trying", len(dials), bubbleTime(last), bubbleTime(time.Now()))
		}

		rs.setDown(false)
		e2 := <-rs.ends
		t.Cleanup(e2.close)
		back := rs.dialTimes()
		synctest.Wait()
		if st := c.Stats(); c.State() != StateConnected || st.Reconnects != 1 {
			t.Fatalf("after the server came back: state %v, %d reconnects", c.State(), st.Reconnects)
		}
		rs.setDown(true)
		time.Sleep(time.Second)
		e2.close()
		t2 := time.Now()
		time.Sleep(100 * time.Millisecond)
		checkBackoff(t, t2, rs.dialTimes()[len(back):], cfg.BackoffMin, cfg.BackoffMax)
	})
}

// movingResolver is a WatchingResolver whose test says when the name moved.
type movingResolver struct {
	mu      sync.Mutex
	changed chan struct{}
}

func newMovingResolver() *movingResolver { return &movingResolver{changed: make(chan struct{})} }

func (r *movingResolver) Resolve(_ context.Context, name string) (string, error) { return name, nil }

func (r *movingResolver) Changed(string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// move wakes whoever waits on Changed, and arms a new channel for the next move.
func (r *movingResolver) move() {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.changed)
	r.changed = make(chan struct{})
}

// TestReconnectOnMove: a client waiting out a long backoff tries again the moment its
// WatchingResolver says the name moved, and its backoff starts over.
func TestReconnectOnMove(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res := newMovingResolver()
		cfg := Config{BackoffMin: time.Second, BackoffMax: 30 * time.Second, Resolver: res}
		rs := newRawServer(t, defaultOffer())
		c, e := dialRaw(t, rs, cfg)
		rs.setDown(true)
		time.Sleep(time.Second)
		e.close()
		time.Sleep(10 * time.Second) // attempts at 0, ~1, ~3, ~7 s: the next is seconds away
		before := len(rs.dialTimes())
		rs.setDown(false)
		moved := time.Now()
		res.move()
		e2 := <-rs.ends
		t.Cleanup(func() {
			c.Abort() // first, or closing e2 would make it dial again
			<-c.Done()
			e2.close()
		})
		dials := rs.dialTimes()
		if len(dials) != before+1 || !dials[before].Equal(moved) {
			t.Fatalf("moved at %s; attempts after it at %v, want one at once", bubbleTime(moved), dials[before:])
		}
		synctest.Wait()
		if c.State() != StateConnected {
			t.Fatalf("state %v after the move", c.State())
		}
	})
}

// ---------------------------------------------------------------------------------------------
// Idle buffers

// TestBuffersShrinkWhenIdle: a burst grows the sent and received buffers; once the application
// has caught up and the link has been idle for a heartbeat interval, the memory goes back, not
// before, and the session carries on as before.
func TestBuffersShrinkWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const hb = 200 * time.Millisecond
		cfg := Config{HeartbeatInterval: hb, MaxMessageSize: 64 << 10}
		scfg := cfg
		scfg.ReceiveBufferBytes = 256 << 10 // so that most of the burst waits in the client's buffer
		// The client's heartbeats come first and the server answers them. (With equal intervals
		// the two race at each heartbeat, and the client's sent buffer shrinks only when its own
		// PING goes first: TestSendBufferShrinksWhenPeerPingsFirst.)
		scfg.HeartbeatInterval = 5 * hb
		p, _ := pipePair(t, 0, cfg, scfg)
		ctx := testCtx(t)
		const n, size = 32, 64 << 10
		msg := make([]byte, size)
		for i := 0; i < n; i++ {
			testkit.Fill(msg, 5, uint64(i))
			if _, err := p.client.Send(ctx, msg, AckNone); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		// The server reads nothing yet: it holds what its window allows, the client the rest.
		if c := p.client.Stats().BufferMemory; c < n*size-scfg.ReceiveBufferBytes {
			t.Fatalf("client's buffers hold %d bytes during the burst", c)
		}
		if s := p.server.Stats(); s.RecvBuffered < 2*size || s.BufferMemory < s.RecvBuffered {
			t.Fatalf("server holds %d bytes in %d of buffers during the burst", s.RecvBuffered, s.BufferMemory)
		}
		want := make([]byte, size)
		for i := 0; i < n; i++ {
			m, err := p.server.Recv(ctx)
			testkit.Fill(want, 5, uint64(i))
			if err != nil || !bytes.Equal(m.Data, want) {
				t.Fatalf("message %d: %v", i, err)
			}
			_ = p.server.Settle(m.ID, nil)
		}
		got := make(chan Message, 1)
		go func() {
			m, err := p.server.Recv(ctx)
			if err == nil {
				got <- Message{ID: m.ID, Data: bytes.Clone(m.Data)}
			}
			close(got)
		}()
		synctest.Wait()
		caughtUp := time.Now()
		const small = 16 << 10
		sleepUntil(caughtUp.Add(hb - 1))
		if c, s := p.client.Stats().BufferMemory, p.server.Stats().BufferMemory; c <= small || s <= small {
			t.Fatalf("buffers shrank before a heartbeat interval of idleness: client %d, server %d bytes", c, s)
		}
		sleepUntil(caughtUp.Add(hb))
		if c, s := p.client.Stats().BufferMemory, p.server.Stats().BufferMemory; c > small || s > small {
			t.Fatalf("buffers still hold client %d, server %d bytes after a heartbeat interval of idleness", c, s)
		}
		if _, err := p.client.Send(ctx, []byte("after"), AckNone); err != nil {
			t.Fatal(err)
		}
		if m, ok := <-got; !ok || m.ID != n+1 || string(m.Data) != "after" {
			t.Fatalf("after shrinking: %d %q", m.ID, m.Data)
		}
		if _, err := p.server.Send(ctx, []byte("back"), AckNone); err != nil {
			t.Fatal(err)
		}
		if m, err := p.client.Recv(ctx); err != nil || string(m.Data) != "back" {
			t.Fatalf("reply: %v", err)
		}
	})
}

// TestSendBufferShrinksWhenPeerPingsFirst: a side whose peer's heartbeats always come first (the
// peer's interval is the shorter) answers each with PONG, and PING (PROTOCOL.md, PING); its
// emptied sent buffer must still give its memory back after an idle heartbeat interval.
//
// It fails on the code as of this test: buildLocked drops the sent buffer only in its own
// idle-heartbeat branch, which it never reaches while it answers the peer's PINGs, since the
// answer is a write that postpones its own heartbeat. With equal intervals the two sides race
// at each heartbeat, and the buffer shrinks or not depending on which PING is written first.
func TestSendBufferShrinksWhenPeerPingsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const hb = time.Second
		p, _ := pipePair(t, 0, Config{HeartbeatInterval: hb}, Config{HeartbeatInterval: hb / 4})
		ctx := testCtx(t)
		const n, size = 16, 64 << 10
		for i := 0; i < n; i++ {
			if _, err := p.client.Send(ctx, make([]byte, size), AckNone); err != nil {
				t.Fatal(err)
			}
			m, err := p.server.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = p.server.Settle(m.ID, nil)
		}
		synctest.Wait()
		if c := p.client.Stats().BufferMemory; c < size {
			t.Fatalf("client's buffers hold %d bytes after the burst: the test proves nothing", c)
		}
		time.Sleep(10 * hb)
		if st := p.client.Stats(); st.SendBuffered != 0 || st.BufferMemory > 16<<10 {
			t.Fatalf("client idle for %v, everything acknowledged (%d bytes buffered): its buffers still hold %d bytes; RTT %v",
				10*hb, st.SendBuffered, st.BufferMemory, st.RTT)
		}
	})
}

// sharedResolver answers as a resolver shared by many sessions does (naming.Resolver): Changed
// is closed if the name moved since the last Resolve, whoever made it.
type sharedResolver struct {
	mu       sync.Mutex
	version  int
	resolved int // the version the last Resolve saw
	changed  chan struct{}
}

func (r *sharedResolver) Resolve(_ context.Context, name string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resolved = r.version
	return name, nil
}

func (r *sharedResolver) Changed(string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resolved != r.version {
		c := make(chan struct{})
		close(c)
		return c
	}
	return r.changed
}

func (r *sharedResolver) move() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.version++
	close(r.changed)
	r.changed = make(chan struct{})
}

// TestReconnectOnMoveShared: two sessions share a resolver, and the name moves while one of them
// is in the middle of an attempt at the old place. The other resolves the new place first; the
// first, once its attempt failed, must still try again at once, not wait out its backoff (it
// used to ask Changed after its attempt, when the move was no longer news to the resolver).
func TestReconnectOnMoveShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res := &sharedResolver{changed: make(chan struct{})}
		cfg := Config{BackoffMin: time.Second, BackoffMax: 30 * time.Second, Resolver: res}
		rs := newRawServer(t, defaultOffer())
		c1, e1 := dialRaw(t, rs, cfg)
		// c2's attempts after the first wait at hold, then fail as at the old place, until
		// released; then they reach the server.
		hold := make(chan struct{})
		var dials atomic.Int32
		cfg2 := cfg
		cfg2.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) == 2 {
				<-hold
				return nil, errServerDown
			}
			return rs.dial(ctx, network, addr)
		}
		c2, err := Dial(testCtx(t), "raw", cfg2)
		if err != nil {
			t.Fatal(err)
		}
		e2 := <-rs.ends
		t.Cleanup(func() { c2.Abort(); <-c2.Done(); e2.close() })
		rs.setDown(true)
		e1.close()
		e2.close()
		time.Sleep(10 * time.Second) // c1 waits seconds of backoff; c2's attempt hangs at hold
		rs.setDown(false)
		res.move()
		e1b := <-rs.ends // c1 resolved the new place
		t.Cleanup(func() { c1.Abort(); <-c1.Done(); e1b.close() })
		failed := time.Now()
		close(hold) // c2's attempt at the old place fails now
		e2b := <-rs.ends
		t.Cleanup(func() { c2.Abort(); <-c2.Done(); e2b.close() })
		if d := time.Since(failed); d != 0 {
			t.Fatalf("the second session tried the new place %v after its attempt failed, want at once", d)
		}
		synctest.Wait()
		if c2.State() != StateConnected {
			t.Fatalf("second session: %v", c2.State())
		}
	})
}

// TestMovingWaitsForWatch: a client told that its server is moving, whose resolver watches the
// name, does not poll the old place: it waits for the resolver's news (or its longest backoff),
// and tries the new place the moment the name moves.
func TestMovingWaitsForWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		res := newMovingResolver()
		pl := newPipeListener()
		var dials atomic.Int32
		cfg := Config{Resolver: res, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return pl.dial(ctx, network, addr)
		}}
		ln, err := NewListener(pl, Config{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := Dial(ctx, "pipe", cfg)
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
			<-c.Done()
			<-s.Done()
		})
		before := dials.Load()
		if err := ln.Pause(ctx); err != nil { // the client's connection is cut; it is told "moving"
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		// One attempt right after the cut, answered RejectMoving; then the client waits (the
		// default backoff would have made six more in this second).
		if n := dials.Load() - before; n != 1 {
			t.Fatalf("%d attempts in the second after the cut, want 1", n)
		}
		if err := ln.Continue(); err != nil {
			t.Fatal(err)
		}
		moved := time.Now()
		res.move()
		synctest.Wait()
		if c.State() != StateConnected || time.Since(moved) != 0 {
			t.Fatalf("after the move: %v, %v later", c.State(), time.Since(moved))
		}
	})
}
