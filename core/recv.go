package core

import (
	"context"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// Message is one whole message received by Recv.
type Message struct {
	// ID is the message ID (MID): 1 for the first message the peer sent, then 2, 3... It is
	// also the message's handle: pass it to Settle or Requeue.
	ID uint64
	// Data is the message. It stays valid, and unchanged, until the message is settled (Settle);
	// copy it to keep it longer.
	Data []byte
	// Level is the acknowledgement the sender asked for.
	Level AckLevel
	// Resent reports that part of the message was sent again after a connection broke. The
	// message is still delivered exactly once; this is for diagnostics.
	Resent bool
}

// Receive-side descriptor flags, besides the level bits and recResent.
const (
	recSettled   = 0x01 // the application's verdict is in (or none was asked): pMID may pass it
	recReleased  = 0x02 // the application is done with its bytes
	recCancelled = 0x80 // the sender cancelled the message: nobody sees it
	recResent    = flagResent
	recPrompt    = flagPrompt // acknowledge the message's level at once (see flagPrompt)
)

// Recv returns the next message, waiting until one arrives or ctx ends. The message is held by
// the application, its Data valid, until it is settled with Settle, whatever its level; at most
// Config.MaxInFlight messages are held at once, and Recv waits while that many are. Several
// goroutines may call Recv at once, each getting its own message. A message given back with
// Requeue comes out of Recv again before any new one. After the session ends, Recv still
// returns the messages already received (except after Abort), then the session's error.
//
// A goroutine must not wait in Recv for a message that can only come once it settles one it
// holds: held messages keep their place in the received buffer, and the peer sends no more than
// that buffer's free space (ReceiveBufferBytes), so the message waited for may never fit. Settle,
// then receive; or hand messages to other goroutines that settle them.
func (s *Session) Recv(ctx context.Context) (m Message, err error) {
	s.mu.Lock()
	err = s.recvLocked(ctx, &m)
	return m, err
}

// SettleAndRecv settles message mid as Settle does, then returns the next message as Recv does,
// in one step: a receive loop that handles one message at a time pays for one lock instead of
// two. If the settling fails, it returns that error and receives nothing.
func (s *Session) SettleAndRecv(ctx context.Context, mid uint64, failure error) (m Message, err error) {
	s.mu.Lock()
	if err = s.settleLocked(mid, failure); err != nil {
		s.mu.Unlock()
		return m, err
	}
	err = s.recvLocked(ctx, &m)
	return m, err
}

// TryRecv is Recv that never waits: ok is false when no message can be handed out now (none has
// arrived, or MaxInFlight are held); err is the session's error once it has ended and nothing is
// left. With OnArrival it lets a server process many sessions' messages without a goroutine each.
func (s *Session) TryRecv() (m Message, ok bool, err error) {
	s.mu.Lock()
	if ok = s.takeLocked(&m); ok {
		if s.recvWaiting > 0 && s.recvReadyLocked() {
			s.kickRecvLocked()
		}
	} else if s.state.ended() {
		err = s.err
	}
	s.unlockNotify()
	return m, ok, err
}

// OnArrival has f called each time messages become ready for Recv: when they arrive, or when the
// peer's acknowledgement of FAIL reports lets held-back ones go. f runs on the connection's
// reader goroutine, one call at a time, and holds up this connection's reading while it runs:
// that is the back-pressure a server handling its clients' messages in place wants, with
// TryRecv and Settle, and no goroutine per session. f may use this session and others (send with
// TrySend, or with Send if waiting on another session is acceptable); it must not wait for this
// session's own reader. The session's end is not an arrival: watch Done or an Observer. Set it
// before traffic starts; nil removes it.
func (s *Session) OnArrival(f func()) {
	s.mu.Lock()
	s.arrival = f
	s.mu.Unlock()
}

// recvLocked is Recv, called with mu held; it unlocks. It fills in *m rather than returning
// a Message: a Message handed back by value through each call level is spilled and copied with
// wider loads than the stores that wrote it, a store-forwarding stall per level that profiles put
// at several nanoseconds a message.
func (s *Session) recvLocked(ctx context.Context, m *Message) error {
	for {
		if s.takeLocked(m) {
			if s.recvWaiting > 0 && s.recvReadyLocked() {
				s.kickRecvLocked() // another receiver can go too
			}
			s.unlockNotify()
			return nil
		}
		if s.state.ended() {
			// Nothing more will arrive, no FAIL will be acknowledged, and a receiver waiting for
			// another to settle had better hear that the session is over.
			err := s.err
			s.unlockNotify()
			return err
		}
		s.recvWaiting++
		s.unlockNotify()
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
			if s.recvWaiting > 0 && s.recvReadyLocked() {
				s.kickRecvLocked() // the kick we may have taken belongs to another receiver
			}
			s.mu.Unlock()
			return err
		}
	}
}

