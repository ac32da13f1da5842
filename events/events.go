// Package events is the event type the FTSL layers report through, and a dispatcher that hands
// events to a channel and to callbacks without ever blocking the code that raises them.
//
// It imports nothing else of FTSL, so the oneway and pubsub layers and applications share it.
package events

import (
	"fmt"
	"time"
)

// Kind says what happened.
type Kind uint8

// Event kinds.
const (
	// MessageDelivered: the peer application was handed a message that asked for AckDelivered
	// or AckProcessed.
	MessageDelivered Kind = iota + 1
	// MessageProcessed: the peer application confirmed a message that asked for AckProcessed.
	MessageProcessed
	// MessageFailed: a message that asked for an acknowledgement failed: the peer application
	// rejected it for good (Err carries its reason), or the session ended before it could say.
	MessageFailed
	// SessionReconnecting: the connection died; a client is reconnecting, a server waits for it.
	SessionReconnecting
	// SessionResumed: a new connection carries the session again; nothing was lost.
	SessionResumed
	// SessionLost: the session could not be resumed and is over (Err says why).
	SessionLost
	// SessionClosed: the session was closed or aborted, by either side.
	SessionClosed
	// BufferFull: a send found the sent buffer full (the peer or the network is slower than the
	// sender); Send waited, TrySend failed.
	BufferFull
	// Subscribed: a subscription on Subject was made (pubsub).
	Subscribed
	// Unsubscribed: a subscription on Subject ended (pubsub), by Unsubscribe or with its session.
	Unsubscribed
	// SlowConsumer: a subscriber on Subject could not take a message in time; that message's
	// share failed (pubsub). Err says more.
	SlowConsumer
	// SubscriberLost: a subscriber's session was lost; its pending shares failed and its
	// subscriptions ended (pubsub).
	SubscriberLost
	// PermissionDenied: a client was refused something it is not allowed (pubsub): connecting,
	// publishing or subscribing on Subject. Err says what.
	PermissionDenied
)

func (k Kind) String() string {
	switch k {
	case MessageDelivered:
		return "message delivered"
	case MessageProcessed:
		return "message processed"
	case MessageFailed:
		return "message failed"
	case SessionReconnecting:
		return "session reconnecting"
	case SessionResumed:
		return "session resumed"
	case SessionLost:
		return "session lost"
	case SessionClosed:
		return "session closed"
	case BufferFull:
		return "buffer full"
	case Subscribed:
		return "subscribed"
	case Unsubscribed:
		return "unsubscribed"
	case SlowConsumer:
		return "slow consumer"
	case SubscriberLost:
		return "subscriber lost"
	case PermissionDenied:
		return "permission denied"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Status is where a sent message is: the state of its ticket.
type Status uint8

// Message statuses. A message moves from pending to delivered to processed, or to failed; it
// never goes back.
const (
	// StatusPending: nothing is known yet.
	StatusPending Status = iota
	// StatusDelivered: the peer has the message (its session layer for AckNone; its application
	// for AckDelivered and AckProcessed).
	StatusDelivered
	// StatusProcessed: the peer application confirmed the message.
	StatusProcessed
	// StatusFailed: the message failed; the ticket's error says why.
	StatusFailed
)

func (s Status) String() string {
	switch s {
	case StatusPending:
		return "pending"
	case StatusDelivered:
		return "delivered"
	case StatusProcessed:
		return "processed"
	case StatusFailed:
		return "failed"
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// Event is something that happened to a session or to one of its messages.
type Event struct {
	Kind    Kind
	Session uint64 // session ID
	Message uint64 // message ID, for message events; 0 otherwise
	Status  Status // the message's status after this event, for message events
	Subject string // the subject, for pubsub events
	Err     error  // why, for failures and ends
	Time    time.Time
}

func (e Event) String() string {
	s := fmt.Sprintf("session %016x: %v", e.Session, e.Kind)
	if e.Message != 0 {
		s += fmt.Sprintf(" (message %d)", e.Message)
	}
	if e.Subject != "" {
		s += " on " + e.Subject
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}
