package pubsub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