// recvReadyLocked reports whether a Recv would return a message now.
func (s *Session) recvReadyLocked() bool {
	if s.discard {
		return false
	}
	if len(s.requeued) > 0 {
		return true
	}
	if s.held >= s.maxInFlight || s.dTake == s.dDone {
		return false
	}
	d := s.descs[s.dTake&uint64(len(s.descs)-1)]
	return AckLevel(d.flags&levelMask)>>levelShift != AckProcessed || len(s.fails) < maxPendingFailures ||
		d.flags&recCancelled != 0
}

func (s *Session) kickRecvLocked() {
	select {
	case s.recvKick <- struct{}{}:
	default:
	}
}

// takeLocked hands out the next message into *m, if one may go now; otherwise it leaves *m alone.
func (s *Session) takeLocked(m *Message) bool {
	if s.discard {
		return false
	}
	if len(s.requeued) > 0 {
		*m = s.requeued[0]
		s.requeued[0] = Message{}
		s.requeued = s.requeued[1:]
		return true
	}
	for s.held < s.maxInFlight && s.dTake < s.dDone {
		d := &s.descs[s.dTake&uint64(len(s.descs)-1)]
		if d.flags&recCancelled != 0 {
			// The sender gave up on this message: nobody will see it, so it counts as settled.
			d.flags |= recSettled | recReleased
			s.dTake++
			s.advanceLocked()
			continue
		}
		level := AckLevel(d.flags&levelMask) >> levelShift
		if level == AckProcessed && len(s.fails) >= maxPendingFailures {
			return false // the peer must acknowledge our FAIL reports first
		}
		mid := s.dTake + 1
		n := uint64(d.n)
		data := s.recordData(s.rTake, n, mid)
		s.rTake += n
		s.dTake++
		s.held++
		if level != AckProcessed {
			d.flags |= recSettled
		}
		s.advanceLocked()
		if level == AckDelivered && d.flags&recPrompt != 0 {
			s.ackMovedLocked(true) // the sender waits for exactly this
		}
		s.stats.MessagesReceived++
		s.stats.BytesReceived += n
		m.ID, m.Data, m.Level, m.Resent = mid, data, level, d.flags&recResent != 0
		return true
	}
	return false
}

// recordData returns the n bytes at off as one slice, copying only when they wrap the ring's
// end. The copy must stay valid while message mid is held; one spare buffer serves, since at most
// one message at a time straddles the end of the ring.
func (s *Session) recordData(off, n, mid uint64) []byte {
	a, b := s.rbuf.span(off, off+n)
	if len(b) == 0 {
		return a[:n:n]
	}
	var d []byte
	if s.wrapMID == 0 && uint64(cap(s.wrapBuf)) >= n {
		d = s.wrapBuf[:n:n]
	} else {
		d = make([]byte, n)
		if s.wrapMID == 0 {
			s.wrapBuf = d
		}
	}
	if s.wrapMID == 0 {
		s.wrapMID = mid
	}
	copy(d[copy(d, a):], b)
	return d
}

// advanceLocked moves pMID over the settled prefix and frees the released prefix of the received
// buffer, giving its space back to the peer as credit.
func (s *Session) advanceLocked() {
	mask := uint64(len(s.descs) - 1)
	moved := false
	for s.dSettle < s.dTake && s.descs[s.dSettle&mask].flags&recSettled != 0 {
		s.dSettle++
		moved = true
	}
	freed := false
	for s.dRel < s.dTake && s.descs[s.dRel&mask].flags&recReleased != 0 {
		d := &s.descs[s.dRel&mask]
		s.rHead += uint64(d.n)
		s.releasedCost += uint64(d.cost)
		s.dRel++
		freed = true
	}
	if freed {
		s.ackMovedLocked(s.releasedCost+s.peer.window-s.sentAck.credit >= s.peer.window/ackUrgentFactor)
	} else if moved || s.dTake != s.sentAck.dMID {
		s.ackMovedLocked(false)
	}
}

