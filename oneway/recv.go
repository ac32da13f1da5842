package oneway

import (
	"context"
	"errors"
	"fmt"
)

// Delivery is a received message. The Delivery and its Data stay valid until the next Recv that
// moves on to another message (redelivering the same message keeps them valid); copy Data to
// keep it longer.
type Delivery struct {
	// Data is the message.
	Data []byte
	// ID is the message ID: the sender's Ticket.ID for the same message.
	ID uint64
	// Level is the acknowledgement the sender asked for. Only AckProcessed messages need
	// Confirm; the others count as handled once received.
	Level AckLevel
	// Redelivered reports that this message was delivered before and not confirmed.
	Redelivered bool
	// Attempt counts deliveries of this message: 1, then 2, 3... up to MaxAttempts.
	Attempt int

	s   *Session
	gen uint64
}

// Confirm reports that the message was processed; the sender's ticket ends as processed. For a
// message that did not ask for AckProcessed it does nothing.
func (d *Delivery) Confirm() error { return d.s.settle(d, nil) }

// Reject reports that this attempt to process the message failed. The message is delivered
// again by the next Recv (or to the handler), until MaxAttempts attempts failed; then the
// receiver moves on and the sender's ticket fails with reason. For a message that did not ask for
// AckProcessed it does nothing: no one is waiting to hear.
func (d *Delivery) Reject(reason error) error {
	if reason == nil {
		reason = errors.New("rejected")
	}
	return d.s.settle(d, reason)
}

// Recv returns the next message, waiting until one arrives or ctx ends. If the message Recv
// returned last asked for AckProcessed and was neither confirmed nor finally rejected, Recv
// returns it again (the paper's rule: an unconfirmed message is redelivered) until MaxAttempts
// deliveries; then the sender's ticket fails with the last reason and the next message comes.
// After the session ends, Recv returns the messages already received, then the session's error.
// Recv and Handle must not be used together.
func (s *Session) Recv(ctx context.Context) (*Delivery, error) {
	select {
	case s.recvSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.recvSem }()

	s.rmu.Lock()
	if s.held && !s.settled {
		// The application asked for more without confirming: the attempt failed.
		if !s.failed {
			s.reason = ErrNotConfirmed
		}
		if s.attempt < s.cfg.MaxAttempts {
			s.attempt++
			s.failed = false
			s.gen++
			d := &s.delivery
			*d = Delivery{Data: s.heldMsg.Data, ID: s.heldMsg.ID, Level: s.heldMsg.Level,
				Redelivered: true, Attempt: s.attempt, s: s, gen: s.gen}
			s.rmu.Unlock()
			return d, nil
		}
		if err := s.cs.Settle(s.heldMsg.ID, s.reason); err != nil {
			s.rmu.Unlock()
			return nil, err
		}
		s.settled = true
	}
	s.held = false
	s.gen++ // deliveries handed out before are no longer current
	s.rmu.Unlock()

	m, err := s.cs.Recv(ctx)
	if err != nil {
		return nil, err
	}

	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.held, s.heldMsg, s.attempt, s.failed, s.reason = true, m, 1, false, nil
	s.settled = m.Level != AckProcessed // core settles the others by itself
	s.gen++
	d := &s.delivery
	*d = Delivery{Data: m.Data, ID: m.ID, Level: m.Level, Attempt: 1, s: s, gen: s.gen}
	return d, nil
}

// settle records the application's verdict on d: nil confirms, an error rejects this attempt.
func (s *Session) settle(d *Delivery, reason error) error {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if !s.held || d.gen != s.gen || d.ID != s.heldMsg.ID {
		return fmt.Errorf("%w: message %d", ErrNotCurrent, d.ID)
	}
	if s.settled {
		if s.heldMsg.Level != AckProcessed {
			return nil
		}
		return fmt.Errorf("%w: message %d was already settled", ErrNotCurrent, d.ID)
	}
	if reason == nil {
		if err := s.cs.Settle(d.ID, nil); err != nil {
			return err
		}
		s.settled = true
		return nil
	}
	if s.failed {
		return fmt.Errorf("%w: attempt %d of message %d was already rejected", ErrNotCurrent, d.Attempt, d.ID)
	}
	s.failed, s.reason = true, reason
	if s.attempt >= s.cfg.MaxAttempts {
		// That was the last attempt: the sender hears the reason now, not at the next Recv.
		if err := s.cs.Settle(d.ID, reason); err != nil {
			return err
		}
		s.settled = true
	}
	return nil
}

// Handle starts delivering messages to handler on a goroutine of the session's own, one at a
// time, in order. A handler that returns nil confirms the message; one that returns an error, or
// panics (the panic is recovered and reported as ErrHandlerPanic, not re-thrown), fails the
// attempt, and the message comes again until MaxAttempts. The context the handler gets ends with
// the session. Handle may be called once, and not together with Recv.
func (s *Session) Handle(handler func(ctx context.Context, d *Delivery) error) error {
	s.rmu.Lock()
	if s.handling {
		s.rmu.Unlock()
		return errors.New("ftsl/oneway: Handle called twice")
	}
	s.handling = true
	s.handlerW.Add(1)
	s.rmu.Unlock()
	go func() {
		defer s.handlerW.Done()
		for {
			// Not s.ctx: messages received before the session ended are still handed over.
			d, err := s.Recv(context.Background())
			if err != nil {
				return
			}
			if err := call(s.ctx, handler, d); err != nil {
				_ = d.Reject(err)
			} else {
				_ = d.Confirm()
			}
		}
	}()
	return nil
}

func call(ctx context.Context, handler func(context.Context, *Delivery) error, d *Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrHandlerPanic, r)
		}
	}()
	return handler(ctx, d)
}
