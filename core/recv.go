package core

import (
	"context"
	"fmt"
)

// Message is one whole message received by Recv.
type Message struct {
	// ID is the message ID (MID): 1 for the first message the peer sent, then 2, 3...
	ID uint64
	// Data is the message. It stays valid until the next call to Recv on the session; copy it
	// to keep it longer.
	Data []byte
	// Level is the acknowledgement the sender asked for. For AckProcessed, call Settle.
	Level AckLevel
	// Resent reports that part of the message was sent again after a connection broke. The
	// message is still delivered exactly once; this is for diagnostics.
	Resent bool
}

// Recv returns the next message, waiting until one arrives or ctx ends. It first releases the
// message the previous Recv returned (settling it as processed if it asked for AckProcessed
// and Settle was not called). After the session ends, Recv still returns the messages already
// received (except after Abort), then the session's error.
func (s *Session) Recv(ctx context.Context) (Message, error) {
	s.mu.Lock()
	s.releaseLocked()
	for {
		if m, ok := s.nextMessageLocked(); ok {
			if s.recvWaiting > 0 && s.dHead != s.dDone {
				select {
				case s.recvKick <- struct{}{}:
				default:
				}
			}
			s.unlockNotify()
			return m, nil
		}
		if s.state.ended() {
			err := s.err
			s.mu.Unlock()
			return Message{}, err
		}
		s.recvWaiting++
		s.mu.Unlock()
		var err error
		select {
		case <-s.recvKick:
		case <-s.ended:
		case <-ctx.Done():
			err = ctx.Err()
		}
		s.mu.Lock()
		s.recvWaiting--
		if err != nil {
			s.mu.Unlock()
			return Message{}, err
		}
	}
}

// releaseLocked gives the held message's space back to the peer's credit.
func (s *Session) releaseLocked() {
	h := &s.held
	if !h.active {
		return
	}
	if !h.settled {
		s.pMID = h.mid
	}
	s.rHead = h.end
	s.releasedCost += h.cost
	*h = heldMessage{}
	s.ackMovedLocked(s.releasedCost+s.peer.window-s.sentAck.credit >= s.peer.window/ackUrgentFactor)
}

// nextMessageLocked takes the next complete record, if any, and makes it the held message.
func (s *Session) nextMessageLocked() (Message, bool) {
	for s.dHead < s.dDone && !s.discard {
		d := s.descs[s.dHead&uint64(len(s.descs)-1)]
		s.dHead++
		if d.flags&recCancelled != 0 {
			// The sender gave up on this message: nobody will see it, so it counts as settled.
			s.releasedCost += uint64(d.cost)
			s.dMID, s.pMID = d.mid, d.mid
			s.ackMovedLocked(false)
			continue
		}
		level := AckLevel(d.flags&levelMask) >> levelShift
		if level == AckProcessed && len(s.fails) >= maxPendingFailures {
			s.dHead-- // the peer must acknowledge our FAIL reports first
			return Message{}, false
		}
		n := uint64(d.n)
		data := s.recordData(s.rHead, n)
		s.held = heldMessage{active: true, level: level, mid: d.mid, end: s.rHead + n, cost: uint64(d.cost)}
		s.dMID = d.mid
		if level != AckProcessed {
			s.held.settled = true
			s.pMID = d.mid
		}
		s.ackMovedLocked(false)
		s.stats.MessagesReceived++
		s.stats.BytesReceived += n
		return Message{ID: d.mid, Data: data, Level: level, Resent: d.flags&recResent != 0}, true
	}
	return Message{}, false
}

// recordData returns the n bytes at off as one slice, copying only when they wrap the ring.
func (s *Session) recordData(off, n uint64) []byte {
	a, b := s.rbuf.span(off, off+n)
	if len(b) == 0 {
		return a[:n:n]
	}
	if uint64(cap(s.scratch)) < n {
		s.scratch = make([]byte, n)
	}
	d := s.scratch[:n:n]
	copy(d[copy(d, a):], b)
	return d
}

// Settle reports what became of message mid, which the last Recv returned: failure nil means
// processed. For a message that asked for AckProcessed the sender's Observer hears it; for
// others Settle does nothing. A failure reaches the sender even across connection crashes.
func (s *Session) Settle(mid uint64, failure error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := &s.held
	if !h.active || h.mid != mid {
		return fmt.Errorf("%w: message %d (Settle the message the last Recv returned)", ErrNotHeld, mid)
	}
	if h.settled {
		if h.level != AckProcessed {
			return nil
		}
		return fmt.Errorf("%w: message %d was already settled", ErrNotHeld, mid)
	}
	h.settled = true
	if failure != nil {
		reason := clipReason(failure.Error())
		s.fails = append(s.fails, failReport{seq: s.nextFSeq, mid: mid, reason: reason})
		s.nextFSeq++
		s.pMID = mid
		s.ackMovedLocked(true)
		return nil
	}
	s.pMID = mid
	s.ackMovedLocked(false)
	return nil
}

// ackLocked is the ack block to send now. pMID stops short of the first failure not yet written
// on this link, so the peer always reads a FAIL before the pMID that passes it.
func (s *Session) ackLocked() ackBlock {
	p := s.pMID
	if s.failWritten < len(s.fails) {
		p = min(p, s.fails[s.failWritten].mid-1)
	}
	return ackBlock{rPID: s.rPID, dMID: s.dMID, pMID: p, fAck: s.peerFSeq, credit: s.releasedCost + s.peer.window}
}
