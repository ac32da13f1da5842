package pubsub

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub/internal/wire"
)

// AckLevel is what a publisher wants to hear back about a publish (see the package comment).
type AckLevel = oneway.AckLevel

// Acknowledgement levels.
const (
	AckNone      = oneway.AckNone
	AckDelivered = oneway.AckDelivered
	AckProcessed = oneway.AckProcessed
)

// Status is where a publish is: pending, then delivered (every matched subscriber has it),
// processed (every one confirmed it), or failed (the hub refused it, or some share failed).
type Status = events.Status

// Publish statuses.
const (
	StatusPending   = events.StatusPending
	StatusDelivered = events.StatusDelivered
	StatusProcessed = events.StatusProcessed
	StatusFailed    = events.StatusFailed
)

// Outcome is what became of one publish, across its matched subscribers. A queue group counts
// as one subscriber. At AckNone only the hub's acceptance is known: the counts stay zero.
type Outcome struct {
	Matched   int // subscriptions (and queue groups) whose pattern matched the subject
	Delivered int // ...whose application was handed the message
	Processed int // ...whose application confirmed it (AckProcessed)
	Failed    int // ...that did not get it or failed it: len(Failures)
	Failures  []Failure
}

// Failure is one subscriber's failed share of a publish.
type Failure struct {
	Subscriber string // its identity (see Permissions.Identity)
	Reason     string // what it (or the hub) said
	Err        error  // Reason as an error: matches ErrSlowConsumer, ErrSessionLost... where it says so
}

// OutcomeError is a ticket's error when some subscribers failed their share: the publish went to
// the others. errors.Is matches each failure's sentinel (ErrSlowConsumer, ErrSessionLost...).
type OutcomeError struct{ Failures []Failure }

func (e *OutcomeError) Error() string {
	var b strings.Builder
	b.WriteString("ftsl: publish failed at ")
	for i, f := range e.Failures {
		if i == 3 {
			b.WriteString(", ...")
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.Subscriber + " (" + f.Reason + ")")
	}
	return b.String()
}

// Unwrap gives each failure's error, for errors.Is and errors.As.
func (e *OutcomeError) Unwrap() []error {
	errs := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		errs[i] = f.Err
	}
	return errs
}

// Ticket follows one publish, from Publish's return to its outcome. It ends exactly once. All
// methods are safe for concurrent use.
type Ticket struct {
	id    uint64
	level AckLevel
	state atomic.Uint32 // Status, with endedBit once final

	mu        sync.Mutex
	done      chan struct{}
	delivered chan struct{} // Delivered's, made on demand
	reached   bool          // every matched subscriber has it (or the ticket ended)
	out       Outcome
	err       error
	onEnd     func(*Ticket)
}

const endedBit = 1 << 8

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// ID is the publish's number on its client: 1, 2, 3...
func (t *Ticket) ID() uint64 { return t.id }

// Level is the acknowledgement level the publish asked for.
func (t *Ticket) Level() AckLevel { return t.level }

// Status is what is known now.
func (t *Ticket) Status() Status { return Status(t.state.Load() &^ endedBit) }

func (t *Ticket) ended() bool { return t.state.Load()&endedBit != 0 }

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

// Delivered is closed when every matched subscriber was handed the message: with
// ReportDelivered, as soon as the hub knows, before the processed outcome; otherwise, and at
// AckNone and AckDelivered, when the ticket ends (whatever its outcome).
func (t *Ticket) Delivered() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reached {
		return closedChan
	}
	if t.delivered == nil {
		t.delivered = make(chan struct{})
	}
	return t.delivered
}

// reachDelivered records the hub's PROGRESS: every matched subscriber has the message.
func (t *Ticket) reachDelivered() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended() || t.reached {
		return
	}
	t.state.Store(uint32(StatusDelivered))
	t.reachedLocked()
}

func (t *Ticket) reachedLocked() {
	t.reached = true
	if t.delivered != nil {
		close(t.delivered)
	}
}

// Wait blocks until the ticket ends or ctx does. It returns the outcome and nil if every matched
// subscriber got (and, at AckProcessed, processed) the message; the outcome and an *OutcomeError
// if some failed; or the error that made the whole publish fail (ErrPermission, ErrSessionLost...).
// If ctx ends first, it returns the outcome so far and ctx's error.
func (t *Ticket) Wait(ctx context.Context) (Outcome, error) {
	select {
	case <-t.Done():
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out, t.err
}

// OnEnd has f called once when the ticket ends, on the goroutine that ended it (the client's
// dispatcher, usually), with no lock held; or at once if it has ended. It lets code follow many
// publishes without a goroutine each; f must return quickly. A second OnEnd replaces the first
// if the ticket has not ended.
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

// Outcome returns the outcome and error the ticket ended with (Wait's, without waiting); before
// the end, a zero Outcome and nil.
func (t *Ticket) Outcome() (Outcome, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out, t.err
}

// end makes the ticket final, once.
func (t *Ticket) end(out Outcome, err error) {
	t.mu.Lock()
	if t.ended() {
		t.mu.Unlock()
		return
	}
	st := StatusProcessed
	switch {
	case err != nil:
		st = StatusFailed
	case t.level == AckDelivered, t.level == AckNone:
		st = StatusDelivered
	}
	t.out, t.err = out, err
	t.state.Store(uint32(st) | endedBit)
	if t.done != nil {
		close(t.done)
	}
	if !t.reached {
		t.reachedLocked()
	}
	f := t.onEnd
	t.onEnd = nil
	t.mu.Unlock()
	if f != nil {
		f(t)
	}
}

// outcome turns the hub's OUTCOME into the ticket's end.
func outcomeOf(o wire.Outcome) (Outcome, error) {
	out := Outcome{Matched: int(o.Matched), Delivered: int(o.Delivered), Processed: int(o.Processed),
		Failed: len(o.Failures)}
	for _, f := range o.Failures {
		out.Failures = append(out.Failures, Failure{Subscriber: f.Subscriber, Reason: f.Reason, Err: reasonError(f.Reason)})
	}
	if len(out.Failures) > 0 {
		return out, &OutcomeError{Failures: out.Failures}
	}
	return out, nil
}

var errNoOutcome = errors.New("ftsl: the session ended before the hub told the outcome")
