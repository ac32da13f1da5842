package core

import (
	"context"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// Send queues msg as one message, asking the peer for acknowledgement level. It returns the
// message ID once msg is copied into the sent buffer; msg may be reused at once. It blocks while
// the buffer is full, until ctx ends. Messages longer than MaxFramePayload are sent in chunks.
func (s *Session) Send(ctx context.Context, msg []byte, level AckLevel) (uint64, error) {
	return s.send(ctx, nil, msg, level, true, false, nil)
}

// TrySend is Send that never blocks: it returns ErrBufferFull when msg does not fit now.
func (s *Session) TrySend(msg []byte, level AckLevel) (uint64, error) {
	return s.send(context.Background(), nil, msg, level, false, false, nil)
}

// SendParts is Send of the message prefix followed by msg, both copied: a caller with a header
// and a body need not join them first.
func (s *Session) SendParts(ctx context.Context, prefix, msg []byte, level AckLevel) (uint64, error) {
	return s.send(ctx, prefix, msg, level, true, false, nil)
}

// TrySendParts is SendParts that never blocks: it returns ErrBufferFull when the message does not
// fit now.
func (s *Session) TrySendParts(prefix, msg []byte, level AckLevel) (uint64, error) {
	return s.send(context.Background(), prefix, msg, level, false, false, nil)
}

// SendShared is Send for a message sent to many sessions at once (a fan-out): the message is
// prefix followed by shared, as the peer receives it. prefix is copied, as Send copies; shared is
// not, but kept by reference, once for all the sessions it is sent on, until the peer
// acknowledged it, and sent again from there after a reconnection: the caller must not change
// shared afterwards, ever. A per-session header goes in prefix (up to 255 bytes stay beside the
// reference; a longer one is copied with the payload). Parts of shared under 1 KiB are copied
// anyway, which is cheaper. The message counts in full against SendBufferBytes and the peer's
// credit.
func (s *Session) SendShared(ctx context.Context, prefix, shared []byte, level AckLevel) (uint64, error) {
	return s.send(ctx, prefix, shared, level, true, true, nil)
}

// TrySendShared is SendShared that never blocks: it returns ErrBufferFull when the message does
// not fit now, so one slow receiver never holds up a fan-out to the others.
func (s *Session) TrySendShared(prefix, shared []byte, level AckLevel) (uint64, error) {
	return s.send(context.Background(), prefix, shared, level, false, true, nil)
}

// TrySendSharedDeferred is TrySendShared that leaves waking the session's writer to f: the
// message is in the sent buffer when it returns, as with TrySendShared, but goes on the wire only
// once f.Flush is called (or once the session's deferred bytes reach a bound). The caller must
// call f.Flush (see Flusher). With a nil f it is TrySendShared.
func (s *Session) TrySendSharedDeferred(f *Flusher, prefix, shared []byte, level AckLevel) (uint64, error) {
	return s.send(context.Background(), prefix, shared, level, false, true, f)
}

// send queues prefix‖msg. Without wait (TrySend) it fails with ErrBufferFull rather than block. (A
// sentinel context cannot say this: context.Background() values compare equal.) With shared,
// long enough parts of msg are kept by reference. With f, the writer's wake-up is left to f.
func (s *Session) send(ctx context.Context, prefix, msg []byte, level AckLevel, wait, shared bool, f *Flusher) (uint64, error) {
	if level > AckProcessed {
		return 0, ftslerr.Errorf("ftsl: invalid ack level %d", level)
	}
	n := len(prefix) + len(msg)
	cost := messageCost(n)
	s.mu.Lock()
	if err := s.sendableLocked(n); err != nil {
		s.mu.Unlock()
		return 0, err
	}
	if !s.roomLocked(cost, false) || len(s.waiters) > 0 {
		if !wait {
			s.mu.Unlock()
			return 0, ErrBufferFull
		}
		if err := s.waitRoomLocked(ctx, cost, false); err != nil {
			s.mu.Unlock()
			return 0, err
		}
		if err := s.sendableLocked(n); err != nil {
			s.wakeSendersLocked()
			s.mu.Unlock()
			return 0, err
		}
	}
	if !s.growSentLocked(keptBytes(prefix, msg, shared), false) {
		s.wakeSendersLocked()
		s.mu.Unlock()
		return 0, errSendMemory
	}
	// A quiet link (everything sent so far acknowledged) is the request-reply pattern, where
	// latency counts; a busy one is streaming, where the writer's batching counts.
	quiet := s.sHead == s.sTail
	mid := s.nextMID
	s.nextMID++
	flags := uint8(level) << levelShift
	if quiet && level != AckNone {
		flags |= flagPrompt // someone waits for this ack, and nothing else will bring it sooner
	}
	if n <= MaxFramePayload {
		// One frame, the common case, without messageFrames' closure.
		external := shared && len(msg) >= minSharedPayload && len(prefix) <= maxKeptPrefix
		s.appendFrameLocked(flags|flagEOM, mid, prefix, msg, external)
	} else {
		messageFrames(prefix, msg, func(pre, rest []byte, eom, external bool) {
			f := flags
			if eom {
				f |= flagEOM
			}
			s.appendFrameLocked(f, mid, pre, rest, shared && external)
		})
	}
	s.stats.MessagesSent++
	s.stats.BytesSent += uint64(n)
	s.wakeSendersLocked()
	if f != nil {
		s.deferLocked(f, cost)
	} else if l := s.link; quiet && s.writerIdle && s.writingOn == nil && l != nil && l.raw != nil {
		s.writeInlineLocked(l)
	} else {
		s.wakeWriterLocked()
	}
	s.unlockNotify()
	return mid, nil
}

// sendableLocked says why a message of n bytes cannot be sent now, if it cannot.
func (s *Session) sendableLocked(n int) error {
	switch s.state {
	case StateClosing, StateClosed:
		return ftslerr.Errorf("%w: no new messages once Close or Abort was called", ErrSessionClosed)
	case StateLost, StateMoved:
		return s.err
	}
	if n > s.peer.maxMessage {
		return ftslerr.Errorf("%w: %d bytes, the limit is %d", ErrMessageTooLarge, n, s.peer.maxMessage)
	}
	return nil
}

// roomLocked reports whether need more bytes fit in the sent buffer now.
func (s *Session) roomLocked(need uint64, stream bool) bool {
	if s.streamOpen && !stream {
		return false
	}
	return s.bufferedLocked()+need <= uint64(s.cfg.SendBufferBytes)
}

// waitRoomLocked waits, in FIFO order with other senders, until need bytes fit. It returns with
// mu held, and with the waiter removed from the queue.
func (s *Session) waitRoomLocked(ctx context.Context, need uint64, stream bool) error {
	w := &sendWaiter{ch: make(chan struct{}, 1), need: need, stream: stream}
	if stream {
		s.waiters = append([]*sendWaiter{w}, s.waiters...)
	} else {
		s.waiters = append(s.waiters, w)
	}
	s.wakeSendersLocked()
	for {
		s.mu.Unlock()
		var err error
		select {
		case <-w.ch:
		case <-ctx.Done():
			err = ctx.Err()
		case <-s.ended:
		}
		s.mu.Lock()
		if err == nil && s.state.ended() {
			err = s.err
		}
		if err == nil && s.waiters[0] == w && s.roomLocked(need, stream) {
			s.waiters = s.waiters[1:]
			return nil
		}
		if err != nil {
			for i, x := range s.waiters {
				if x == w {
					s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
					break
				}
			}
			s.wakeSendersLocked()
			return err
		}
	}
}

// wakeSendersLocked lets the first waiting sender go if it fits now.
func (s *Session) wakeSendersLocked() {
	if len(s.waiters) == 0 {
		return
	}
	w := s.waiters[0]
	if s.roomLocked(w.need, w.stream) || s.state.ended() {
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
}

// wakeWriterLocked wakes the writer if it sleeps; a busy writer looks again before sleeping.
func (s *Session) wakeWriterLocked() {
	if s.writerIdle {
		s.writerIdle = false
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// ackMovedLocked notes that the ack state changed; the writer sends it within AckDelay, or at
