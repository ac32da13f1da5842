package core

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// link is one TCP (or TLS) connection carrying a session. A session has at most one at a time;
// each link has one reader and one writer goroutine.
type link struct {
	conn  net.Conn
	raw   *rawWriter // for non-blocking inline writes; nil unless conn is a plain TCP socket
	gen   uint64
	dead  chan struct{} // closed by fail
	done  chan struct{} // closed when both goroutines returned
	alive atomic.Int32
	once  sync.Once
	err   error // why it failed; written once before dead is closed
}

func newLink(c net.Conn, gen uint64) *link {
	l := &link{conn: c, gen: gen, dead: make(chan struct{}), done: make(chan struct{})}
	l.raw = newRawWriter(c)
	l.alive.Store(2)
	return l
}

// fail closes the connection; the first caller's error is kept.
func (l *link) fail(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.dead)
		_ = l.conn.Close()
	})
}

// exited is called by the reader and by the writer as they return; the last one calls gone.
func (l *link) exited(gone func()) {
	if l.alive.Add(-1) == 0 {
		gone()
		close(l.done)
	}
}

// errLinkReplaced closes a link that a resume on a new connection took over.
var errLinkReplaced = errors.New("ftsl: connection replaced by a resume")

// readState is the receive state the reader owns. See Session.rd.
type readState struct {
	ring     ring      // the same array as Session.rbuf: the reader's own copy of the slice
	descs    []recDesc // the same array as Session.descs
	tail     uint64    // end of the complete frames' bytes in the ring
	ftail    uint64    // end of bytes written for the frame being read
	inFrame  int       // payload bytes of the current DATA frame still to come
	frame    dataHeader
	inMsg    bool // a message's first frame has arrived, its last not yet
	recStart uint64
	recLen   uint64
	recCost  uint64
	recMID   uint64
	recFlags uint8
	rPID     uint64
	recvCost uint64
	lastMID  uint64 // last message begun
	done     uint64 // end of the last complete message's bytes
	dTail    uint64 // descriptors written
	fSeq     uint64 // last FAIL sequence applied
	credit   uint64 // the credit limit granted, as last seen; refreshed when exceeded
	head     uint64 // rHead as last seen; only grows
	dHead    uint64 // Session.dHead as last seen; only grows
}

// recDesc describes one complete message in the received buffer. Descriptors sit in an array of
// their own, apart from the bytes, so that Recv walks a dense array instead of chasing each
// message's length to find the next one across the buffer, a cache miss per message.
type recDesc struct {
	mid   uint64
	n     uint32 // bytes; the message starts where the previous one ended
	cost  uint32 // credit it used: its frames' headers and bytes
	flags uint8  // level bits, recResent, recCancelled
}

// recDescSize is a recDesc's size in memory, padding included, for Stats.BufferMemory.
const recDescSize = 24

// restart drops whatever was half read when the previous link died: the peer resends it whole.
func (r *readState) restart() {
	r.ftail = r.tail
	r.inFrame = 0
}

// readBatch gathers the effects of one Read's worth of frames, applied together under mu.
type readBatch struct {
	acks      ackBlock
	haveAcks  bool
	fails     []failReport
	ping      bool
	pingValue uint64
	pong      bool
	pongValue uint64
	close     bool
	closed    bool
	abort     bool
	abortWhy  string
	newData   bool
	woke      bool  // a Recv was waiting for this batch
	frames    int   // DATA frames completed in this batch
	err       error // a protocol error: the session is aborted
}

func (b *readBatch) reset() {
	fails := b.fails[:0]
	*b = readBatch{fails: fails}
}

const (
	minReadBuf = 4 << 10
	maxReadBuf = 256 << 10
)

