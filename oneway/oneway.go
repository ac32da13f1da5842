// Package oneway is FTSL's reliable one-way messaging: Send returns at once with a Ticket, and
// the ticket later tells what became of the message, without the sender ever waiting for the
// receiver.
//
// Each message asks for an acknowledgement level:
//
//   - AckNone: the ticket completes (delivered) once the peer's session layer has the message
//     and it left the sent buffer. No event is raised.
//   - AckDelivered: the ticket completes (delivered) once the peer application was handed the
//     message.
//   - AckProcessed: the ticket is delivered, then completes as processed once the peer
//     application confirms the message, or as failed, with the receiver's reason, once the
//     receiver gave up on it after MaxAttempts attempts.
//
// The receiver takes messages with Recv, or with a handler (Handle). A message that asked for
// AckProcessed and is not confirmed (Reject is called, the handler returns an error or panics,
// or, with MaxInFlight 1, Recv is called again) is delivered again, with Redelivered set and its
// attempt count, up to MaxAttempts; then the receiver moves on and the sender's ticket fails.
// Refuse fails it for good at once.
//
// Acknowledgements are cumulative and ride on other traffic (see core/PROTOCOL.md), so asking for
// them costs almost nothing, and none is lost when a connection breaks. Every ticket ends: if the
// session closes or is lost first, its pending tickets fail with ErrSessionClosed or
// ErrSessionLost.
package oneway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// AckLevel says what a message's sender wants to hear back about it.
type AckLevel = core.AckLevel

// Acknowledgement levels.
const (
	AckNone      = core.AckNone
	AckDelivered = core.AckDelivered
	AckProcessed = core.AckProcessed
)

// Flusher defers the writer wake-ups of sends to many sessions until its Flush: see core.Flusher,
// Session.TrySendSharedDeferred and Session.PostSharedDeferred. The caller must Flush after its
// last deferred send and before anything that can block.
type Flusher = core.Flusher

// Status is where a sent message is: pending, then delivered, then processed or failed.
type Status = events.Status

// Ticket statuses.
const (
	StatusPending   = events.StatusPending
	StatusDelivered = events.StatusDelivered
	StatusProcessed = events.StatusProcessed
	StatusFailed    = events.StatusFailed
)

// Errors. The session errors are core's, so errors.Is works across the layers.
var (
	ErrSessionClosed   = core.ErrSessionClosed
	ErrSessionLost     = core.ErrSessionLost
	ErrSessionMoved    = core.ErrSessionMoved
	ErrBufferFull      = core.ErrBufferFull
	ErrMessageTooLarge = core.ErrMessageTooLarge

	// ErrRejected matches a ticket's error when the receiving application failed the message:
	// the error is a *RejectedError carrying the receiver's reason.
	ErrRejected = errors.New("ftsl: rejected by the receiver")

	// ErrNotConfirmed is the reason recorded for an attempt the receiver neither confirmed nor
	// rejected before it asked for the next message.
	ErrNotConfirmed = errors.New("ftsl: not confirmed before the next Recv")

	// ErrHandlerPanic is the reason recorded for an attempt whose handler panicked.
	ErrHandlerPanic = errors.New("ftsl: handler panicked")

	// ErrNotCurrent is returned by Confirm and Reject on a delivery that is no longer the one the
	// receiver holds (it was settled, or a later message was taken).
	ErrNotCurrent = errors.New("ftsl: delivery already settled or superseded")

	// ErrDeliveryUsed is returned by RecvInto given a Delivery that is not the zero value: a
	// delivery belongs to one message for good, so it cannot be filled again.
	ErrDeliveryUsed = errors.New("ftsl: RecvInto needs an unused Delivery")
)

// RejectedError is a ticket's error when the receiving application failed the message.
type RejectedError struct {
	Message uint64
	Reason  string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("ftsl: message %d rejected by the receiver: %s", e.Message, e.Reason)
}

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// Config configures a one-way session. The zero value is ready to use.
type Config struct {
	// Core configures the session underneath.
	Core core.Config
	// MaxInFlight bounds the deliveries the application holds at once: returned by Recv and
	// neither confirmed nor rejected. Default 1, the paper's rule: each Recv settles the delivery
	// the previous Recv returned; if it asked for AckProcessed and was neither confirmed nor
	// rejected, that attempt failed (ErrNotConfirmed) and the message comes again. Above 1,
	// deliveries are independent: several goroutines may hold one each, every delivery must be
	// confirmed or rejected (in any order), and Recv waits while MaxInFlight are held. Handle's
	// Concurrency option raises it. It sets Core.MaxInFlight.
	MaxInFlight int
	// MaxAttempts is how many times a message that asked for AckProcessed is delivered before
	// the receiver gives up on it and the sender's ticket fails. Default 3.
	MaxAttempts int
	// Events configures the event dispatcher: queue and channel sizes, and OnPanic, which hears
	// of a panic in an OnEvent callback after it is logged to Core.Logger. Default: events.Config's
	// defaults.
	Events events.Config
}

// DefaultMaxAttempts is MaxAttempts's default.
const DefaultMaxAttempts = 3

func (c Config) withDefaults() (Config, error) {
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MaxAttempts < 0 {
		return c, ftslerr.Errorf("ftsl: invalid oneway Config: MaxAttempts %d", c.MaxAttempts)
	}
	if c.MaxInFlight < 0 {
		return c, ftslerr.Errorf("ftsl: invalid oneway Config: MaxInFlight %d", c.MaxInFlight)
	}
	if c.MaxInFlight > 0 {
		c.Core.MaxInFlight = c.MaxInFlight
	}
	if c.Core.MaxInFlight == 0 {
		c.Core.MaxInFlight = core.DefaultMaxInFlight
	}
	return c, nil
}

// Dial opens a one-way session with the server at addr (see core.Dial).
func Dial(ctx context.Context, addr string, cfg Config) (*Session, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cs, err := core.Dial(ctx, addr, cfg.Core)
	if err != nil {
		return nil, err
	}
	return newSession(cs, &cfg), nil
}

// Listener accepts one-way sessions.
type Listener struct {
	ln  *core.Listener
	cfg Config

	mu       sync.Mutex
	sessions map[uint64]*Session // handed out and not ended: what Export takes
	pending  map[uint64]imported // imported, not yet accepted: their state waits for Accept
}

// Listen listens on the TCP address addr.
func Listen(addr string, cfg Config) (*Listener, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ln, err := core.Listen(addr, cfg.Core)
	if err != nil {
		return nil, err
	}
	return &Listener{ln: ln, cfg: cfg}, nil
}

// NewListener accepts one-way sessions on connections from ln.
func NewListener(ln net.Listener, cfg Config) (*Listener, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cl, err := core.NewListener(ln, cfg.Core)
	if err != nil {
		return nil, err
	}
	return &Listener{ln: cl, cfg: cfg}, nil
}

// Accept waits for a new session.
func (l *Listener) Accept(ctx context.Context) (*Session, error) {
	cs, err := l.ln.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return l.wrap(cs), nil
}

// Addr is the address the listener listens on.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops listening and aborts the listener's sessions (see core.Listener.Close).
func (l *Listener) Close() error { return l.ln.Close() }

// now is the clock events are stamped with.
var now = time.Now