// heldLocked returns the descriptor of message mid if the application holds it.
func (s *Session) heldLocked(mid uint64) (*recDesc, error) {
	if s.state == StateMoved {
		return nil, s.err // the message is held where the session moved, and comes out of Recv there
	}
	if mid == 0 || mid-1 < s.dRel || mid-1 >= s.dTake {
		return nil, ftslerr.Errorf("%w: message %d (not received yet, or already settled)", ErrNotHeld, mid)
	}
	d := &s.descs[(mid-1)&uint64(len(s.descs)-1)]
	if d.flags&recReleased != 0 {
		return nil, ftslerr.Errorf("%w: message %d was already settled", ErrNotHeld, mid)
	}
	return d, nil
}

// Settle ends the application's hold on message mid, which Recv returned, and gives its space
// back: its Data must not be used afterwards. Every message Recv returns must be settled, in any
// order. For a message that asked for AckProcessed, failure nil means processed and an error means
// it failed, with the error's text as the reason; the sender's Observer hears which, even across
// connection crashes. For other messages failure is ignored. The peer's processed mark (pMID)
// advances over the messages settled without a gap.
func (s *Session) Settle(mid uint64, failure error) error {
	s.mu.Lock()
	err := s.settleLocked(mid, failure)
	s.unlockNotify()
	return err
}

func (s *Session) settleLocked(mid uint64, failure error) error {
	d, err := s.heldLocked(mid)
	if err != nil {
		return err
	}
	for i := range s.requeued {
		if s.requeued[i].ID == mid {
			s.requeued = append(s.requeued[:i], s.requeued[i+1:]...)
			break
		}
	}
	if d.flags&recSettled == 0 && failure != nil {
		s.fails = append(s.fails, failReport{seq: s.nextFSeq, mid: mid, reason: clipReason(failure.Error())})
		s.nextFSeq++
		s.ackMovedLocked(true)
	}
	prompt := d.flags&recSettled == 0 && d.flags&recPrompt != 0
	d.flags |= recSettled | recReleased
	s.held--
	if s.wrapMID == mid {
		s.wrapMID = 0
	}
	s.advanceLocked()
	if prompt && s.dSettle >= mid {
		s.ackMovedLocked(true) // the sender waits for exactly this, and the processed mark passed it
	}
	if s.recvWaiting > 0 {
		s.kickRecvLocked()
	}
	return nil
}

// Requeue gives back message mid, which Recv returned and which is not settled: the next Recv
// returns it again, before any new message, with the same ID and Data. It stays held meanwhile
// (its Data valid, counted in MaxInFlight). The oneway layer redelivers with it.
func (s *Session) Requeue(mid uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.heldLocked(mid)
	if err != nil {
		return err
	}
	for _, m := range s.requeued {
		if m.ID == mid {
			return ftslerr.Errorf("%w: message %d is already requeued", ErrNotHeld, mid)
		}
	}
	// Find the message's bytes: the held messages lie in order from rHead.
	mask := uint64(len(s.descs) - 1)
	off := s.rHead
	for k := s.dRel; k < mid-1; k++ {
		off += uint64(s.descs[k&mask].n)
	}
	n := uint64(d.n)
	var data []byte
	if a, b := s.rbuf.span(off, off+n); len(b) == 0 {
		data = a[:n:n]
	} else if s.wrapMID == mid {
		data = s.wrapBuf[:n:n]
	} else {
		data = make([]byte, n)
		copy(data[copy(data, a):], b)
	}
	s.requeued = append(s.requeued, Message{ID: mid, Data: data, Level: AckLevel(d.flags&levelMask) >> levelShift,
		Resent: d.flags&recResent != 0})
	if s.recvWaiting > 0 {
		s.kickRecvLocked()
	}
	return nil
}

// SetMaxInFlight changes how many received messages the application may hold at once (see
// Config.MaxInFlight). Raising it lets waiting Recv calls go on.
func (s *Session) SetMaxInFlight(n int) error {
	if n < 1 || n > maxMaxInFlight {
		return ftslerr.Errorf("ftsl: MaxInFlight %d is outside [1, %d]", n, maxMaxInFlight)
	}
	s.mu.Lock()
	s.maxInFlight = n
	if s.recvWaiting > 0 {
		s.kickRecvLocked()
	}
	s.mu.Unlock()
	return nil
}

// ackLocked is the ack block to send now. pMID stops short of every failure not yet written on
// this link, so the peer always reads a FAIL before the pMID that passes it. (Messages may be
// settled out of order, so the unwritten failures are not in MID order.)
func (s *Session) ackLocked() ackBlock {
	p := s.dSettle
	for _, f := range s.fails[s.failWritten:] {
		p = min(p, f.mid-1)
	}
	return ackBlock{rPID: s.rPID, dMID: s.dTake, pMID: p, fAck: s.peerFSeq, credit: s.releasedCost + s.peer.window}
}