// readLoop reads frames from l until it fails. It runs as the link's reader goroutine.
func (s *Session) readLoop(l *link) {
	defer s.goroutineExited()
	defer l.exited(func() { s.linkGone(l) })
	buf := make([]byte, minReadBuf)
	r, w := 0, 0
	var b readBatch
	deadPeer := s.peer.deadPeer
	var deadlineSet time.Time
	for {
		now := time.Now()
		if now.Sub(deadlineSet) > deadPeer/4 {
			// Refreshing the deadline on every read costs a timer update; a quarter of the
			// timeout of slack keeps detection within DeadPeerTimeout.
			deadlineSet = now
			_ = l.conn.SetReadDeadline(now.Add(deadPeer))
		}
		if r > 0 {
			// What is left is one incomplete header or control frame: move it to the front.
			w = copy(buf, buf[r:w])
			r = 0
		}
		n, err := l.conn.Read(buf[w:])
		if n > 0 {
			w += n
			b.reset()
			used := s.parse(&b, buf[r:w])
			r += used
			if w == len(buf) && len(buf) < maxReadBuf {
				// A full read says traffic is heavy: read more at a time.
				nb := make([]byte, 2*len(buf))
				w = copy(nb, buf[r:w])
				r, buf = 0, nb
			}
			if !s.publish(l, &b) {
				return
			}
			if b.ping {
				// The peer has sent nothing else for a heartbeat interval: a good moment to give
				// back what a burst made the buffers grow to, if the application has caught up.
				if r == w && len(buf) > minReadBuf {
					buf, r, w = make([]byte, minReadBuf), 0, 0
				}
				s.trimReceive()
			}
			if b.woke && b.frames == 1 {
				// A lone message for a waiting Recv is the request-reply pattern: let the woken Recv
				// run here and now rather than on another thread after a wake-up. (Under load the
				// reader had better go on reading.)
				runtime.Gosched()
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				err = errDeadPeer
			} else if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			s.log.Debug().Uint64("session", s.id).Err(err).Msg("connection lost")
			l.fail(err)
			return
		}
	}
}

var errDeadPeer = errors.New("ftsl: peer silent for DeadPeerTimeout")

// parse consumes whole frames (and DATA payload as it comes) from p, recording their effects in
// b. It returns how many bytes it consumed; the rest is an incomplete frame header or body. It
// never panics on any input: a malformed frame sets b.err and stops.
func (s *Session) parse(b *readBatch, p []byte) int {
	rd := &s.rd
	used := 0
	for b.err == nil && !b.abort { // nothing after an ABORT counts
		if rd.inFrame > 0 {
			if used == len(p) {
				break
			}
			n := min(rd.inFrame, len(p)-used)
			rd.ring.put(rd.ftail, p[used:used+n])
			rd.ftail += uint64(n)
			rd.inFrame -= n
			used += n
			if rd.inFrame > 0 {
				break
			}
			s.endDataFrame(b)
			continue
		}
		if len(p)-used < headerLen {
			break
		}
		h, err := parseHeader(p[used:])
		if err != nil {
			b.err = err
			break
		}
		if h.typ == frameData {
			fixed := headerLen + dataFixedLen
			if h.flags&flagAcks != 0 {
				fixed += ackBlockLen
			}
			if len(p)-used < fixed {
				break
			}
			q := p[used:]
			d := dataHeader{flags: h.flags, n: h.dataPayloadLen(),
				pid: binary.BigEndian.Uint64(q[8:16]), mid: binary.BigEndian.Uint64(q[16:24])}
			if h.flags&flagAcks != 0 {
				b.acks.max(parseAckBlock(q[24:]))
				b.haveAcks = true
			}
			used += fixed
			if err := s.beginDataFrame(d); err != nil {
				b.err = err
				break
			}
			if d.n == 0 {
				s.endDataFrame(b)
			}
			continue
		}
		if len(p)-used < headerLen+int(h.length) {
			break
		}
		body := p[used+headerLen : used+headerLen+int(h.length)]
		used += headerLen + int(h.length)
		switch h.typ {
		case frameAck:
			b.acks.max(parseAckBlock(body))
			b.haveAcks = true
		case framePing:
			b.ping, b.pingValue = true, binary.BigEndian.Uint64(body)
		case framePong:
			b.pong, b.pongValue = true, binary.BigEndian.Uint64(body)
		case frameFail:
			f, err := parseFail(body)
			if err != nil {
				b.err = err
				break
			}
			if f.seq <= rd.fSeq {
				continue // a repeat after a resume
			}
			if f.seq != rd.fSeq+1 {
				b.err = protocolError("FAIL: sequence %d after %d", f.seq, rd.fSeq)
				break
			}
			rd.fSeq = f.seq
			b.fails = append(b.fails, f)
		case frameClose:
			b.close = true
		case frameClosed:
			b.closed = true
		case frameAbort:
			_, why, err := parseCodeReason(h.typ, body)
			if err != nil {
				b.err = err
				break
			}
			b.abort, b.abortWhy = true, why
		default:
			b.err = protocolError("%v frame after the handshake", h.typ)
		}
	}
	return used
}

