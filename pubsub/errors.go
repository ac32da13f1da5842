package pubsub

import (
	"errors"
	"strings"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub/internal/subjects"
)

// Errors. The session errors are oneway's (and core's), so errors.Is works across the layers.
var (
	// ErrInvalidSubject is returned for a subject, pattern or queue name that breaks the rules.
	ErrInvalidSubject = subjects.ErrInvalidSubject

	// ErrPermission is returned when the hub refuses what the client may not do: connect,
	// publish on a subject, or subscribe to a pattern.
	ErrPermission = errors.New("ftsl: permission denied")

	// ErrLimit is returned when the hub refuses a request over a limit: too many
	// subscriptions, a subject or a message too long.
	ErrLimit = errors.New("ftsl: over the hub's limit")

	// ErrSlowConsumer is a subscriber's failure when the hub could not hand it a message in
	// time: its session's buffer stayed full.
	ErrSlowConsumer = errors.New("ftsl: slow consumer")

	// ErrNoResponders is returned by Request when no subscriber matched the subject.
	ErrNoResponders = errors.New("ftsl: no responders")

	// ErrUnsubscribed is the failure of a message that reached a subscription after it ended.
	ErrUnsubscribed = errors.New("ftsl: unsubscribed")

	// ErrClosed is returned by calls on a client or hub that was closed.
	ErrClosed = errors.New("ftsl: pubsub closed")

	ErrSessionClosed = oneway.ErrSessionClosed
	ErrSessionLost   = oneway.ErrSessionLost
	ErrBufferFull    = oneway.ErrBufferFull
)

// A hub's refusal travels as the reason of a rejected message; its first words name the kind, so
// the client can give back the error that says what to do.
var reasonErrors = []struct {
	prefix string
	err    error
}{
	{"permission denied", ErrPermission},
	{"invalid subject", ErrInvalidSubject},
	{"over the hub's limit", ErrLimit},
	{"slow consumer", ErrSlowConsumer},
	{"session lost", ErrSessionLost},
	{"session closed", ErrSessionClosed},
	{"unsubscribed", ErrUnsubscribed},
	{"message too large", oneway.ErrMessageTooLarge},
	{"pubsub closed", ErrClosed},
}

// refusal is the reason a hub sends for err: its sentinel's words first.
func refusal(sentinel error, detail string) string {
	words := strings.TrimPrefix(sentinel.Error(), "ftsl: ")
	if detail == "" {
		return words
	}
	return words + ": " + strings.TrimPrefix(ftslerr.Clean(detail), "ftsl: ")
}

// reasonError turns a reason received from the hub or a subscriber back into an error that
// matches the sentinel its first words name, if any.
func reasonError(reason string) error {
	// A subscriber's reason is its error's whole text: Reject(ErrUnsubscribed) says "ftsl: ...".
	words := strings.TrimPrefix(reason, "ftsl: ")
	for _, r := range reasonErrors {
		if strings.HasPrefix(words, r.prefix) {
			rest := strings.TrimPrefix(strings.TrimPrefix(words, r.prefix), ": ")
			if rest == "" {
				return r.err
			}
			return ftslerr.Errorf("%w: %s", r.err, ftslerr.Clean(rest))
		}
	}
	return errors.New(reason)
}

// ticketError is what a oneway ticket's failure means to pubsub: the hub's reason, if it refused.
func ticketError(err error) error {
	var rej *oneway.RejectedError
	if errors.As(err, &rej) {
		return reasonError(rej.Reason)
	}
	return err
}
