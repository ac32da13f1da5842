package oneway

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// Delivery is one delivery of a received message: its first, or a later attempt after the
// receiver failed an earlier one. It stays bound to that message and attempt for its whole life:
// once it is confirmed, rejected or superseded by a later attempt, Confirm and Reject on it
// return ErrNotCurrent and touch nothing else. Its Data stays valid until the message is
// confirmed, or rejected for the last time; copy it to keep it longer. Pass a Delivery by
// pointer: a copy does not know when the original was settled.
type Delivery struct {
	// Data is the message.
	Data []byte
	// ID is the message ID: the sender's Ticket.ID for the same message.
	ID uint64
	// Level is the acknowledgement the sender asked for. Only AckProcessed messages are
	// redelivered; for the others Confirm and Reject only say the application is done with Data.
	Level AckLevel
	// Redelivered reports that this message was delivered before and that attempt failed.
	Redelivered bool
	// Attempt counts deliveries of this message: 1, then 2, 3... up to MaxAttempts.
	Attempt int

	s    *Session
	open bool // neither confirmed, rejected nor superseded; guarded by s.rmu
	_    noCopy
}

// noCopy makes go vet's copylocks check flag a copied Delivery: a copy would carry its own idea
// of whether the delivery is still open.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// Confirm reports that the message was processed; the sender's ticket ends as processed. For a
// message that did not ask for AckProcessed it only releases the message.
func (d *Delivery) Confirm() error {
	s := d.s
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if err := d.takeLocked(); err != nil {
		return err
	}
	return s.cs.Settle(d.ID, nil)
}

// Reject reports that this attempt to process the message failed. The message is delivered
// again, to this or another receiver, until MaxAttempts attempts failed; then the receiver moves
// on and the sender's ticket fails with reason. For a message that did not ask for AckProcessed
// it only releases the message: no one is waiting to hear.
func (d *Delivery) Reject(reason error) error {
	if reason == nil {
		reason = errors.New("rejected")
	}
	s := d.s
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if err := d.takeLocked(); err != nil {
		return err
	}
	return s.failLocked(d, reason)
}

// Refuse fails the message for good, whatever attempt this is: it is not delivered again, and
// the sender's ticket fails with reason now. It is for a message that no attempt can process:
// malformed, or refused by a rule. Reject is for a failure another attempt may not repeat.
func (d *Delivery) Refuse(reason error) error {
	if reason == nil {
		reason = errors.New("refused")
	}
	s := d.s
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if err := d.takeLocked(); err != nil {
		return err
	}
	if d.Level != AckProcessed {
		reason = nil // no one is waiting to hear
	}
	return s.cs.Settle(d.ID, reason)
}

// takeLocked closes d, or says why it cannot be settled.
func (d *Delivery) takeLocked() error {
	if !d.open {
		return ftslerr.Errorf("%w: message %d, attempt %d", ErrNotCurrent, d.ID, d.Attempt)
	}
	d.open = false
	if d.s.current.Load() == d {
		d.s.current.Store(nil)
	}
	if d.Attempt > 1 {
		delete(d.s.heldAttempts, d.ID)
	}
	return nil
}

// failLocked records that attempt d failed: the message goes back to be delivered again, or, after
// its last attempt, the sender hears reason.
func (s *Session) failLocked(d *Delivery, reason error) error {
	if d.Level != AckProcessed {
		return s.cs.Settle(d.ID, nil)
	}
	if d.Attempt >= s.cfg.MaxAttempts {
		return s.cs.Settle(d.ID, reason)
	}
	if s.redelivered == nil {
		s.redelivered = make(map[uint64]int)
	}
	s.redelivered[d.ID] = d.Attempt
	return s.cs.Requeue(d.ID)
}

