package pubsub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/events"
)

// TestUnsubscribeDuringTraffic: once Unsubscribe returned, no message reaches the handler; those
// the client had taken and not handled fail with ErrUnsubscribed, and those the hub routed after
// it took the subscription off match nobody. The outcomes add up exactly: a prefix of the
// publishes processed, then failures, then no match. Several rounds: the race it guards against
// is a coin toss each time.
func TestUnsubscribeDuringTraffic(t *testing.T) {
	h := testHub(t, HubConfig{})
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Second)
	defer cancel()
	pub := dial(t, h, Config{Name: "pub"})
	sub := dial(t, h, Config{Name: "sub", MaxPending: 64})
	const n, stopAt = 300, 20
	for round := range 6 {
		subject := fmt.Sprint("round.", round)
		var (
			after    atomic.Bool // Unsubscribe returned
			mu       sync.Mutex
			handled  []int
			late     []int
			entered  = make(chan struct{})
			released = make(chan struct{})
		)
		s, err := sub.Subscribe(subject, func(_ context.Context, m *Msg) error {
			var i int
			fmt.Sscan(string(m.Data), &i)
			mu.Lock()
			if after.Load() {
				late = append(late, i)
			}
			handled = append(handled, i)
			mu.Unlock()
			if i == stopAt {
				close(entered)
				<-released // the handler is busy while Unsubscribe runs, and more messages wait
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		tickets := make([]*Ticket, n+1)
		published := make(chan error, 1)
		go func() {
			for i := 1; i <= n; i++ {
				tk, err := pub.Publish(ctx, subject, []byte(fmt.Sprint(i)), AckProcessed)
				if err != nil {
					published <- err
					return
				}
				tickets[i] = tk
			}
			published <- nil
		}()
		select {
		case <-entered:
		case <-ctx.Done():
			t.Fatal("the handler never got message", stopAt)
		}
		if err := s.Unsubscribe(); err != nil {
			t.Fatalf("round %d: Unsubscribe: %v", round, err)
		}
		after.Store(true)
		close(released)
		if err := <-published; err != nil {
			t.Fatal(err)
		}

		processed, failed, unmatched := 0, 0, 0
		for i := 1; i <= n; i++ {
			out, err := tickets[i].Wait(ctx)
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("round %d: publish %d never ended", round, i)
			case err == nil && out.Matched == 1 && out.Processed == 1:
				processed++
				if failed+unmatched > 0 {
					t.Errorf("round %d: publish %d processed after failures or no match", round, i)
				}
			case errors.Is(err, ErrUnsubscribed) && out.Matched == 1 && len(out.Failures) == 1:
				failed++
				if unmatched > 0 {
					t.Errorf("round %d: publish %d failed after one matched nothing", round, i)
				}
			case err == nil && out.Matched == 0:
				unmatched++
			default:
				t.Errorf("round %d: publish %d: %+v, %v", round, i, out, err)
			}
		}
		mu.Lock()
		if len(late) > 0 {
			t.Errorf("round %d: the handler got %v after Unsubscribe returned", round, late)
		}
		if len(handled) != processed || handled[len(handled)-1] != processed {
			t.Errorf("round %d: handled %d messages (last %d), %d publishes processed", round, len(handled), handled[len(handled)-1], processed)
		}
		mu.Unlock()
		t.Logf("round %d: %d processed, %d failed (unsubscribed), %d matched nothing", round, processed, failed, unmatched)
	}
	if n := h.index.Len(); n != 0 {
		t.Errorf("the hub's index holds %d subscriptions", n)
	}
}

// TestUnsubscribeChanDuringTraffic: the same with SubscribeChan; every publish ends, and the
// messages the application took from the channel, the failures and the publishes that matched
// nothing add up to all of them. (A message the client was handing to the channel as
// Unsubscribe returned may still be taken, as in a NATS channel subscription, where the messages
// already in the channel stay there.)
func TestUnsubscribeChanDuringTraffic(t *testing.T) {
	h := testHub(t, HubConfig{})
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Second)
	defer cancel()
	pub := dial(t, h, Config{Name: "pub"})
	sub := dial(t, h, Config{Name: "sub"})
	ch := make(chan *Msg, 8)
	s, err := sub.SubscribeChan("chan", ch)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	tickets := make([]*Ticket, n+1)
	for i := 1; i <= n; i++ {
		if tickets[i], err = pub.Publish(ctx, "chan", []byte(fmt.Sprint(i)), AckProcessed); err != nil {
			t.Fatal(err)
		}
	}
	took := 0
	for ; took < 20; took++ {
		if err := (<-ch).Confirm(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	// What is in the channel now was handed over before Unsubscribe returned; the application
	// rejects it, as it may.
	for drained := false; !drained; {
		select {
		case m := <-ch:
			if err := m.Reject(ErrUnsubscribed); err != nil {
				t.Fatal(err)
			}
		default:
			drained = true
		}
	}
	processed, failed, unmatched := 0, 0, 0
	for i := 1; i <= n; i++ {
		out, err := tickets[i].Wait(ctx)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("publish %d never ended", i)
		case err == nil && out.Matched == 1 && out.Processed == 1:
			processed++
		case errors.Is(err, ErrUnsubscribed) && out.Matched == 1 && len(out.Failures) == 1:
			failed++
		case err == nil && out.Matched == 0:
			unmatched++
		default:
			t.Errorf("publish %d: %+v, %v", i, out, err)
		}
	}
	if processed != took || processed+failed+unmatched != n {
		t.Errorf("%d taken; outcomes: %d processed, %d failed, %d matched nothing", took, processed, failed, unmatched)
	}
}

// TestHubCloseUnderTraffic: Close while publishers publish flat out. Every publish the hub
// accepted reaches every subscriber, once; every ticket ends; Close returns nil.
func TestHubCloseUnderTraffic(t *testing.T) {
	h := testHub(t, HubConfig{})
	hubLog := watchEvents(h.OnEvent)
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Second)
	defer cancel()
	type key struct {
		pub string
		i   int
	}
	var mu sync.Mutex
	got := map[string]map[key]int{}
	progress := make(chan struct{}, 1)
	var handled atomic.Int64
	var subscribers []*Client
	for _, name := range []string{"s1", "s2"} {
		got[name] = map[key]int{}
		c := dial(t, h, Config{Name: name})
		subscribers = append(subscribers, c)
		if _, err := c.Subscribe("load.*", func(_ context.Context, m *Msg) error {
			var i int
			fmt.Sscan(string(m.Data), &i)
			mu.Lock()
			got[name][key{m.Publisher, i}]++
			mu.Unlock()
			handled.Add(1)
			select { // (after the count: a waiter woken reads it)
			case progress <- struct{}{}:
			default:
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	type sent struct {
		level   AckLevel
		tickets []*Ticket
	}
	pubs := map[string]*sent{"none": {level: AckNone}, "processed": {level: AckProcessed}}
	var wg sync.WaitGroup
	for name, s := range pubs {
		c := dial(t, h, Config{Name: name})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= 20000; i++ {
				tk, err := c.Publish(ctx, "load."+name, []byte(fmt.Sprint(i)), s.level)
				if err != nil {
					return // the hub closed the session
				}
				s.tickets = append(s.tickets, tk)
			}
		}()
	}
	// Counted, not one signal per message: a signal sent while the last is unread is dropped.
	for handled.Load() < 200 {
		select {
		case <-progress:
		case <-ctx.Done():
			t.Fatalf("%d messages handled before the hub closed", handled.Load())
		}
	}
	if err := h.Close(ctx); err != nil {
		t.Fatalf("hub Close: %v", err)
	}
	wg.Wait()
	// The hub's Close returns once the subscribers' sessions have everything; their handlers
	// may still be at work on the last of it.
	for _, c := range subscribers {
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatal("a subscriber's client did not end with its session")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for name, s := range pubs {
		var ok, refused, untold int
		for i, tk := range s.tickets {
			out, err := tk.Wait(ctx)
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("%s's publish %d never ended", name, i+1)
			case errors.Is(err, ErrClosed):
				refused++ // after Close began: the publisher knows it was not taken
				continue
			case errors.Is(err, errNoOutcome):
				untold++ // the session ended before the hub told the outcome
				continue
			case errors.Is(err, ErrSessionClosed):
				refused++ // the session closed before the hub took the PUB
				continue
			case err != nil:
				t.Errorf("%s's publish %d: %v", name, i+1, err)
				continue
			}
			ok++
			if s.level == AckProcessed && out.Processed != 2 {
				t.Errorf("%s's publish %d: %+v", name, i+1, out)
			}
			for sub, seen := range got {
				if seen[key{name, i + 1}] != 1 {
					t.Errorf("%s's publish %d, accepted, reached %s %d times", name, i+1, sub, seen[key{name, i + 1}])
				}
			}
		}
		// Close sends every outcome before it closes the sessions.
		if untold > 0 {
			t.Errorf("%s: %d publishes ended without the hub's answer", name, untold)
		}
		t.Logf("%s: %d published, %d accepted, %d refused (closing), %d untold", name, len(s.tickets), ok, refused, untold)
	}
	if evs := hubLog.all(events.SlowConsumer, ""); len(evs) != 0 {
		t.Errorf("%d SlowConsumer events: the subscribers' buffers hold all this traffic", len(evs))
	}
	for sub, seen := range got {
		for k, n := range seen {
			if n != 1 || k.i < 1 || k.i > len(pubs[k.pub].tickets) {
				t.Errorf("%s got %s's message %d %d times", sub, k.pub, k.i, n)
			}
		}
	}
}

// TestHubCloseHandsOverTaken: when the hub closes, a subscriber's client still hands its handler
// the messages its session had received: the hub counted them delivered (AckNone), and dropping
// them on the way to the handler would lose them silently.
func TestHubCloseHandsOverTaken(t *testing.T) {
	h := testHub(t, HubConfig{})
	ctx := testCtx(t)
	sub := dial(t, h, Config{Name: "sub"})
	pub := dial(t, h, Config{Name: "pub"})
	gate := make(chan struct{})
	var handled atomic.Int32
	if _, err := sub.Subscribe("x", func(context.Context, *Msg) error {
		<-gate // the first message holds the handler; the others wait in the client
		handled.Add(1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	const n = 100
	var last *Ticket
	for i := range n {
		tk, err := pub.Publish(ctx, "x", []byte(fmt.Sprint(i)), AckNone)
		if err != nil {
			t.Fatal(err)
		}
		last = tk
	}
	if _, err := last.Wait(ctx); err != nil { // the hub took them all
		t.Fatal(err)
	}
	if err := h.Close(ctx); err != nil { // it waits for the subscriber's session to have them
		t.Fatal(err)
	}
	close(gate)
	<-sub.Done()
	if got := handled.Load(); got != n {
		t.Errorf("the handler got %d of the %d messages its session had", got, n)
	}
}