// beginDataFrame checks a DATA frame's header against the stream and makes room for its payload.
func (s *Session) beginDataFrame(d dataHeader) error {
	rd := &s.rd
	if d.pid != rd.rPID+1 {
		return protocolError("DATA: packet %d, expected %d", d.pid, rd.rPID+1)
	}
	level := d.flags & levelMask
	if rd.inMsg {
		if d.mid != rd.recMID || level != rd.recFlags&levelMask {
			return protocolError("DATA: packet %d of message %d inside message %d", d.pid, d.mid, rd.recMID)
		}
		if rd.recLen+uint64(d.n) > uint64(s.cfg.MaxMessageSize) {
			return protocolError("DATA: message %d exceeds MaxMessageSize %d", d.mid, s.cfg.MaxMessageSize)
		}
	} else if d.mid != rd.lastMID+1 {
		return protocolError("DATA: message %d, expected %d", d.mid, rd.lastMID+1)
	} else if d.n > s.cfg.MaxMessageSize {
		return protocolError("DATA: message %d exceeds MaxMessageSize %d", d.mid, s.cfg.MaxMessageSize)
	}
	cost := frameCost(d.n)
	if rd.recvCost+cost > rd.credit {
		s.mu.Lock()
		rd.credit = s.releasedCost + s.peer.window
		rd.head = s.rHead
		s.mu.Unlock()
		if rd.recvCost+cost > rd.credit {
			return protocolError("DATA: packet %d overruns the credit granted (%d > %d)", d.pid, rd.recvCost+cost, rd.credit)
		}
	}
	rd.frame = d
	rd.ftail = rd.tail
	if rd.ftail-rd.head+uint64(d.n) > uint64(len(rd.ring.buf)) {
		// Maybe Recv freed space since we last looked; grow only if not.
		s.mu.Lock()
		rd.head = s.rHead
		if rd.ring.ensure(rd.head, rd.tail, d.n) {
			s.rbuf = rd.ring
		}
		s.mu.Unlock()
	}
	rd.inFrame = d.n
	return nil
}

// endDataFrame accounts for a DATA frame whose payload is all in the ring.
func (s *Session) endDataFrame(b *readBatch) {
	rd := &s.rd
	d := rd.frame
	if !rd.inMsg {
		rd.inMsg = true
		rd.recStart = rd.tail
		rd.recLen, rd.recCost = 0, 0
		rd.recMID = d.mid
		rd.recFlags = d.flags & levelMask
		rd.lastMID = d.mid
	}
	rd.tail = rd.ftail
	rd.recLen += uint64(d.n)
	rd.recCost += frameCost(d.n)
	rd.recFlags |= d.flags & flagResent
	rd.rPID = d.pid
	rd.recvCost += frameCost(d.n)
	b.frames++
	if d.flags&flagEOM == 0 {
		return
	}
	if d.flags&flagCancel != 0 {
		rd.recFlags |= recCancelled
		rd.recLen = 0
		rd.tail = rd.recStart
		rd.ftail = rd.tail
	}
	if rd.dTail-rd.dHead >= uint64(len(rd.descs)) {
		s.mu.Lock()
		rd.dHead = s.dHead
		if rd.dTail-rd.dHead >= uint64(len(rd.descs)) {
			rd.descs = growDescs(rd.descs, rd.dHead, rd.dTail)
			s.descs = rd.descs
		}
		s.mu.Unlock()
	}
	rd.descs[rd.dTail&uint64(len(rd.descs)-1)] = recDesc{mid: rd.recMID, n: uint32(rd.recLen), cost: uint32(rd.recCost), flags: rd.recFlags}
	rd.dTail++
	rd.done = rd.tail
	rd.inMsg = false
	b.newData = true
}

// trimReceive drops the receive ring and descriptors, which grow with bursts, once everything in
// them has been taken by Recv and released. They are allocated again, small, when data comes.
// The reader calls it.
func (s *Session) trimReceive() {
	rd := &s.rd
	if rd.inFrame > 0 || rd.inMsg || (len(rd.ring.buf) <= minRingCap && len(rd.descs) <= minDescs) {
		return
	}
	s.mu.Lock()
	if s.rHead == rd.tail && s.dHead == rd.dTail && !s.held.active {
		rd.ring, rd.descs = ring{}, nil
		s.rbuf, s.descs = rd.ring, rd.descs
		rd.head, rd.dHead = s.rHead, s.dHead
	}
	s.mu.Unlock()
}

