package events_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/events"
)

func TestKindString(t *testing.T) {
	tests := []struct {
		kind events.Kind
		want string
	}{
		{events.MessageDelivered, "message delivered"},
		{events.MessageProcessed, "message processed"},
		{events.MessageFailed, "message failed"},
		{events.SessionReconnecting, "session reconnecting"},
		{events.SessionResumed, "session resumed"},
		{events.SessionLost, "session lost"},
		{events.SessionClosed, "session closed"},
		{events.BufferFull, "buffer full"},
		{events.Subscribed, "subscribed"},
		{events.Unsubscribed, "unsubscribed"},
		{events.SlowConsumer, "slow consumer"},
		{events.SubscriberLost, "subscriber lost"},
		{events.PermissionDenied, "permission denied"},
		// Unknown values.
		{0, "Kind(0)"},
		{events.PermissionDenied + 1, "Kind(14)"},
		{255, "Kind(255)"},
	}
	for _, tt := range tests {
		if got := tt.kind.String(); got != tt.want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(tt.kind), got, tt.want)
		}
		// fmt must pick up the Stringer too.
		if got := fmt.Sprint(tt.kind); got != tt.want {
			t.Errorf("fmt.Sprint(Kind(%d)) = %q, want %q", uint8(tt.kind), got, tt.want)
		}
	}
}

func TestKindValues(t *testing.T) {
	// The kinds start at 1 so that the zero Kind is recognisably "unset", and are consecutive.
	kinds := []events.Kind{
		events.MessageDelivered, events.MessageProcessed, events.MessageFailed,
		events.SessionReconnecting, events.SessionResumed, events.SessionLost,
		events.SessionClosed, events.BufferFull, events.Subscribed, events.Unsubscribed,
		events.SlowConsumer, events.SubscriberLost, events.PermissionDenied,
	}
	for i, k := range kinds {
		if want := events.Kind(i + 1); k != want {
			t.Errorf("kind #%d = %d, want %d", i, k, want)
		}
	}
}

func TestStatusString(t *testing.T) {
	tests := []struct {
		status events.Status
		want   string
	}{
		{events.StatusPending, "pending"},
		{events.StatusDelivered, "delivered"},
		{events.StatusProcessed, "processed"},
		{events.StatusFailed, "failed"},
		// Unknown values.
		{events.StatusFailed + 1, "Status(4)"},
		{255, "Status(255)"},
	}
	for _, tt := range tests {
		if got := tt.status.String(); got != tt.want {
			t.Errorf("Status(%d).String() = %q, want %q", uint8(tt.status), got, tt.want)
		}
		if got := fmt.Sprint(tt.status); got != tt.want {
			t.Errorf("fmt.Sprint(Status(%d)) = %q, want %q", uint8(tt.status), got, tt.want)
		}
	}
	var zero events.Status
	if zero != events.StatusPending {
		t.Errorf("zero Status = %v, want pending", zero)
	}
}

func TestEventString(t *testing.T) {
	ts := time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		name string
		ev   events.Event
		want string
	}{
		{
			name: "zero",
			ev:   events.Event{},
			want: "session 0000000000000000: Kind(0)",
		},
		{
			name: "pubsub event",
			ev:   events.Event{Kind: events.Subscribed, Session: 2, Subject: "chat.>"},
			want: "session 0000000000000002: subscribed on chat.>",
		},
		{
			name: "session event",
			ev:   events.Event{Kind: events.SessionResumed, Session: 0xabc, Time: ts},
			want: "session 0000000000000abc: session resumed",
		},
		{
			name: "full-width session ID",
			ev:   events.Event{Kind: events.SessionClosed, Session: 0xfedcba9876543210},
			want: "session fedcba9876543210: session closed",
		},
		{
			name: "message event",
			ev: events.Event{Kind: events.MessageDelivered, Session: 1, Message: 42,
				Status: events.StatusDelivered, Time: ts},
			want: "session 0000000000000001: message delivered (message 42)",
		},
		{
			name: "message failure with error",
			ev: events.Event{Kind: events.MessageFailed, Session: 0xff, Message: 7,
				Status: events.StatusFailed, Err: errors.New("rejected: bad input")},
			want: "session 00000000000000ff: message failed (message 7): rejected: bad input",
		},
		{
			name: "session end with error",
			ev:   events.Event{Kind: events.SessionLost, Session: 2, Err: errors.New("resume refused")},
			want: "session 0000000000000002: session lost: resume refused",
		},
		{
			name: "unknown kind with message",
			ev:   events.Event{Kind: 200, Session: 3, Message: 18446744073709551615},
			want: "session 0000000000000003: Kind(200) (message 18446744073709551615)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ev.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if got := fmt.Sprint(tt.ev); got != tt.want {
				t.Errorf("fmt.Sprint = %q, want %q", got, tt.want)
			}
		})
	}
}
