package oneway

import (
	"context"
	"sync"
	"sync/atomic"
)

// Ticket is what Send returns: a handle on what becomes of one message. It ends exactly once:
// delivered (AckNone, AckDelivered), processed (AckProcessed), or failed. All methods are safe
// for concurrent use.
type Ticket struct {
	mid   uint64
	level AckLevel
	state atomic.Uint32 // the Status, with endedBit once final

	mu    sync.Mutex
	done  chan struct{} // made on demand: most tickets are never waited on
	err   error         // set before endedBit
	onEnd func(*Ticket) // OnEnd's; taken by the session when the ticket ends
	// OnDelivered's, taken by the session when the receiver has the message; delivered says it
	// had it (a ticket may end failed after that, or without it).
	onDelivered func(*Ticket)
	delivered   bool
}

const endedBit = 1 << 8

// closedChan is the Done channel of every ticket that had ended before anyone asked for it.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// ID is the message ID: the peer's Delivery.ID for the same message.
func (t *Ticket) ID() uint64 { return t.mid }

// Level is the acknowledgement level the message asked for.
func (t *Ticket) Level() AckLevel { return t.level }

// Status is what is known now: pending, delivered, processed or failed (the paper's getStatus).
func (t *Ticket) Status() Status { return Status(t.state.Load() &^ endedBit) }

// Done is closed when the ticket has ended.
func (t *Ticket) Done() <-chan struct{} {
	if t.ended() {
		return closedChan
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended() {
		return closedChan
	}
	if t.done == nil {
		t.done = make(chan struct{})
	}
	return t.done
}

// Wait blocks until the ticket ends or ctx does (the paper's blockingGetStatus). It returns the
// final status and Err; if ctx ends first, the current status and ctx's error.
func (t *Ticket) Wait(ctx context.Context) (Status, error) {
	select {
	case <-t.Done():
		return t.Status(), t.Err()
	case <-ctx.Done():
		return t.Status(), ctx.Err()
	}
}

// Err says why the message failed: a *RejectedError with the receiver's reason, or an error
// matching ErrSessionClosed or ErrSessionLost. It is nil unless the status is failed.
func (t *Ticket) Err() error {
	if !t.ended() {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

func (t *Ticket) ended() bool { return t.state.Load()&endedBit != 0 }

// OnEnd has f called once, when the ticket ends: on the goroutine of the session that learned the
// outcome (its connection's reader, usually), after the session's own locks are released; or at
// once if the ticket has ended already. f must return quickly: the session's acknowledgements
// wait for it. It suits code that follows many tickets without a goroutine each (a pubsub hub
// adding up a publish's outcome). A second call replaces the first function.
func (t *Ticket) OnEnd(f func(*Ticket)) {
	t.mu.Lock()
	if t.ended() {
		t.mu.Unlock()
		f(t)
		return
	}
	t.onEnd = f
	t.mu.Unlock()
}

// OnDelivered has f called once, when the receiver's application was handed the message: on the
// same terms as OnEnd, and before it; at once if that happened already. It is never called for a
// message the receiver never had. For a ticket at AckProcessed it tells the delivery apart from
// the end; at AckDelivered the two come together; at AckNone it is never called.
func (t *Ticket) OnDelivered(f func(*Ticket)) {
	t.mu.Lock()
	if t.delivered {
		t.mu.Unlock()
		f(t)
		return
	}
	if !t.ended() {
		t.onDelivered = f
	}
	t.mu.Unlock()
}

// deliveredNow records that the receiver had the message, and returns the OnDelivered function
// for the caller to call once it holds no lock. Called with the session's mu held.
func (t *Ticket) deliveredNow() func(*Ticket) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.delivered = true
	f := t.onDelivered
	t.onDelivered = nil
	return f
}

// advance records progress short of the end. Called with the session's mu held.
func (t *Ticket) advance(st Status) { t.state.Store(uint32(st)) }

// end makes the ticket final, and returns its OnEnd function, for the caller to call once it
// holds no lock. Called with the session's mu held, once.
func (t *Ticket) end(st Status, err error) func(*Ticket) {
	t.mu.Lock()
	t.err = err
	t.state.Store(uint32(st) | endedBit)
	if t.done != nil {
		close(t.done)
	}
	f := t.onEnd
	t.onEnd, t.onDelivered = nil, nil
	t.mu.Unlock()
	return f
}
