package events_test

import (
	"errors"
	"fmt"

	"github.com/ftsl-go/ftsl/events"
)

// A callback sees every event, in publication order, on the dispatcher's goroutine. Close and
// Done tell when the last one was handled.
func ExampleDispatcher_OnEvent() {
	d := events.New(events.Config{})
	d.OnEvent(func(e events.Event) {
		fmt.Println(e)
	})

	d.Publish(events.Event{Kind: events.MessageDelivered, Session: 0x2a, Message: 1, Status: events.StatusDelivered})
	d.Publish(events.Event{Kind: events.MessageProcessed, Session: 0x2a, Message: 1, Status: events.StatusProcessed})
	d.Publish(events.Event{Kind: events.MessageFailed, Session: 0x2a, Message: 2, Status: events.StatusFailed,
		Err: errors.New("rejected")})
	d.Publish(events.Event{Kind: events.SessionClosed, Session: 0x2a})

	d.Close()
	<-d.Done()
	fmt.Println("dropped:", d.Dropped())
	// Output:
	// session 000000000000002a: message delivered (message 1)
	// session 000000000000002a: message processed (message 1)
	// session 000000000000002a: message failed (message 2): rejected
	// session 000000000000002a: session closed
	// dropped: 0
}

// The channel is closed once the dispatcher is closed and everything queued was offered to it,
// so ranging over it ends.
func ExampleDispatcher_Channel() {
	d := events.New(events.Config{ChannelSize: 16})
	ch := d.Channel() // ask for it before publishing, or early events are not offered to it

	go func() {
		for id := uint64(1); id <= 3; id++ {
			d.Publish(events.Event{Kind: events.MessageDelivered, Session: 7, Message: id, Status: events.StatusDelivered})
		}
		d.Publish(events.Event{Kind: events.SessionLost, Session: 7, Err: errors.New("resume refused")})
		d.Close()
	}()

	for e := range ch {
		switch e.Kind {
		case events.MessageDelivered:
			fmt.Printf("message %d: %v\n", e.Message, e.Status)
		default:
			fmt.Println(e.Kind, "-", e.Err)
		}
	}
	// Output:
	// message 1: delivered
	// message 2: delivered
	// message 3: delivered
	// session lost - resume refused
}

func ExampleEvent_String() {
	e := events.Event{Kind: events.MessageFailed, Session: 0xbeef, Message: 9, Status: events.StatusFailed,
		Err: errors.New("session ended")}
	fmt.Println(e)
	fmt.Println(events.Kind(99), events.Status(7))
	// Output:
	// session 000000000000beef: message failed (message 9): session ended
	// Kind(99) Status(7)
}
