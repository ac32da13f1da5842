package core

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/rs/zerolog"
)

// handshakeBuf is big enough for any handshake frame, header included.
type handshakeBuf [headerLen + 4 + maxReasonLen]byte

// readHandshakeFrame reads exactly one frame of one of the allowed types: no byte past it, so
// whatever the peer sends next is left for the reader.
func readHandshakeFrame(c net.Conn, buf *handshakeBuf, allowed ...frameType) (header, []byte, error) {
	if _, err := io.ReadFull(c, buf[:headerLen]); err != nil {
		return header{}, nil, err
	}
	h, err := parseHeader(buf[:headerLen])
	if err != nil {
		return h, nil, err
	}
	ok := false
	for _, t := range allowed {
		ok = ok || h.typ == t
	}
	if !ok {
		return h, nil, protocolError("%v frame during the handshake", h.typ)
	}
	body := buf[headerLen : headerLen+int(h.length)]
	if _, err := io.ReadFull(c, body); err != nil {
		return h, nil, err
	}
	return h, body, nil
}

func writeAll(c net.Conn, b []byte) error {
	_, err := c.Write(b)
	return err
}

// connect dials the server (asking the Resolver where it is), runs TLS if configured, and sends
// HELLO, or RESUME if the session already has an ID. It returns the connection and the server's
// WELCOME, with no deadline left on the connection.
func (s *Session) connect(ctx context.Context, resuming bool) (net.Conn, welcome, error) {
	hctx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	addr, err := s.cfg.Resolver.Resolve(hctx, s.name)
	if err != nil {
		return nil, welcome{}, inContext(fmt.Sprintf("resolving %q", s.name), err)
	}
	c, err := s.cfg.Dial(hctx, "tcp", addr)
	if err != nil {
		return nil, welcome{}, err
	}
	hc, w, err := s.clientHandshake(hctx, c, addr, resuming)
	if err != nil {
		_ = c.Close()
		return nil, welcome{}, err
	}
	return hc, w, nil
}

// clientHandshake runs TLS if configured and HELLO or RESUME on c; it returns the connection to
// use from then on (c, or TLS over it) and the server's WELCOME.
func (s *Session) clientHandshake(ctx context.Context, c net.Conn, addr string, resuming bool) (net.Conn, welcome, error) {
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) }) // cancel unblocks I/O
	defer stop()
	if s.cfg.TLS != nil {
		cfg := s.cfg.TLS
		if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
			cfg = cfg.Clone()
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			if plainBusy(err) {
				return nil, welcome{}, &RejectError{Code: RejectBusy, Reason: "refused before TLS"}
			}
			return nil, welcome{}, inContext("TLS handshake", err)
		}
		c = tc
	}
	var buf handshakeBuf
	var frame []byte
	if resuming {
		s.mu.Lock()
		s.failWritten = 0 // the new link has seen no FAIL yet, so pMID must wait for them
		ab := s.ackLocked()
		s.sentAck, s.sentAckCost = ab, s.recvCost
		r := resume{hello: s.cfg.offer(), sid: s.id, token: s.token, acks: ab}
		s.mu.Unlock()
		header{typ: frameResume, length: resumeLen}.put(buf[:])
		r.put(buf[headerLen:])
		frame = buf[:headerLen+resumeLen]
	} else {
		header{typ: frameHello, length: helloLen}.put(buf[:])
		s.cfg.offer().put(buf[headerLen:])
		frame = buf[:headerLen+helloLen]
	}
	if err := writeAll(c, frame); err != nil {
		return nil, welcome{}, err
	}
	h, body, err := readHandshakeFrame(c, &buf, frameWelcome, frameReject)
	if err != nil {
		return nil, welcome{}, err
	}
	if h.typ == frameReject {
		code, reason, err := parseCodeReason(h.typ, body)
		if err != nil {
			return nil, welcome{}, err
		}
		return nil, welcome{}, &RejectError{Code: RejectCode(code), Reason: reason}
	}
	w, err := parseWelcome(body)
	if err != nil {
		return nil, welcome{}, err
	}
	if w.version < minVersion || w.version > maxVersion {
		return nil, welcome{}, protocolError("WELCOME: version %d, offered [%d, %d]", w.version, minVersion, maxVersion)
	}
	if resuming && (w.sid != s.id || w.token != [tokenLen]byte{}) {
		return nil, welcome{}, protocolError("WELCOME: resumed session %d, asked for %d", w.sid, s.id)
	}
	_ = c.SetDeadline(time.Time{})
	return c, w, nil
}