const minDescs = 64

// growDescs doubles a descriptor ring, keeping entries [head, tail) at their indexes.
func growDescs(old []recDesc, head, tail uint64) []recDesc {
	nd := make([]recDesc, max(minDescs, 2*len(old)))
	for i := head; i < tail; i++ {
		nd[i&uint64(len(nd)-1)] = old[i&uint64(len(old)-1)]
	}
	return nd
}

// publish applies a batch under mu: it makes new messages visible, takes in the peer's acks,
// and wakes whoever waits. It reports false when the reader should stop.
func (s *Session) publish(l *link, b *readBatch) bool {
	s.mu.Lock()
	if s.link != l {
		s.mu.Unlock()
		return false
	}
	stop := s.applyLocked(b)
	s.unlockNotify()
	return !stop
}

// applyLocked is publish's work; it reports whether the session ended.
func (s *Session) applyLocked(b *readBatch) (stop bool) {
	rd := &s.rd
	if s.unconfirmed != nil {
		close(s.unconfirmed)
		s.unconfirmed = nil
	}
	rd.head, rd.dHead = s.rHead, s.dHead
	rd.credit = s.releasedCost + s.peer.window
	if rd.rPID != s.rPID {
		s.rPID, s.recvCost, s.rDone, s.dDone = rd.rPID, rd.recvCost, rd.done, rd.dTail
		s.ackMovedLocked(s.recvCost-s.sentAckCost >= s.peer.ackBytes)
		if b.newData && s.recvWaiting > 0 {
			select {
			case s.recvKick <- struct{}{}:
				b.woke = true
			default:
			}
		}
	}
	if rd.fSeq != s.peerFSeq {
		s.peerFSeq = rd.fSeq
		s.ackMovedLocked(true)
	}
	// FAIL reports go first: the ack blocks of this batch may already count them as processed.
	if b.err == nil {
		for _, f := range b.fails {
			if f.mid <= s.peerAck.pMID || f.mid >= s.nextMID {
				b.err = protocolError("FAIL for message %d, which is not awaiting processing", f.mid)
				break
			}
			s.noteLocked(note{kind: noteFailed, mid: f.mid, reason: f.reason})
		}
	}
	if b.err == nil && b.haveAcks {
		b.err = s.takeAcksLocked(b.acks)
	}
	if b.ping {
		s.pongPending, s.pongValue = true, b.pingValue
		s.wakeWriterLocked()
	}
	if b.pong && b.pongValue == uint64(s.pingSent.UnixNano()) {
		s.stats.RTT = time.Since(s.pingSent)
	}
	switch {
	case b.err != nil:
		s.log.Warn().Uint64("session", s.id).Err(b.err).Msg("protocol error from peer; aborting")
		s.discard = true
		s.endLocked(StateClosed, b.err, abortProtocol, b.err.Error())
		stop = true
	case b.abort:
		s.endLocked(StateClosed, errorWithReason(ErrSessionClosed, "aborted by the peer", b.abortWhy), endDrop, "")
		stop = true
	case b.closed:
		if s.closeSent {
			s.endLocked(StateClosed, errClosedCleanly, endDrop, "")
			stop = true
		}
	case b.close:
		s.peerClosing = true
		if s.state != StateClosing {
			s.setStateLocked(StateClosing, nil)
		}
		s.wakeSendersLocked()
		s.wakeWriterLocked()
	}
	return stop
}

func errorWithReason(sentinel error, what, why string) error {
	if why == "" {
		return &wrapped{sentinel, what}
	}
	return &wrapped{sentinel, what + ": " + why}
}

type wrapped struct {
	sentinel error
	msg      string
}

func (w *wrapped) Error() string { return w.sentinel.Error() + ": " + w.msg }
func (w *wrapped) Unwrap() error { return w.sentinel }