// Recv returns the next delivery, waiting until one is there or ctx ends: a message whose earlier
// attempt failed comes again first, with Redelivered set and its attempt count, then new messages
// in order.
//
// With MaxInFlight 1 (the default), Recv follows the paper's rule: it first settles the delivery
// the previous Recv returned; if that one asked for AckProcessed and was neither confirmed nor
// rejected, the attempt failed with ErrNotConfirmed and the message comes again, until
// MaxAttempts; then the sender's ticket fails with the last reason and the next message comes.
// With MaxInFlight above 1, deliveries are independent: each must be confirmed or rejected, and
// Recv waits while MaxInFlight are held.
//
// After the session ends, Recv returns the messages already received, then the session's error.
// Recv and Handle must not be used together.
func (s *Session) Recv(ctx context.Context) (*Delivery, error) {
	d := new(Delivery)
	if err := s.RecvInto(ctx, d); err != nil {
		return nil, err
	}
	return d, nil
}

// RecvInto is Recv filling d, the caller's, instead of making a Delivery: a receiver that wraps
// each delivery in a value of its own (a pubsub client's message) makes both in one allocation.
// d must be unused (the zero Delivery), and is then as one Recv returns: a delivery stays bound
// to its message for good, so one that was used already is refused with ErrDeliveryUsed.
func (s *Session) RecvInto(ctx context.Context, d *Delivery) error {
	if d == nil || d.s != nil {
		return ErrDeliveryUsed
	}
	settle, reason, err := s.endCurrent()
	if err != nil {
		return err
	}
	var m core.Message
	if settle != 0 {
		m, err = s.cs.SettleAndRecv(ctx, settle, reason)
	} else {
		m, err = s.cs.Recv(ctx)
	}
	if err != nil {
		return err
	}
	s.deliver(d, m)
	return nil
}

// TryRecv is Recv that never waits: ok is false when no delivery is ready now, and err is the
// session's error once it has ended and nothing is left. With OnArrival it lets a server handle
// many sessions' messages without a goroutine each.
func (s *Session) TryRecv() (d *Delivery, ok bool, err error) {
	settle, reason, err := s.endCurrent()
	if err != nil {
		return nil, false, err
	}
	if settle != 0 {
		if err := s.cs.Settle(settle, reason); err != nil {
			return nil, false, err
		}
	}
	m, ok, err := s.cs.TryRecv()
	if !ok {
		return nil, false, err
	}
	d = new(Delivery)
	s.deliver(d, m)
	return d, true, nil
}

// OnArrival has f called, on the connection's reader goroutine, each time messages become ready
// for Recv (see core.Session.OnArrival): a server drains them there with TryRecv.
func (s *Session) OnArrival(f func()) { s.cs.OnArrival(f) }