// resyncLocked reconciles the send side with what the peer says it received, after a
// connection broke: acknowledged frames are dropped, the rest is queued again marked as resent.
func (s *Session) resyncLocked(peer ackBlock) error {
	if peer.rPID+1 < s.sHeadPID || peer.rPID >= s.nextPID {
		return ftslerr.Errorf("%w: the peer received packets up to %d; this side kept %d to %d",
			ErrSessionLost, peer.rPID, s.sHeadPID, s.nextPID-1)
	}
	// The old link's writer has returned (an inline write still returning on it writes to a dead
	// connection): every frame the peer has can be freed, and the oldest frame kept after that is
	// the first the peer lacks.
	s.sentOff = s.highOff
	if err := s.takeAcksLocked(peer); err != nil {
		return err
	}
	// Send again from there. Those frames may be freed only once the new link's Write returns:
	// a peer can acknowledge a frame while the Write sending it is still under way, and the race
	// detector counts a Write's bytes as read only when it returns.
	s.writeOff, s.sentOff = s.sHead, s.sHead
	s.markResentLocked(s.highOff)
	return nil
}

// startLinkLocked makes c the session's connection and starts its reader, and its writer unless
// the caller (the client's supervisor) runs the writer itself.
func (s *Session) startLinkLocked(c net.Conn, ownWriter bool) *link {
	s.gen++
	l := newLink(c, s.gen)
	s.link = l
	s.remote, s.local = c.RemoteAddr(), c.LocalAddr()
	if tc, ok := c.(*tls.Conn); ok {
		st := tc.ConnectionState()
		s.tlsState = &st
	}
	s.rd.restart()
	s.refreshViewLocked()
	s.writerIdle = false
	s.writingOn, s.pending, s.pendingOn = nil, nil, nil // what was under way belongs to the old link
	s.lastWrite = time.Now()
	s.ackWait = s.lastWrite
	s.closing = s.closing.newConnection()
	s.pongPending = false
	s.ackDue, s.ackUrgent = time.Time{}, false
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	if s.state == StateDisconnected {
		s.setStateLocked(StateConnected, nil)
	}
	s.running++
	go s.readLoop(l)
	if ownWriter {
		s.running++
		go func() {
			defer s.goroutineExited()
			s.writeLoop(l)
			l.exited(func() { s.linkGone(l) })
		}()
	}
	return l
}

// plainBusy reports whether a TLS client's handshake failed on a busy REJECT that the server sent
// in the clear, before TLS (answerBusy): the first "record" it got starts with a REJECT header.
// The TLS layer may have read the rest, so the code is not read: the server sends nothing else in
// the clear. Taking it on trust is safe: busy only makes the client try again, as a forged reset
// would.
func plainBusy(err error) bool {
	var rh tls.RecordHeaderError
	if !errors.As(err, &rh) {
		return false
	}
	var want [headerLen]byte
	header{typ: frameReject}.put(want[:])
	return rh.RecordHeader == [5]byte(want[:5]) // type, flags, reserved, the top byte of a short length
}

// serverHandshake runs the server's side of a handshake on a fresh connection. It returns once the
// connection carries a session, or was refused.
func (ln *Listener) serverHandshake(hs *handshake) {
	c := hs.c
	// The first frame (TLS before it) gets a shorter deadline than the whole handshake: a client
	// sends it at once, and a connection that does not is holding a place for nothing.
	first := hs.start.Add(ln.cfg.FirstFrameTimeout)
	_ = c.SetDeadline(first)
	if ln.cfg.TLS != nil {
		tc := tls.Server(c, ln.cfg.TLS)
		ctx, cancel := context.WithDeadline(ln.ctx, first)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			if e := ln.stranger(zerolog.DebugLevel); e != nil {
				e.Err(err).Str("remote", c.RemoteAddr().String()).Msg("TLS handshake failed")
			}
			_ = c.Close()
			return
		}
		c = tc
	}
	var buf handshakeBuf
	h, body, err := readHandshakeFrame(c, &buf, frameHello, frameResume)
	if err != nil {
		if e := ln.stranger(zerolog.DebugLevel); e != nil {
			e.Err(err).Str("remote", c.RemoteAddr().String()).Msg("handshake failed")
		}
		if errors.Is(err, ErrProtocol) {
			refuse(c, RejectMalformed, err.Error())
		}
		_ = c.Close()
		return
	}
	if !ln.firstFrame(hs) {
		return // evicted just before: its connection is closed
	}
	deadline := hs.start.Add(ln.cfg.HandshakeTimeout)
	_ = c.SetDeadline(deadline)
	pausing, code, why := ln.enterHandshake(h.typ == frameHello)
	if code != 0 {
		refuse(c, code, why)
		_ = c.Close()
		return
	}
	defer ln.leaveHandshake()
	if h.typ == frameHello {
		ln.openSession(c, body, deadline, pausing)
	} else {
		ln.resumeSession(c, body, deadline)
	}
}

