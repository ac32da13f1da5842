package pubsub

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/internal/faultnet"
	"github.com/ftsl-go/ftsl/oneway"
)

// TestFailingSubscriberAndReroute: a subscriber that always fails a message is tried
// MaxAttempts times, then the outcome lists it with its reason; in a queue group, a member that
// fails a message for good hands it to another member, and the outcome shows only the success.
func TestFailingSubscriberAndReroute(t *testing.T) {
	h := testHub(t, HubConfig{})
	ctx := testCtx(t)
	pub := dial(t, h, Config{Name: "pub"})
	bad := dial(t, h, Config{Name: "bad"})
	var tries atomic.Int64
	if _, err := bad.Subscribe("audit", func(context.Context, *Msg) error {
		tries.Add(1)
		return errors.New("disk full")
	}); err != nil {
		t.Fatal(err)
	}
	tk, _ := pub.Publish(ctx, "audit", []byte("x"), AckProcessed)
	out, err := tk.Wait(ctx)
	var oe *OutcomeError
	if !errors.As(err, &oe) || out.Matched != 1 || out.Failed != 1 || out.Failures[0].Subscriber != "bad" ||
		out.Failures[0].Reason != "disk full" || tk.Status() != StatusFailed {
		t.Fatalf("outcome %+v, %v", out, err)
	}
	if n := tries.Load(); n != oneway.DefaultMaxAttempts {
		t.Fatalf("the handler was tried %d times, want %d", n, oneway.DefaultMaxAttempts)
	}

	// A queue group where one member always fails: every message ends processed by the other.
	var good atomic.Int64
	flaky := dial(t, h, Config{Name: "flaky"})
	steady := dial(t, h, Config{Name: "steady"})
	var flakyTries atomic.Int64
	if _, err := flaky.Subscribe("jobs", func(context.Context, *Msg) error { flakyTries.Add(1); return errors.New("flaky") }, Queue("q")); err != nil {
		t.Fatal(err)
	}
	if _, err := steady.Subscribe("jobs", func(context.Context, *Msg) error { good.Add(1); return nil }, Queue("q")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		tk, _ := pub.Publish(ctx, "jobs", []byte{byte(i)}, AckProcessed)
		if out, err := tk.Wait(ctx); err != nil || out.Matched != 1 || out.Processed != 1 || out.Failed != 0 {
			t.Fatalf("job %d: %+v %v", i, out, err)
		}
	}
	if good.Load() != 20 {
		t.Fatalf("steady processed %d of 20", good.Load())
	}
	// Each share flaky failed went on to steady: one more copy sent.
	rerouted := uint64(flakyTries.Load()) / oneway.DefaultMaxAttempts
	if rerouted == 0 {
		t.Fatal("round robin never chose flaky")
	}
	st := h.Stats()
	if st.Clients != 4 || st.Subscriptions != 3 || st.Published != 21 || st.Sent != 21+rerouted || st.SlowDropped != 0 {
		t.Fatalf("stats %+v, want 4 clients, 3 subscriptions, 21 published, %d sent", st, 21+rerouted)
	}
}

