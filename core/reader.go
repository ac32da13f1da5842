package core

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"time"
)

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
	head     uint64 // Session.rHead as last seen; only grows
	dRel     uint64 // Session.dRel as last seen; only grows
}

// recDesc describes one complete message in the received buffer. Descriptors sit in an array of
// their own, apart from the bytes, so that Recv walks a dense array instead of chasing each
// message's length to find the next one across the buffer, a cache miss per message.
type recDesc struct {
	n     uint32 // bytes; the message starts where the previous one ended
	cost  uint32 // credit it used: its frames' headers and bytes
	flags uint8  // level bits, recResent, recCancelled, and what Recv and Settle record
}

// recDescSize is a recDesc's size in memory, padding included, for Stats.BufferMemory.
const recDescSize = 12

// refreshViewLocked updates the reader's copies of what Recv and Settle move: how far the
// application released the buffer, and so the credit granted. The reader looks only when its
// copy says it is out of room, which saves taking mu per frame. Called with mu held.
func (s *Session) refreshViewLocked() {
	rd := &s.rd
	rd.head, rd.dRel = s.rHead, s.dRel
	rd.credit = s.releasedCost + s.peer.window
}

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
	now       time.Time
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
	defer close(l.readerDone)
	var buf []byte // nil while idle on Linux TCP: see link.read
	r, w := 0, 0
	var b readBatch
	deadPeer := s.peer.deadPeer
	var deadlineSet time.Time
	now := time.Now()
	for {
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
		n, err := l.read(&buf, w)
		now = time.Now() // once per read: it dates the batch, and the next deadline
		if n > 0 {
			w += n
			b.reset()
			used := s.parse(&b, buf[r:w])
			r += used
			if w == len(buf) && len(buf) < maxReadBuf {
				// A full read says traffic is heavy: read more at a time.
				nb := make([]byte, 2*len(buf))
				w = copy(nb, buf[r:w])
				putReadBuf(buf)
				r, buf = 0, nb
			}
			b.now = now
			if !s.publish(l, &b) {
				putReadBuf(buf)
				return
			}
			if b.ping {
				// The peer has sent nothing else for a heartbeat interval: a good moment to give
				// back what a burst made the buffers grow to, if the application has caught up.
				if r == w && len(buf) > minReadBuf {
					buf, r, w = nil, 0, 0
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
			putReadBuf(buf)
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
			q := dataHdr(p[used:])
			d := dataHeader{flags: h.flags, n: h.dataPayloadLen(), pid: q.pid(), mid: q.mid()}
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
		s.refreshViewLocked()
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
		s.refreshViewLocked()
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
	rd.recFlags |= d.flags & (flagResent | flagPrompt)
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
	if rd.dTail-rd.dRel >= uint64(len(rd.descs)) {
		s.mu.Lock()
		s.refreshViewLocked()
		if rd.dTail-rd.dRel >= uint64(len(rd.descs)) {
			rd.descs = growDescs(rd.descs, rd.dRel, rd.dTail)
			s.descs = rd.descs
		}
		s.mu.Unlock()
	}
	rd.descs[rd.dTail&uint64(len(rd.descs)-1)] = recDesc{n: uint32(rd.recLen), cost: uint32(rd.recCost), flags: rd.recFlags}
	rd.dTail++
	rd.done = rd.tail
	rd.inMsg = false
	b.newData = true
}

// trimReceive drops the receive ring and descriptors once everything in them has been settled:
// they grow with bursts, and even at their smallest they are most of an idle session's memory.
// They are allocated again, small, when data comes. The reader calls it when the peer pings,
// that is when it has sent nothing for a heartbeat interval.
func (s *Session) trimReceive() {
	rd := &s.rd
	if rd.inFrame > 0 || rd.inMsg || (rd.ring.buf == nil && rd.descs == nil) {
		return
	}
	s.mu.Lock()
	if s.dRel == rd.dTail && s.held == 0 {
		rd.ring, rd.descs = ring{}, nil
		s.rbuf, s.descs = rd.ring, rd.descs
		s.wrapBuf = nil
		s.refreshViewLocked()
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
	var arrival func()
	if !stop && s.arrival != nil && s.recvReadyLocked() {
		arrival = s.arrival
	}
	if !stop && s.writeOff > s.sHead && b.now.Sub(s.ackWait) > s.peer.deadPeer {
		// Frames written long ago wait for an ack while the peer writes on: it is not reading
		// (a stalled peer, or one that only pings to pin our buffers). Drop the connection, as
		// for a silent peer: a live client resumes, and the frames go again.
		s.unlockNotify()
		s.log.Debug().Uint64("session", s.id).Msg("peer acknowledges nothing; connection dropped")
		l.fail(errPeerNotReading)
		return false
	}
	s.unlockNotify()
	if arrival != nil {
		arrival()
	}
	return !stop
}

var errPeerNotReading = errors.New("ftsl: peer acknowledged nothing for DeadPeerTimeout")

// applyLocked is publish's work; it reports whether the session ended.
func (s *Session) applyLocked(b *readBatch) (stop bool) {
	rd := &s.rd
	if s.unconfirmed != nil {
		close(s.unconfirmed)
		s.unconfirmed = nil
	}
	s.refreshViewLocked()
	if rd.rPID != s.rPID {
		s.rPID, s.recvCost, s.rDone, s.dDone = rd.rPID, rd.recvCost, rd.done, rd.dTail
		s.ackMovedLocked(s.recvCost-s.sentAckCost >= s.peer.ackBytes)
		if b.newData && s.recvWaiting > 0 && s.recvReadyLocked() {
			s.kickRecvLocked()
			b.woke = true
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
		rPID := s.peerAck.rPID
		b.err = s.takeAcksLocked(b.acks)
		if s.peerAck.rPID > rPID {
			s.ackWait = b.now // frames waiting for an ack saw one move
		}
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
		if s.closing == closeSent || s.closing == bothSent {
			s.endLocked(StateClosed, errClosedCleanly, endDrop, "")
			stop = true
		}
	case b.close:
		s.closing = s.closing.closeReceived()
		if s.state != StateClosing {
			s.setStateLocked(StateClosing, nil)
		}
		s.wakeSendersLocked()
		s.wakeWriterLocked()
	}
	return stop
}

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
			s.kickRecvLocked() // a message that asks for processing may go now
		}
		s.wakeWriterLocked() // a closing session may be waiting for this
	}
	s.freeAckedLocked()
	if s.peerAck.dMID != old.dMID || s.peerAck.pMID != old.pMID {
		s.progressLocked()
	}
	return nil
}

func (s *Session) progressLocked() {
	s.noteLocked(note{kind: noteProgress, p: Progress{Acked: s.ackedMID, Delivered: s.peerAck.dMID, Processed: s.peerAck.pMID}})
}
