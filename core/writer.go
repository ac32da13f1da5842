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
	bufs  net.Buffers // iov[:n], or big; reused so WriteTo does not allocate
	end   uint64      // writeOff after this batch
	final bool        // the session ends once this is written
	// For batches with external frames (SendShared), made when first needed: more pieces, and
	// each external frame's header with its mark cleared.
	big    [][]byte
	exthdr *[maxExtPerBatch][dataHdrLen]byte
}

// appendSpan adds a span of the ring (one or two slices).
func (w *writeBatch) appendSpan(a, b []byte) {
	if len(a) > 0 {
		w.bufs = append(w.bufs, a)
	}
	if len(b) > 0 {
		w.bufs = append(w.bufs, b)
	}
}

// growForExternal moves the batch's pieces to big, which has room for maxExtPerBatch external
// frames.
func (w *writeBatch) growForExternal() {
	if w.big == nil {
		// Each external frame takes up to six pieces: the ring before it (two, if it wraps), its
		// header, its kept prefix (two), its payload; the piggybacked first frame as many.
		w.big = make([][]byte, 0, len(w.iov)+6*(maxExtPerBatch+1)+4)
		w.exthdr = new([maxExtPerBatch][dataHdrLen]byte)
	}
	if cap(w.bufs) != cap(w.big) {
		w.bufs = append(w.big[:0], w.bufs...)
	}
}

// forget drops the batch's views of the sent buffer and of shared payloads once written: they
// would keep a trimmed buffer's memory alive.
func (w *writeBatch) forget() {
	clear(w.iov[:])
	clear(w.big[:cap(w.big)])
	w.bufs = nil
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
			if err == nil {
				l.linger()
			}
			l.fail(s.linkErr(err))
			return
		}
	}
}