// TestLostSubscriber: a subscriber whose session is lost (it never came back within the hub's
// ResumeWindow) fails its pending shares with ErrSessionLost, and its subscriptions go; a queue
// group's share goes to another member.
func TestLostSubscriber(t *testing.T) {
	h := testHub(t, HubConfig{Session: oneway.Config{Core: core.Config{ResumeWindow: 300 * time.Millisecond}}})
	ctx := testCtx(t)
	px, err := faultnet.NewProxy(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	pub := dial(t, h, Config{Name: "pub"})
	// The doomed subscriber comes through the proxy and holds what it gets.
	doomed, err := Dial(ctx, px.Addr(), Config{Name: "doomed"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { doomed.Abort(); <-doomed.Done() }()
	holding := make(chan *Msg, 10)
	if _, err := doomed.SubscribeChan("news", holding); err != nil {
		t.Fatal(err)
	}
	if _, err := doomed.SubscribeChan("work", holding, Queue("q")); err != nil {
		t.Fatal(err)
	}
	var worked atomic.Int64
	other := dial(t, h, Config{Name: "other"})
	if _, err := other.Subscribe("work", func(context.Context, *Msg) error { worked.Add(1); return nil }, Queue("q")); err != nil {
		t.Fatal(err)
	}
	news, _ := pub.Publish(ctx, "news", []byte("n"), AckProcessed)
	<-holding // doomed has it, and will never confirm
	// Publish work until one goes to the doomed member (the group picks round robin).
	var work *Ticket
	for i := 0; work == nil; i++ {
		tk, _ := pub.Publish(ctx, "work", []byte{byte(i)}, AckProcessed)
		select {
		case <-holding:
			work = tk
		case <-tk.Done():
		}
	}
	px.Refuse(true)
	px.KillAll()
	out, err := news.Wait(ctx)
	if !errors.Is(err, ErrSessionLost) || out.Failed != 1 || out.Failures[0].Subscriber != "doomed" {
		t.Fatalf("news: %+v %v, want the doomed subscriber's share lost", out, err)
	}
	if out, err := work.Wait(ctx); err != nil || out.Processed != 1 {
		t.Fatalf("work held by the lost member: %+v %v, want it processed by the other", out, err)
	}
	tk, _ := pub.Publish(ctx, "news", []byte("again"), AckProcessed)
	if out, err := tk.Wait(ctx); err != nil || out.Matched != 0 {
		t.Fatalf("after the loss: %+v %v, want nobody matched", out, err)
	}
}

// TestRefusalIsFinal: a refused publish or subscribe fails at once, refused once, not retried
// until the session's attempts run out.
func TestRefusalIsFinal(t *testing.T) {
	var denied atomic.Int64
	h := testHub(t, HubConfig{
		Session: oneway.Config{MaxAttempts: 5},
		Authenticate: func(context.Context, ConnectInfo) (*Permissions, error) {
			return &Permissions{Publish: Rules{Deny: []string{"secret.>"}}, Subscribe: Rules{Deny: []string{"secret.>"}}}, nil
		},
	})
	marker := make(chan struct{})
	h.OnEvent(func(e events.Event) {
		switch {
		case e.Kind == events.PermissionDenied:
			denied.Add(1)
		case e.Kind == events.Subscribed && e.Subject == "marker":
			close(marker) // the hub's events come in order: every refusal was counted before
		}
	})
	ctx := testCtx(t)
	c := dial(t, h, Config{})
	tk, err := c.Publish(ctx, "secret.plans", []byte("x"), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Wait(ctx); !errors.Is(err, ErrPermission) {
		t.Fatalf("publish: %v", err)
	}
	if _, err := c.Subscribe("secret.*", func(context.Context, *Msg) error { return nil }); !errors.Is(err, ErrPermission) {
		t.Fatalf("subscribe: %v", err)
	}
	if _, err := c.Subscribe("marker", func(context.Context, *Msg) error { return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-marker:
	case <-ctx.Done():
		t.Fatal("no Subscribed event")
	}
	if n := denied.Load(); n != 2 {
		t.Fatalf("%d refusals at the hub, want 2 (one each)", n)
	}
}

// TestClientReconnectEvents: a client whose connection dies hears SessionReconnecting on its
// events, then SessionResumed once its session is carried again, and its subscription still
// works (a chat shows "reconnecting..." and "back").
func TestClientReconnectEvents(t *testing.T) {
	h := testHub(t, HubConfig{})
	ctx := testCtx(t)
	px, err := faultnet.NewProxy(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	c, err := Dial(ctx, px.Addr(), Config{Name: "flaky"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.Abort(); <-c.Done() }()
	evs := make(chan events.Event, 16)
	c.OnEvent(func(e events.Event) {
		if e.Kind == events.SessionReconnecting || e.Kind == events.SessionResumed {
			evs <- e
		}
	})
	got := make(chan *Msg, 1)
	if _, err := c.SubscribeChan("news", got); err != nil {
		t.Fatal(err)
	}
	if px.KillAll() == 0 {
		t.Fatal("the proxy had no connection to kill")
	}
	for _, want := range []events.Kind{events.SessionReconnecting, events.SessionResumed} {
		select {
		case e := <-evs:
			if e.Kind != want || e.Session != c.sess.ID() {
				t.Fatalf("event %v of session %d, want %v of %d", e.Kind, e.Session, want, c.sess.ID())
			}
			if want == events.SessionReconnecting && e.Err == nil {
				t.Error("SessionReconnecting without the error that broke the connection")
			}
		case <-ctx.Done():
			t.Fatalf("no %v event", want)
		}
	}
	pub := dial(t, h, Config{Name: "pub"})
	if _, err := pub.Publish(ctx, "news", []byte("still here"), AckProcessed); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if string(m.Data) != "still here" {
			t.Fatalf("got %q", m.Data)
		}
		_ = m.Confirm()
	case <-ctx.Done():
		t.Fatal("the resumed subscriber got nothing")
	}
}
