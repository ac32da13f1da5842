package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/ftsl-go/ftsl/naming"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub"
	"github.com/ftsl-go/ftsl/snapshot"
)

// A hub inside the application, two subscribers and a publisher that learns what became of its
// message at every subscriber. Clients in other processes would Dial the hub's address instead of
// Connect.
func Example() {
	ctx := context.Background()
	hub, _ := pubsub.NewHub(pubsub.HubConfig{})
	defer hub.Close(ctx)

	for _, name := range []string{"billing", "shipping"} {
		c, _ := hub.Connect(ctx, pubsub.Config{Name: name})
		defer c.Close(ctx)
		c.Subscribe("orders.*", func(_ context.Context, m *pubsub.Msg) error {
			if name == "shipping" && strings.Contains(string(m.Data), "moon") {
				return errors.New("no route to the moon") // fails this attempt; it comes again
			}
			return nil // confirms it
		})
	}

	pub, _ := hub.Connect(ctx, pubsub.Config{Name: "shop"})
	defer pub.Close(ctx)
	for _, order := range []string{"2 books to Lisbon", "1 telescope to the moon"} {
		tk, _ := pub.Publish(ctx, "orders.new", []byte(order), pubsub.AckProcessed) // returns at once
		out, err := tk.Wait(ctx)
		fmt.Printf("%q: matched %d, processed %d", order, out.Matched, out.Processed)
		if err != nil {
			f := out.Failures[0]
			fmt.Printf(", %s failed it: %s", f.Subscriber, f.Reason)
		}
		fmt.Println()
	}
	// Output:
	// "2 books to Lisbon": matched 2, processed 2
	// "1 telescope to the moon": matched 2, processed 1, shipping failed it: no route to the moon
}

// Request and Respond: the answer comes back through the requester's inbox, as in NATS.
func ExampleClient_Request() {
	ctx := context.Background()
	hub, _ := pubsub.NewHub(pubsub.HubConfig{})
	defer hub.Close(ctx)
	clock, _ := hub.Connect(ctx, pubsub.Config{Name: "clock"})
	defer clock.Close(ctx)
	clock.Subscribe("time.utc", func(ctx context.Context, m *pubsub.Msg) error {
		return m.Respond(ctx, []byte(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).Format(time.Kitchen)))
	})

	c, _ := hub.Connect(ctx, pubsub.Config{Name: "asker"})
	defer c.Close(ctx)
	answer, err := c.Request(ctx, "time.utc", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s says %s\n", answer.Publisher, answer.Data)
	_, err = c.Request(ctx, "time.mars", nil)
	fmt.Println(errors.Is(err, pubsub.ErrNoResponders))
	// Output:
	// clock says 12:00PM
	// true
}

// A queue group shares the messages on its subject among its members: each message goes to
// one of them, and to another if that one fails it for good or its session is lost.
func ExampleQueue() {
	ctx := context.Background()
	hub, _ := pubsub.NewHub(pubsub.HubConfig{})
	defer hub.Close(ctx)
	done := make(chan string, 10)
	for _, name := range []string{"worker-1", "worker-2"} {
		c, _ := hub.Connect(ctx, pubsub.Config{Name: name})
		defer c.Close(ctx)
		c.Subscribe("jobs.resize", func(_ context.Context, m *pubsub.Msg) error {
			done <- string(m.Data)
			return nil
		}, pubsub.Queue("resizers"))
	}
	pub, _ := hub.Connect(ctx, pubsub.Config{})
	defer pub.Close(ctx)
	for i := range 4 {
		tk, _ := pub.Publish(ctx, "jobs.resize", fmt.Appendf(nil, "image-%d", i), pubsub.AckProcessed)
		out, _ := tk.Wait(ctx)
		fmt.Println(<-done, "matched", out.Matched, "processed", out.Processed)
	}
	// Output:
	// image-0 matched 1 processed 1
	// image-1 matched 1 processed 1
	// image-2 matched 1 processed 1
	// image-3 matched 1 processed 1
}