// endCurrent applies the paper's rule, with MaxInFlight 1, to the delivery the last Recv returned
// if it is still open: asking for the next message ends that attempt. It returns the message to
// settle along with receiving the next one, if any.
func (s *Session) endCurrent() (settle uint64, reason error, err error) {
	if s.current.Load() == nil { // a receiver with MaxInFlight above 1 always
		return 0, nil, nil
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	d := s.current.Load()
	if d == nil {
		return 0, nil, nil
	}
	_ = d.takeLocked()
	switch {
	case d.Level != AckProcessed:
		return d.ID, nil, nil
	case d.Attempt >= s.cfg.MaxAttempts:
		return d.ID, ErrNotConfirmed, nil
	}
	return 0, nil, s.failLocked(d, ErrNotConfirmed)
}

// deliver makes d the delivery of message m: its first attempt, or the next one if it came back.
func (s *Session) deliver(d *Delivery, m core.Message) {
	d.Data, d.ID, d.Level, d.Attempt, d.s, d.open = m.Data, m.ID, m.Level, 1, s, true
	s.rmu.Lock()
	if n, ok := s.redelivered[m.ID]; ok {
		delete(s.redelivered, m.ID)
		d.Attempt, d.Redelivered = n+1, true
		if s.heldAttempts == nil {
			s.heldAttempts = make(map[uint64]int)
		}
		s.heldAttempts[m.ID] = n // an export needs them; first attempts, the common case, need nothing
	}
	if s.inFlight == 1 {
		s.current.Store(d)
	}
	s.rmu.Unlock()
}

// HandleOption configures Handle.
type HandleOption func(*handleConfig)

type handleConfig struct{ workers int }

// Concurrency runs the handler on n goroutines at once (default 1). Messages are handed out in
// order but may finish in any order; the sender still sees processed advance over those finished
// without a gap, and each failure as it comes. It raises MaxInFlight to n if it is lower.
func Concurrency(n int) HandleOption { return func(c *handleConfig) { c.workers = n } }

// Handle delivers messages to handler on goroutines of the session's own (one, unless Concurrency
// says more). A handler that returns nil confirms the message; one that returns an error, or
// panics, fails the attempt, and the message comes again (to any of the goroutines) until
// MaxAttempts. A panic is recovered, reported as ErrHandlerPanic with the panic value and stack
// in the attempt's reason, logged, and never re-thrown. The context the handler gets ends with the
// session. Handle may be called once, and not together with Recv.
func (s *Session) Handle(handler func(ctx context.Context, d *Delivery) error, opts ...HandleOption) error {
	hc := handleConfig{workers: 1}
	for _, o := range opts {
		o(&hc)
	}
	if hc.workers < 1 || hc.workers > maxHandlers {
		return ftslerr.Errorf("ftsl: oneway Handle: Concurrency %d outside [1, %d]", hc.workers, maxHandlers)
	}
	s.rmu.Lock()
	if s.handling {
		s.rmu.Unlock()
		return errors.New("ftsl: oneway Handle called twice")
	}
	s.handling = true
	if hc.workers > s.inFlight {
		if err := s.cs.SetMaxInFlight(hc.workers); err != nil {
			s.rmu.Unlock()
			return err
		}
		s.inFlight = hc.workers
	}
	s.handlerW.Add(hc.workers)
	s.rmu.Unlock()
	ctx := s.handlerContext()
	for range hc.workers {
		go func() {
			defer s.handlerW.Done()
			for {
				// Not s.ctx: messages received before the session ended are still handed over.
				d, err := s.Recv(context.Background())
				if err != nil {
					return
				}
				if !s.enterHandler() {
					return // the session went on elsewhere with d, which comes again there
				}
				if err := s.call(ctx, handler, d); err != nil {
					_ = d.Reject(err)
				} else {
					_ = d.Confirm()
				}
				s.leaveHandler()
			}
		}()
	}
	return nil
}

// enterHandler waits while the gate is closed (a listener's Pause), then counts a handler call
// under way. It reports false if the session ended meanwhile: a delivery taken and not handled
// then goes with the exported state and is handed out again where it is imported.
func (s *Session) enterHandler() bool {
	s.rmu.Lock()
	for s.gate != nil {
		gate := s.gate
		s.rmu.Unlock()
		select {
		case <-gate:
		case <-s.cs.Done():
			return false
		}
		s.rmu.Lock()
	}
	s.handing++
	s.rmu.Unlock()
	return true
}

func (s *Session) leaveHandler() {
	s.rmu.Lock()
	s.handing--
	if s.handing == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	s.rmu.Unlock()
}

// closeGate stops Handle's goroutines from starting handler calls, and waits for those under way
// to return, or ctx to end.
func (s *Session) closeGate(ctx context.Context) error {
	s.rmu.Lock()
	if s.gate == nil {
		s.gate = make(chan struct{})
	}
	if s.handing == 0 {
		s.rmu.Unlock()
		return nil
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.rmu.Unlock()
	select {
	case <-idle:
		return nil
	case <-s.cs.Done():
		return nil
	case <-ctx.Done():
		return ftslerr.Errorf("ftsl: oneway pause: session %d: handlers still running: %w", s.id, ctx.Err())
	}
}

// openGate undoes closeGate.
func (s *Session) openGate() {
	s.rmu.Lock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
	s.rmu.Unlock()
}

// maxHandlers bounds Handle's Concurrency: a goroutine each.
const maxHandlers = 1 << 12

func (s *Session) call(ctx context.Context, handler func(context.Context, *Delivery) error, d *Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = ftslerr.Errorf("%w: %v", ErrHandlerPanic, r)
			s.cfg.Core.Logger.Error().Uint64("session", s.id).Uint64("message", d.ID).
				Str("panic", fmt.Sprint(r)).Bytes("stack", debug.Stack()).Msg("oneway handler panicked; attempt failed")
		}
	}()
	return handler(ctx, d)
}
