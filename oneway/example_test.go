package oneway_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/oneway"
)

// connect opens a one-way session inside the process: a listener and a client.
func connect(ctx context.Context) (client, server *oneway.Session, ln *oneway.Listener) {
	ln, err := oneway.Listen("127.0.0.1:0", oneway.Config{})
	if err != nil {
		panic(err)
	}
	client, err = oneway.Dial(ctx, ln.Addr().String(), oneway.Config{})
	if err != nil {
		panic(err)
	}
	server, err = ln.Accept(ctx)
	if err != nil {
		panic(err)
	}
	return client, server, ln
}

// AckNone: fire and forget, yet the ticket still says when the peer's session layer has the
// message (it left the sent buffer). No event is raised.
func ExampleSession_Send_ackNone() {
	ctx := context.Background()
	client, server, ln := connect(ctx)
	defer ln.Close()
	defer client.Abort()

	tk, _ := client.Send(ctx, []byte("position 3,4"), oneway.AckNone)
	d, _ := server.Recv(ctx)
	fmt.Println(string(d.Data))
	st, err := tk.Wait(ctx)
	fmt.Println(st, err)
	// Output:
	// position 3,4
	// delivered <nil>
}

// AckDelivered: the ticket ends once the peer application was handed the message.
func ExampleSession_Send_ackDelivered() {
	ctx := context.Background()
	client, server, ln := connect(ctx)
	defer ln.Close()
	defer client.Abort()

	tk, _ := client.Send(ctx, []byte("chat: hi"), oneway.AckDelivered)
	fmt.Println("right after Send:", tk.Status())
	_, _ = server.Recv(ctx)
	st, _ := tk.Wait(ctx)
	fmt.Println("after the peer's Recv:", st)
	// Output:
	// right after Send: pending
	// after the peer's Recv: delivered
}

// AckProcessed: the receiver confirms or rejects; a rejected message comes again, and after
// MaxAttempts the sender's ticket fails with the receiver's reason. The sender never waited.
func ExampleSession_Send_ackProcessed() {
	ctx := context.Background()
	client, server, ln := connect(ctx)
	defer ln.Close()
	defer client.Abort()

	_ = server.Handle(func(ctx context.Context, d *oneway.Delivery) error {
		if string(d.Data) == "transfer 1000000" {
			return errors.New("insufficient funds")
		}
		return nil // confirms
	})
	ok, _ := client.Send(ctx, []byte("transfer 10"), oneway.AckProcessed)
	bad, _ := client.Send(ctx, []byte("transfer 1000000"), oneway.AckProcessed)

	st, _ := ok.Wait(ctx)
	fmt.Println("transfer 10:", st)
	st, err := bad.Wait(ctx)
	fmt.Println("transfer 1000000:", st, "-", err)
	// Output:
	// transfer 10: processed
	// transfer 1000000: failed - ftsl: message 2 rejected by the receiver: insufficient funds
}

// Outcomes also arrive as events, on a channel or to a callback, in the order they happened.
func ExampleSession_Events() {
	ctx := context.Background()
	client, server, ln := connect(ctx)
	defer ln.Close()

	evs := client.Events()
	_ = server.Handle(func(context.Context, *oneway.Delivery) error { return nil })
	tk, _ := client.Send(ctx, []byte("job"), oneway.AckProcessed)
	_, _ = tk.Wait(ctx)
	_ = client.Close(ctx)
	for e := range evs { // closed after the session's last event
		if e.Kind == events.SessionClosed {
			fmt.Println(e.Kind)
			continue
		}
		fmt.Println(e.Kind, e.Message)
	}
	// Output:
	// message delivered 1
	// message processed 1
	// session closed
}

// A pool of handlers: messages are handed out in order and may finish in any order; a message a
// handler fails comes again, to any of them, until MaxAttempts.
func ExampleSession_Handle_concurrency() {
	ctx := context.Background()
	client, server, ln := connect(ctx)
	defer ln.Close()
	defer client.Abort()

	err := server.Handle(func(ctx context.Context, d *oneway.Delivery) error {
		if string(d.Data) == "flaky" && d.Attempt == 1 {
			return errors.New("try again")
		}
		return nil // confirmed: the sender's ticket ends as processed
	}, oneway.Concurrency(4))
	if err != nil {
		panic(err)
	}
	var tickets []*oneway.Ticket
	for _, job := range []string{"a", "flaky", "b", "c"} {
		tk, _ := client.Send(ctx, []byte(job), oneway.AckProcessed)
		tickets = append(tickets, tk)
	}
	for _, tk := range tickets {
		st, err := tk.Wait(ctx)
		fmt.Println(tk.ID(), st, err)
	}
	// Output:
	// 1 processed <nil>
	// 2 processed <nil>
	// 3 processed <nil>
	// 4 processed <nil>
}