// wroteLocked records that the write of batch w returned, and reports whether the link must close
// now (the session ended).
func (s *Session) wroteLocked(l *link, w *writeBatch, now time.Time, err error) bool {
	w.forget()
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
	return err != nil || w.final || (s.state.ended() && s.abortFrame == nil)
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

// buildLocked fills w with what to send now: control frames, then data (the ack block riding on
// the first frame), then the frames of a close. If there is nothing, it returns how long the
// writer may sleep before a delayed ack or a heartbeat is due.
func (s *Session) buildLocked(w *writeBatch, now time.Time) time.Duration {
	w.ctrl, w.tail, w.bufs, w.final = w.ctrl[:0], w.tail[:0], w.iov[:0], false
	if s.state.ended() {
		if s.abortFrame != nil {
			w.tail = append(w.tail, s.abortFrame...)
			w.bufs = append(w.bufs, w.tail)
			w.final, s.abortFrame = true, nil
		}
		return time.Hour
	}
	s.appendControlLocked(w, now)
	from, to := s.writeOff, s.dataLimitLocked()
	ab, ackNow := s.ackDecisionLocked(now, to > from || len(w.ctrl) > 0)
	if ackNow && to == from {
		w.ctrl = appendAck(w.ctrl, ab)
	}
	if len(w.ctrl) > 0 {
		w.bufs = append(w.bufs, w.ctrl)
	}
	if to > from {
		if s.writeOff == s.sHead {
			s.ackWait = now // the oldest frame kept is about to wait for its ack
		}
		if ackNow {
			from = s.appendPiggybackLocked(w, from, ab)
		}
		s.writeOff = s.appendDataLocked(w, from, to)
	}
	w.end = s.writeOff
	s.highOff = max(s.highOff, w.end) // a Write follows at once
	s.appendCloseLocked(w)
	if len(w.bufs) > 0 {
		return 0
	}
	return s.idleLocked(w, now)
}

// appendControlLocked adds the PONG owed (with a PING of our own if we have not pinged for a
// while) and the FAIL reports not yet written on this connection.
func (s *Session) appendControlLocked(w *writeBatch, now time.Time) {
	if s.pongPending {
		s.pongPending = false
		w.ctrl = appendSimple(w.ctrl, framePong, s.pongValue)
		if s.sHead == s.sTail && !s.streamOpen {
			// The peer pings only after writing nothing for a heartbeat interval, acks included,
			// so we have sent nothing for about as long: the same idleness as idleLocked's, which
			// never comes when the peer's heartbeats come first and our PONGs count as writes.
			s.dropSentRingLocked()
		}
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
}

// ackDecisionLocked says whether the ack block goes in this batch. A changed one goes when there
// is something for it to ride on, when it is urgent, or once it has waited AckDelay.
func (s *Session) ackDecisionLocked(now time.Time, rideOn bool) (ackBlock, bool) {
	ab := s.ackLocked()
	changed := ab != s.sentAck
	ackNow := changed
	if changed && !s.ackUrgent && !rideOn {
		if s.ackDue.IsZero() {
			s.ackDue = now.Add(s.cfg.AckDelay)
		}
		ackNow = !now.Before(s.ackDue)
	}
	if ackNow || !changed {
		s.sentAck, s.sentAckCost = ab, s.recvCost
		s.ackPending, s.ackUrgent, s.ackDue = false, false, time.Time{}
	}
	return ab, ackNow
}

// appendPiggybackLocked adds the frame at from with ack block ab after its PID and MID (flag
// ACKS), and returns where the rest of the data starts.
func (s *Session) appendPiggybackLocked(w *writeBatch, from uint64, ab ackBlock) uint64 {
	h := dataHdr(w.hdr[:dataHdrLen])
	s.sbuf.get(from, h)
	if !h.external() {
		h[1] |= flagAcks
		binary.BigEndian.PutUint32(h[4:8], binary.BigEndian.Uint32(h[4:8])+ackBlockLen)
		ab.put(w.hdr[dataHdrLen:])
		w.bufs = append(w.bufs, w.hdr[:])
		return from + dataHdrLen
	}
	// An external frame: its kept prefix and its shared payload follow the ack block.
	end := from + dataHdrLen + uint64(h.prefixLen())
	h.clearKeptMarks()
	h[1] |= flagAcks
	binary.BigEndian.PutUint32(h[4:8], binary.BigEndian.Uint32(h[4:8])+ackBlockLen)
	ab.put(w.hdr[dataHdrLen:])
	w.growForExternal()
	w.bufs = append(w.bufs, w.hdr[:])
	w.appendSpan(s.sbuf.span(from+dataHdrLen, end))
	w.bufs = append(w.bufs, s.ext[s.extAfterLocked(from)].data)
	return end
}

// appendCloseLocked adds the frames of a graceful close once everything sent is acknowledged.
func (s *Session) appendCloseLocked(w *writeBatch) {
	if s.sHead != s.sTail || s.streamOpen || len(s.fails) > 0 {
		return
	}
	switch s.closing {
	case closeWanted:
		w.tail = appendSimple(w.tail, frameClose, 0)
		s.closing = closeSent
	case bothWanted:
		w.tail = appendSimple(appendSimple(w.tail, frameClose, 0), frameClosed, 0)
		s.closing = closeSent
	case bothSent:
		w.tail = appendSimple(w.tail, frameClosed, 0) // both closed at once: answer theirs too
		s.closing = closeSent
	case peerClosing:
		// Everything we sent is acknowledged: answer CLOSE, and the session is over.
		w.tail = appendSimple(w.tail, frameClosed, 0)
		s.endLocked(StateClosed, errClosedByPeer, endKeep, "")
		w.final = true
	}
	if len(w.tail) > 0 {
		w.bufs = append(w.bufs, w.tail)
	}
}

// idleLocked handles a writer with nothing to send: after a heartbeat interval of silence it
// gives back the sent buffer and pings; otherwise it says how long to sleep.
func (s *Session) idleLocked(w *writeBatch, now time.Time) time.Duration {
	hb := s.lastWrite.Add(s.peer.heartbeat)
	if !now.Before(hb) {
		if s.sHead == s.sTail && !s.streamOpen {
			// Nothing unacknowledged: give back the sent buffer, whatever its size (even the
			// smallest is most of an idle session's memory).
			s.dropSentRingLocked()
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