// refuse sends REJECT, best effort: the connection is closed next anyway.
func refuse(c net.Conn, code RejectCode, reason string) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_ = writeAll(c, appendCodeReason(nil, frameReject, uint16(code), reason))
}

// negotiate picks the protocol version for a client offering h.
func negotiate(h hello) (uint8, bool) {
	v := min(uint8(maxVersion), h.vmax)
	return v, v >= max(uint8(minVersion), h.vmin)
}

// openSession makes a new session on c, which presented HELLO body. pausing is closed when the
// listener begins a pause.
func (ln *Listener) openSession(c net.Conn, body []byte, deadline time.Time, pausing <-chan struct{}) {
	h, err := parseHello(body)
	if err != nil {
		refuse(c, RejectMalformed, err.Error())
		_ = c.Close()
		return
	}
	v, ok := negotiate(h)
	if !ok {
		refuse(c, RejectVersion, fmt.Sprintf("this server speaks versions [%d, %d]", minVersion, maxVersion))
		_ = c.Close()
		return
	}
	// A place in the accept queue is taken now, before WELCOME, so a client never gets a session
	// that is dropped later for want of room.
	if !ln.reserveBacklog() {
		refuse(c, RejectBusy, "too many sessions waiting to be accepted")
		_ = c.Close()
		return
	}
	queued := false
	defer func() {
		if !queued {
			ln.releaseBacklog()
		}
	}()
	s := newSession(&ln.cfg, false)
	s.lis = ln
	s.token = newToken()
	s.setPeer(v, h)
	s.peerAck.credit = uint64(h.window)
	if code, why := ln.register(s); code != 0 {
		refuse(c, code, why)
		_ = c.Close()
		return
	}
	w := welcome{version: v, sid: s.id, token: s.token, acks: ackBlock{credit: s.peer.window}}
	off := ln.cfg.offer()
	w.maxMessage, w.window, w.deadPeerMs, w.sendBuffer = off.maxMessage, off.window, off.deadPeerMs, off.sendBuffer
	s.sentAck = w.acks
	var buf handshakeBuf
	header{typ: frameWelcome, length: welcomeLen}.put(buf[:])
	w.put(buf[headerLen:])
	if err := writeAll(c, buf[:headerLen+welcomeLen]); err != nil {
		_ = c.Close()
		s.mu.Lock()
		s.endLocked(StateLost, ftslerr.Errorf("%w: WELCOME not sent: %v", ErrSessionLost, err), endDrop, "")
		s.unlockNotify()
		return
	}
	_ = c.SetDeadline(time.Time{})
	confirmed := make(chan struct{})
	s.mu.Lock()
	s.unconfirmed = confirmed
	s.startLinkLocked(c, true)
	s.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	// A client whose connection broke before WELCOME reached it has no session: drop it now
	// rather than hand the application a session that will only expire.
	select {
	case <-confirmed:
	case <-s.ended:
		return
	case <-t.C:
		s.abort(abortListener, "the client did not confirm the session in time")
		return
	case <-ln.ctx.Done():
		s.abort(abortListener, "listener closed")
		return
	case <-pausing:
		// The pause cuts the connection, and a pause must not wait a handshake's time. If the
		// client got WELCOME it resumes, which proves it has the session: Accept gets the
		// session then (resumeOn), here or where it moves. It keeps its place in the queue.
		s.mu.Lock()
		ended, waiting := s.state.ended(), s.unconfirmed != nil
		if !ended && waiting {
			s.acceptOnResume = true
			queued = true
		}
		s.mu.Unlock()
		if ended || waiting {
			return
		}
	}
	s.log.Debug().Uint64("session", s.id).Msg("new session")
	ln.accept <- s // never blocks: the place was reserved
	queued = true
}

