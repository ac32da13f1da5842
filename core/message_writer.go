package core

import (
	"context"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// MessageWriter streams one message into a session in chunks, so a large message (a file, say)
// needs no buffer of its own size on the sending side. Other messages wait until it is closed or
// cancelled. The receiver gets the whole message at once, when it is complete.
type MessageWriter struct {
	s     *Session
	ctx   context.Context
	mid   uint64
	level AckLevel
	n     int
	done  bool
	err   error
}

// NewMessage starts a message asking for acknowledgement level. It waits, until ctx ends, for
// the messages queued before it; ctx also bounds every Write. The caller must Close or Cancel the
// writer: until then no other message can be sent on the session.
func (s *Session) NewMessage(ctx context.Context, level AckLevel) (*MessageWriter, error) {
	if level > AckProcessed {
		return nil, ftslerr.Errorf("ftsl: invalid ack level %d", level)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.sendableLocked(0); err != nil {
		return nil, err
	}
	if s.streamOpen || len(s.waiters) > 0 {
		if err := s.waitRoomLocked(ctx, 0, false); err != nil {
			return nil, err
		}
		if err := s.sendableLocked(0); err != nil {
			s.wakeSendersLocked()
			return nil, err
		}
	}
	s.streamOpen = true
	s.streamLevel = level
	w := &MessageWriter{s: s, ctx: ctx, mid: s.nextMID, level: level}
	s.nextMID++
	return w, nil
}

// ID is the message ID the message will have.
func (w *MessageWriter) ID() uint64 { return w.mid }

// Write appends p to the message, in chunks of at most MaxFramePayload bytes. It blocks while
// the sent buffer is full. If the message would grow past the size the peer accepts, Write
// cancels it and returns ErrMessageTooLarge. After any other error, call Cancel.
func (w *MessageWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, w.closedErr()
	}
	if w.n+len(p) > w.s.maxSendSize() {
		err := ftslerr.Errorf("%w: message would exceed %d bytes; it was cancelled", ErrMessageTooLarge, w.s.maxSendSize())
		_ = w.Cancel()
		w.err = err
		return 0, err
	}
	written := 0
	for len(p) > 0 {
		n := min(len(p), MaxFramePayload)
		if err := w.append(p[:n], dataFlagsFor(w.level, false)); err != nil {
			return written, err
		}
		w.n += n
		written += n
		p = p[n:]
	}
	return written, nil
}

// Close ends the message: the receiver can now read it.
func (w *MessageWriter) Close() error {
	if w.done {
		return w.closedErr()
	}
	err := w.append(nil, dataFlagsFor(w.level, true))
	if err == nil {
		w.s.mu.Lock()
		w.s.stats.MessagesSent++
		w.s.stats.BytesSent += uint64(w.n)
		w.s.mu.Unlock()
	}
	w.finish(err)
	return err
}

// Cancel abandons the message: the receiver drops what it got and never sees it. The message ID
// is used up.
func (w *MessageWriter) Cancel() error {
	if w.done {
		return w.closedErr()
	}
	err := w.append(nil, dataFlagsFor(w.level, true)|flagCancel)
	w.finish(err)
	return err
}

func (w *MessageWriter) closedErr() error {
	if w.err != nil {
		return w.err
	}
	return ftslerr.Errorf("ftsl: message %d already ended", w.mid)
}

func (w *MessageWriter) finish(err error) {
	w.done = true
	w.err = err
	s := w.s
	s.mu.Lock()
	s.streamOpen = false
	s.wakeSendersLocked()
	s.wakeWriterLocked()
	s.mu.Unlock()
}

// append adds one frame of the message, waiting for room.
func (w *MessageWriter) append(p []byte, flags uint8) error {
	s := w.s
	need := frameCost(len(p))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.ended() {
		w.done = true
		s.streamOpen = false
		w.err = s.err
		return s.err
	}
	// A cancel never waits: it must be able to end a stream whose Write failed on ctx, so it may
	// overshoot the buffer bound by one empty frame.
	if flags&flagCancel == 0 && !s.roomLocked(need, true) {
		if err := s.waitRoomLocked(w.ctx, need, true); err != nil {
			return err
		}
	}
	if !s.growSentLocked(int(need), flags&flagCancel != 0) {
		return errSendMemory
	}
	s.appendFrameLocked(flags, w.mid, nil, p, false)
	s.wakeWriterLocked()
	return nil
}

func (s *Session) maxSendSize() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peer.maxMessage
}