// takeAcksLocked applies the peer's ack block: it frees acknowledged frames, raises the credit,
// and queues progress for the observer.
func (s *Session) takeAcksLocked(a ackBlock) error {
	if a.rPID >= s.nextPID || a.dMID >= s.nextMID || a.pMID >= s.nextMID || a.fAck >= s.nextFSeq {
		return protocolError("ack beyond what was sent (packet %d of %d, messages %d/%d of %d, FAIL %d of %d)",
			a.rPID, s.nextPID-1, a.dMID, a.pMID, s.nextMID-1, a.fAck, s.nextFSeq-1)
	}
	old := s.peerAck
	s.peerAck.max(a)
	if s.peerAck.credit > old.credit && s.writeOff < s.sTail {
		s.wakeWriterLocked()
	}
	if s.peerAck.fAck > old.fAck {
		k := 0
		for k < len(s.fails) && s.fails[k].seq <= s.peerAck.fAck {
			k++
		}
		s.fails = append(s.fails[:0], s.fails[k:]...)
		s.failWritten = max(0, s.failWritten-k)
		if s.recvWaiting > 0 {
			select {
			case s.recvKick <- struct{}{}:
			default:
			}
		}
		s.wakeWriterLocked() // a closing session may be waiting for this
	}
	s.freeAckedLocked()
	if s.peerAck.dMID != old.dMID || s.peerAck.pMID != old.pMID {
		s.progressLocked()
	}
	return nil
}

// freeAckedLocked drops frames the peer acknowledged and the writer is done with.
func (s *Session) freeAckedLocked() {
	freed := false
	var scratch [dataHdrLen]byte
	for s.sHead < s.sTail && s.sHeadPID <= s.peerAck.rPID {
		hdr := s.sbuf.view(s.sHead, &scratch)
		end := s.sHead + dataHdrLen + uint64(binary.BigEndian.Uint32(hdr[4:8])) - dataFixedLen
		if end > s.sentOff {
			break
		}
		if hdr[1]&flagEOM != 0 {
			s.ackedMID = binary.BigEndian.Uint64(hdr[16:24])
		}
		s.sHead = end
		s.sHeadPID++
		freed = true
	}
	if !freed {
		return
	}
	s.writeOff = max(s.writeOff, s.sHead)
	s.progressLocked()
	s.wakeSendersLocked()
	if s.closeLocal || s.peerClosing {
		s.wakeWriterLocked()
	}
}

func (s *Session) progressLocked() {
	s.noteLocked(note{kind: noteProgress, p: Progress{Acked: s.ackedMID, Delivered: s.peerAck.dMID, Processed: s.peerAck.pMID}})
}

// linkGone runs when both goroutines of l have returned.
func (s *Session) linkGone(l *link) {
	s.mu.Lock()
	if s.link == l {
		s.link = nil
		s.writerIdle = false
		if !s.state.ended() {
			if s.state == StateConnected {
				s.setStateLocked(StateDisconnected, l.err)
			}
			if !s.client && !s.resumeBusy {
				gen := s.gen
				s.expiry = time.AfterFunc(s.cfg.ResumeWindow, func() { s.expire(gen) })
			}
		}
	}
	s.unlockNotify()
}

// expire ends a server session whose client did not come back in time.
func (s *Session) expire(gen uint64) {
	s.mu.Lock()
	if s.link == nil && s.gen == gen && !s.resumeBusy && !s.state.ended() {
		s.endLocked(StateLost, errorWithReason(ErrSessionLost, "the client did not resume within ResumeWindow", ""), endDrop, "")
	}
	s.unlockNotify()
}

// writeBatch is what the writer sends in one go.
type writeBatch struct {
	ctrl  []byte // control frames before the data
	hdr   [dataHdrLen + ackBlockLen]byte
	tail  []byte      // CLOSE/CLOSED/ABORT after the data
	iov   [6][]byte   // ctrl, first header, data (2 pieces), tail
	bufs  net.Buffers // reused so WriteTo does not allocate
	end   uint64      // writeOff after this batch
	final bool        // the session ends once this is written
}

