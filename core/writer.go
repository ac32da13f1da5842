package core

import (
	"encoding/binary"
	"net"
	"time"
)

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
	// Drop the batch's views of the sent buffer: they would keep a trimmed buffer's memory alive.
	w.iov, w.bufs = [len(w.iov)][]byte{}, nil
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
	w := &l.inline
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
		if s.sHead == s.sTail && !s.streamOpen {
			// Idle for a heartbeat interval with nothing unacknowledged: give back the sent
			// buffer, whatever its size (even the smallest is most of an idle session's memory).
			// A write still under way keeps the old array alive.
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