// Who may do what: Authenticate sees each client's credential and returns its permissions.
func ExampleHubConfig_authenticate() {
	ctx := context.Background()
	hub, _ := pubsub.NewHub(pubsub.HubConfig{
		Authenticate: func(_ context.Context, c pubsub.ConnectInfo) (*pubsub.Permissions, error) {
			if c.Token != "s3cret" {
				return nil, errors.New("unknown token")
			}
			return &pubsub.Permissions{
				Identity:  "sensor-7",
				Publish:   pubsub.Rules{Allow: []string{"telemetry.sensor-7.>"}},
				Subscribe: pubsub.Rules{Allow: []string{"commands.sensor-7"}},
			}, nil
		},
	})
	defer hub.Close(ctx)

	_, err := hub.Connect(ctx, pubsub.Config{Credential: pubsub.Credential{Token: "guess"}})
	fmt.Println(errors.Is(err, pubsub.ErrPermission))

	c, _ := hub.Connect(ctx, pubsub.Config{Credential: pubsub.Credential{Token: "s3cret"}})
	defer c.Close(ctx)
	tk, _ := c.Publish(ctx, "telemetry.sensor-7.temp", []byte("21.5"), pubsub.AckDelivered)
	_, err = tk.Wait(ctx)
	fmt.Println(err)
	tk, _ = c.Publish(ctx, "telemetry.sensor-8.temp", []byte("99"), pubsub.AckDelivered)
	_, err = tk.Wait(ctx)
	fmt.Println(errors.Is(err, pubsub.ErrPermission))
	_, err = c.Subscribe("commands.>", func(context.Context, *pubsub.Msg) error { return nil })
	fmt.Println(errors.Is(err, pubsub.ErrPermission))
	// Output:
	// true
	// <nil>
	// true
	// true
}

// A hub moves to another port mid-work (snapshot.Migrate): a message its subscriber is still
// processing, the subscriber's subscription and the publisher's pending outcome all move with it,
// and the clients, who find the hub by name, resume there by themselves.
func Example_migrate() {
	ctx := context.Background()
	names, _ := naming.NewStaticResolver(nil) // or naming.NewResolver with a naming server
	hub, _ := pubsub.NewHub(pubsub.HubConfig{})
	ln, _ := oneway.Listen("127.0.0.1:0", oneway.Config{})
	go hub.Serve(ctx, ln)
	_ = names.Set("hub", ln.Addr().String())

	dial := func(name string) *pubsub.Client {
		cfg := pubsub.Config{Name: name}
		cfg.Session.Core.Resolver = names
		c, _ := pubsub.Dial(ctx, "hub", cfg)
		return c
	}
	worker, shop := dial("worker"), dial("shop")
	defer worker.Close(ctx)
	defer shop.Close(ctx)
	busy := make(chan struct{})
	release := make(chan struct{})
	worker.Subscribe("jobs", func(_ context.Context, m *pubsub.Msg) error {
		if string(m.Data) == "paint the fence" {
			close(busy)
			<-release // still at work while the hub moves
		}
		return nil
	})
	tk, _ := shop.Publish(ctx, "jobs", []byte("paint the fence"), pubsub.AckProcessed)
	<-busy

	nl, _ := net.Listen("tcp", "127.0.0.1:0")
	moved, _, err := snapshot.Migrate(ctx, snapshot.Move[pubsub.HubState, *pubsub.Hub]{
		From: hub,
		Restore: func(s *snapshot.Snapshot) (*pubsub.Hub, error) {
			return pubsub.RestoreHub(nl, pubsub.HubConfig{}, s)
		},
		Rebind: func(context.Context) error { return names.Set("hub", nl.Addr().String()) },
		Retire: hub.Close,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer moved.Close(ctx)
	close(release)
	out, err := tk.Wait(ctx)
	fmt.Printf("matched %d, processed %d, error %v\n", out.Matched, out.Processed, err)

	// The subscription moved too.
	tk, _ = shop.Publish(ctx, "jobs", []byte("mow the lawn"), pubsub.AckProcessed)
	out, _ = tk.Wait(ctx)
	fmt.Printf("after the move: matched %d, processed %d\n", out.Matched, out.Processed)
	// Output:
	// matched 1, processed 1, error <nil>
	// after the move: matched 1, processed 1
}