// writeLoop sends everything the session queues on l until l fails. The client's supervisor
// runs it; on a server it is the link's writer goroutine.
func (s *Session) writeLoop(l *link) {
	defer s.timer.Stop()
	var own writeBatch
	for {
		s.mu.Lock()
		if s.link != l {
			s.mu.Unlock()
			return
		}
		now := time.Now()
		w := &own
		var wait time.Duration
		switch {
		case s.pending != nil && s.pendingOn == l:
			// An inline write from Send found the socket full: finish it here, where blocking is fine.
			w, s.pending = s.pending, nil
		case s.writingOn == l:
			// Send is writing inline; it wakes us if it leaves work behind, and sets the alarm.
			w.bufs, wait = w.bufs[:0], s.peer.heartbeat
		default:
			wait = s.buildLocked(w, now)
		}
		if len(w.bufs) == 0 {
			if s.state.ended() {
				s.mu.Unlock()
				l.fail(s.err)
				return
			}
			s.writerIdle = true
			s.setAlarmLocked(now, wait)
			s.mu.Unlock()
			select {
			case <-s.kick:
			case <-s.timer.C:
			case <-l.dead:
				return
			}
			continue
		}
		s.writingOn = l
		s.mu.Unlock()
		_, err := w.bufs.WriteTo(l.conn)
		s.mu.Lock()
		final := s.wroteLocked(l, w, now, err)
		s.unlockNotify()
		if err != nil || final {
			l.fail(s.linkErr(err))
			return
		}
	}
}

// wroteLocked records that the write of batch w returned, and reports whether the link must close
// now (the session ended).
func (s *Session) wroteLocked(l *link, w *writeBatch, now time.Time, err error) bool {
	if s.writingOn == l {
		s.writingOn = nil
	}
	if s.link == l {
		// A write returning on a link that a resume replaced counts for nothing here: the
		// resync has already decided what goes again, and the new link's writes guard it.
		s.sentOff = max(s.sentOff, w.end)
		s.lastWrite = now
		s.freeAckedLocked()
	}
	return err != nil || w.final || (s.state.ended() && !s.abortPending)
}