func (ln *Listener) resumeSession(c net.Conn, body []byte, deadline time.Time) {
	r, err := parseResume(body)
	if err != nil {
		refuse(c, RejectMalformed, err.Error())
		_ = c.Close()
		return
	}
	s := ln.lookup(r.sid)
	if s == nil || subtle.ConstantTimeCompare(s.token[:], r.token[:]) != 1 {
		// One answer for unknown, expired and forged: a guess learns nothing.
		refuse(c, RejectUnknownSession, "no such session (unknown, expired, or wrong token)")
		_ = c.Close()
		return
	}
	if err := s.resumeOn(c, r, deadline); err != nil {
		s.log.Debug().Uint64("session", s.id).Err(err).Msg("resume refused")
		_ = c.Close()
	}
}

// resumeOn moves the server session s to connection c, which presented RESUME r.
func (s *Session) resumeOn(c net.Conn, r resume, deadline time.Time) error {
	// One resume at a time per session; a second one waits its turn, within its deadline.
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case s.resumeSem <- struct{}{}:
	case <-t.C:
		refuse(c, RejectBusy, "another resume of this session is under way")
		return errors.New("resume: timed out waiting for another resume")
	}
	defer func() { <-s.resumeSem }()

	s.mu.Lock()
	if s.state.ended() {
		s.mu.Unlock()
		refuse(c, RejectUnknownSession, "the session has ended")
		return ErrUnknownSession
	}
	if s.staleLocked(r.acks) {
		s.mu.Unlock()
		refuse(c, RejectBusy, "stale resume: the session has moved on")
		return errors.New("resume: stale RESUME")
	}
	old := s.link
	if old != nil {
		old.fail(errLinkReplaced) // the client saw it die before we did
	}
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	s.resumeBusy = true // no expiry while we work; rearmExpiry undoes it if we fail
	s.mu.Unlock()
	if old != nil {
		select {
		case <-old.done:
		case <-t.C:
			refuse(c, RejectBusy, "the previous connection is still closing")
			s.rearmExpiry()
			return errors.New("resume: previous connection did not close in time")
		}
	}

	s.mu.Lock()
	if s.state.ended() {
		s.mu.Unlock()
		refuse(c, RejectUnknownSession, "the session has ended")
		return ErrUnknownSession
	}
	if s.staleLocked(r.acks) { // the old connection carried more acks before it closed
		s.mu.Unlock()
		refuse(c, RejectBusy, "stale resume: the session has moved on")
		s.rearmExpiry()
		return errors.New("resume: stale RESUME")
	}
	if err := s.resyncLocked(r.acks); err != nil {
		s.resumeBusy = false
		s.endLocked(StateLost, err, endDrop, "")
		s.unlockNotify()
		refuse(c, RejectMismatch, err.Error())
		return err
	}
	s.failWritten = 0
	ab := s.ackLocked()
	s.sentAck, s.sentAckCost = ab, s.recvCost
	w := welcome{version: s.peer.version, sid: s.id, acks: ab}
	off := s.cfg.offer()
	w.maxMessage, w.window, w.deadPeerMs, w.sendBuffer = off.maxMessage, off.window, off.deadPeerMs, off.sendBuffer
	s.unlockNotify()

	var buf handshakeBuf
	header{typ: frameWelcome, length: welcomeLen}.put(buf[:])
	w.put(buf[headerLen:])
	if err := writeAll(c, buf[:headerLen+welcomeLen]); err != nil {
		s.rearmExpiry()
		return err
	}
	_ = c.SetDeadline(time.Time{})
	s.mu.Lock()
	s.resumeBusy = false
	if s.state.ended() {
		s.unlockNotify()
		return ErrSessionClosed
	}
	s.stats.Reconnects++
	s.startLinkLocked(c, true)
	queue := s.acceptOnResume
	s.acceptOnResume = false
	s.unlockNotify()
	if queue {
		s.lis.accept <- s // never blocks: the session held its place
	}
	s.log.Debug().Uint64("session", s.id).Msg("session resumed")
	return nil
}

// staleLocked reports whether a RESUME's ack block is older than acks the client already sent:
// the client wrote it on a connection it gave up on, and the session moved on since. (pMID is not
// compared: a RESUME holds it back behind FAILs not yet written on the new connection.)
func (s *Session) staleLocked(a ackBlock) bool {
	p := s.peerAck
	return a.rPID < p.rPID || a.dMID < p.dMID || a.fAck < p.fAck || a.credit < p.credit
}

// rearmExpiry restarts the resume window of a server session left without a connection.
func (s *Session) rearmExpiry() {
	s.mu.Lock()
	s.resumeBusy = false
	if s.link == nil && !s.state.ended() {
		gen := s.gen
		s.expiry = time.AfterFunc(s.cfg.ResumeWindow, func() { s.expire(gen) })
	}
	s.mu.Unlock()
}