func (s *Session) linkErr(err error) error {
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// setAlarmLocked arms the writer's timer to ring after d.
func (s *Session) setAlarmLocked(now time.Time, d time.Duration) {
	s.timer.Reset(d)
	s.alarmAt = now.Add(d)
}

// writeInlineLocked is Send's fast path when the writer sleeps: rather than wake it (a goroutine
// handoff on each side, the bulk of a round trip's overhead), the sender makes one non-blocking
// attempt to write. Whatever does not fit in the socket goes to the writer, so Send never blocks
// on the network. Called with mu held; returns with it held.
func (s *Session) writeInlineLocked(l *link) {
	w := &s.inline
	now := time.Now()
	s.buildLocked(w, now)
	if len(w.bufs) == 0 {
		return
	}
	s.writingOn = l
	s.mu.Unlock()
	done, err := l.raw.tryWrite(&w.bufs)
	s.mu.Lock()
	if err == nil && !done && s.link == l {
		// writingOn stays set until l's writer finishes the batch (or l dies: a new link
		// starts afresh, and the peer's resume point says what to send again).
		s.pending, s.pendingOn = w, l
		s.wakeWriterLocked()
		return
	}
	if s.wroteLocked(l, w, now, err) {
		l.fail(err)
		return
	}
	if s.writeOff < s.sTail || s.pongPending || s.failWritten < len(s.fails) || s.ackUrgent {
		s.wakeWriterLocked()
		return
	}
	// The sleeping writer's alarm may be set for the ack this write carried, or it may have rung
	// while we wrote: set it for what is due next.
	next := s.peer.heartbeat
	if !s.ackDue.IsZero() {
		next = min(next, max(s.ackDue.Sub(now), 0))
	}
	s.setAlarmLocked(now, next)
}

// buildLocked fills w with what to send now. If there is nothing, it returns how long the writer
// may sleep before a delayed ack or a heartbeat is due.
func (s *Session) buildLocked(w *writeBatch, now time.Time) time.Duration {
	w.ctrl, w.tail, w.bufs, w.final = w.ctrl[:0], w.tail[:0], w.iov[:0], false
	if s.state.ended() {
		if s.abortPending {
			s.abortPending = false
			w.tail = appendCodeReason(w.tail, frameAbort, s.abortCode, s.abortReason)
			w.bufs = append(w.bufs, w.tail)
			w.final = true
		}
		return time.Hour
	}
	if s.pongPending {
		s.pongPending = false
		w.ctrl = appendSimple(w.ctrl, framePong, s.pongValue)
		if now.Sub(s.pingSent) >= s.peer.heartbeat {
			// On an idle link the side that pings first stays first, and its PONGs would keep the
			// other side from ever pinging: ask back, so both ends learn the round-trip time.
			s.pingSent = now
			w.ctrl = appendSimple(w.ctrl, framePing, uint64(now.UnixNano()))
		}
	}
	for ; s.failWritten < len(s.fails); s.failWritten++ {
		w.ctrl = s.fails[s.failWritten].appendFrame(w.ctrl)
	}
	from, to := s.writeOff, s.dataLimitLocked()
	ab := s.ackLocked()
	changed := ab != s.sentAck
	ackNow := changed
	if changed && !s.ackUrgent && to == from && len(w.ctrl) == 0 {
		// Nothing to ride on: wait up to AckDelay for something to.
		if s.ackDue.IsZero() {
			s.ackDue = now.Add(s.cfg.AckDelay)
		}
		ackNow = !now.Before(s.ackDue)
	}
	if ackNow || !changed {
		s.sentAck, s.sentAckCost = ab, s.recvCost
		s.ackPending, s.ackUrgent, s.ackDue = false, false, time.Time{}
	}
	if ackNow && to == from {
		w.ctrl = appendAck(w.ctrl, ab)
	}
	if len(w.ctrl) > 0 {
		w.bufs = append(w.bufs, w.ctrl)
	}
	if to > from {
		if ackNow {
			// Piggyback: the first frame goes out with the ack block after its PID and MID.
			s.sbuf.get(from, w.hdr[:dataHdrLen])
			w.hdr[1] |= flagAcks
			binary.BigEndian.PutUint32(w.hdr[4:8], binary.BigEndian.Uint32(w.hdr[4:8])+ackBlockLen)
			ab.put(w.hdr[dataHdrLen:])
			w.bufs = append(w.bufs, w.hdr[:])
			from += dataHdrLen
		}
		a, b := s.sbuf.span(from, to)
		w.bufs = append(w.bufs, a)
		if len(b) > 0 {
			w.bufs = append(w.bufs, b)
		}
		s.writeOff = to
	}
	w.end = s.writeOff
	s.highOff = max(s.highOff, w.end) // a Write follows at once
	drained := s.sHead == s.sTail && !s.streamOpen && len(s.fails) == 0
	if drained && s.closeLocal && !s.closeSent {
		s.closeSent = true
		w.tail = appendSimple(w.tail, frameClose, 0)
	}
	if drained && s.peerClosing && !s.closeLocal {
		// Everything we sent is acknowledged: answer CLOSE, and the session is over.
		w.tail = appendSimple(w.tail, frameClosed, 0)
		s.endLocked(StateClosed, errClosedByPeer, endKeep, "")
		w.final = true
	}
	if drained && s.peerClosing && s.closeLocal && s.closeSent {
		w.tail = appendSimple(w.tail, frameClosed, 0) // both closed at once: answer too
		s.peerClosing = false
	}
	if len(w.tail) > 0 {
		w.bufs = append(w.bufs, w.tail)
	}
	if len(w.bufs) > 0 {
		return 0
	}
	hb := s.lastWrite.Add(s.peer.heartbeat)
	if !now.Before(hb) {
		if s.sHead == s.sTail && !s.streamOpen && len(s.sbuf.buf) > minRingCap {
			// Idle for a heartbeat interval with nothing unacknowledged: give back what a burst
			// made the sent buffer grow to. A write still under way keeps the old array alive.
			s.sbuf = ring{}
		}
		s.pingSent = now
		w.ctrl = appendSimple(w.ctrl, framePing, uint64(now.UnixNano()))
		w.bufs = append(w.bufs, w.ctrl)
		return 0
	}
	wait := hb.Sub(now)
	if !s.ackDue.IsZero() {
		wait = min(wait, max(s.ackDue.Sub(now), 0))
	}
	return wait
}

// dataLimitLocked is how far the writer may send: the end of the last whole frame within the
// peer's credit.
func (s *Session) dataLimitLocked() uint64 {
	if s.state == StateDisconnected {
		return s.writeOff
	}
	credit := s.peerAck.credit
	if s.sTail <= credit {
		return s.sTail
	}
	off := s.writeOff
	var lb [4]byte
	for off < s.sTail {
		s.sbuf.get(off+4, lb[:])
		end := off + headerLen + uint64(binary.BigEndian.Uint32(lb[:]))
		if end > credit {
			break
		}
		off = end
	}
	return off
}
