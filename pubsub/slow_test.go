package pubsub

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub/internal/wire"
)

// slowHubConfig gives the hub small sessions, so a subscriber that stops reading fills its share
// of them in a few dozen messages.
func slowHubConfig(policy SlowPolicy, maxBlock time.Duration) HubConfig {
	var cfg HubConfig
	cfg.SlowConsumers = policy
	cfg.MaxBlock = maxBlock
	cfg.Session.Core.MaxMessageSize = 4 << 10
	cfg.Session.Core.SendBufferBytes = 32 << 10
	cfg.Session.Core.ReceiveBufferBytes = 64 << 10
	return cfg
}

// slowClientConfig is a client whose receive window holds a few messages.
func slowClientConfig(name string) Config {
	var cfg Config
	cfg.Name = name
	cfg.Session.Core.MaxMessageSize = 4 << 10
	cfg.Session.Core.ReceiveBufferBytes = 8 << 10
	return cfg
}

// numbered is message i of a slow-consumer test: its number, padded to 1000 bytes.
func numbered(i int) []byte {
	b := make([]byte, 1000)
	copy(b, fmt.Sprintf("%d.", i))
	return b
}

func numberOf(data []byte) int {
	n, _ := strconv.Atoi(string(data[:strings.IndexByte(string(data), '.')]))
	return n
}

// TestSlowConsumer: a subscriber that stops reading (a channel nobody reads) fills its buffers;
// then its share of every publish fails at once with ErrSlowConsumer (SlowFail), or after the
// publisher waited MaxBlock for room (SlowBlock), while a healthy subscriber gets everything.
// The hub raises SlowConsumer for each; the slow client hears of it (a SlowConsumer event with
// the count missed) once it reads again, and the messages it had buffered come through whole.
func TestSlowConsumer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policy   SlowPolicy
		maxBlock time.Duration
	}{
		{"SlowFail", SlowFail, 0},
		{"SlowBlock", SlowBlock, 20 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testHub(t, slowHubConfig(tc.policy, tc.maxBlock))
			hubLog := watchEvents(h.OnEvent)
			ctx := testCtx(t)
			pub := dial(t, h, Config{Name: "pub"})
			healthy := dial(t, h, Config{Name: "healthy"})
			rec := newRecorder()
			if _, err := healthy.Subscribe("feed", rec.handle); err != nil {
				t.Fatal(err)
			}
			slow := dial(t, h, slowClientConfig("slow"))
			slowLog := watchEvents(slow.OnEvent)
			unread := make(chan *Msg)
			if _, err := slow.SubscribeChan("feed", unread); err != nil {
				t.Fatal(err)
			}

			// One at a time, as the healthy subscriber takes them: it is never the slow one.
			// The slow one's buffers hold about 40 (8 KiB of its window, 32 KiB at the hub).
			const n = 60
			tickets := make([]*Ticket, n+1)
			sentAt := make([]time.Time, n+1)
			for i := 1; i <= n; i++ {
				sentAt[i] = time.Now()
				tk, err := pub.Publish(ctx, "feed", numbered(i), AckProcessed)
				if err != nil {
					t.Fatal(err)
				}
				tickets[i] = tk
				rec.waitFor(t, i)
				awaitAcked(t, h, healthy)
			}
			barrier(t, hubLog, pub)
			slowEvents := hubLog.all(events.SlowConsumer, "feed")
			missed := len(slowEvents)
			if missed == 0 || missed == n {
				t.Fatalf("%d of %d messages missed: the buffers are not what this test assumes", missed, n)
			}
			for _, e := range slowEvents {
				if e.Session != slow.sess.ID() || !errors.Is(e.Err, ErrSlowConsumer) {
					t.Errorf("hub event %v: not the slow client's, or not ErrSlowConsumer", e)
				}
			}
			// The publisher has the outcomes of the publishes the slow subscriber missed without
			// waiting for it; the others wait for it. (Which ones it missed depends on when its
			// acks came: mostly the later ones.)
			ended := make(chan int, n)
			for i := 1; i <= n; i++ {
				go func() {
					select {
					case <-tickets[i].Done():
						ended <- i
					case <-ctx.Done():
					}
				}()
			}
			failed := make(map[int]bool)
			for range missed {
				var i int
				select {
				case i = <-ended:
				case <-ctx.Done():
					t.Fatalf("%d publishes ended, %d were missed", len(failed), missed)
				}
				failed[i] = true
				out, err := tickets[i].Wait(ctx)
				if !errors.Is(err, ErrSlowConsumer) || out.Matched != 2 || out.Delivered != 1 || out.Processed != 1 ||
					len(out.Failures) != 1 || out.Failures[0].Subscriber != "slow" {
					t.Errorf("publish %d: %+v, %v; want the slow consumer's failure", i, out, err)
				}
				if waited := time.Since(sentAt[i]); tc.policy == SlowBlock && waited < tc.maxBlock {
					t.Errorf("publish %d failed after %v, under MaxBlock %v", i, waited, tc.maxBlock)
				}
			}
			var kept []int
			for i := 1; i <= n; i++ {
				if !failed[i] {
					kept = append(kept, i)
				}
			}
			for _, i := range kept {
				select {
				case <-tickets[i].Done():
					out, err := tickets[i].Wait(ctx)
					t.Errorf("publish %d ended before the slow subscriber read it: %+v, %v", i, out, err)
				default:
				}
			}

			// It reads again: it gets what it kept, in order, and hears how many it missed.
			for k, i := range kept {
				select {
				case m := <-unread:
					if got := numberOf(m.Data); got != i {
						t.Fatalf("the slow subscriber's message %d is %d, want %d", k+1, got, i)
					}
					if err := m.Confirm(); err != nil {
						t.Fatal(err)
					}
				case <-ctx.Done():
					t.Fatalf("the slow subscriber got %d of the %d messages it kept", k, len(kept))
				}
			}
			for _, i := range kept {
				out, err := tickets[i].Wait(ctx)
				if err != nil || out.Matched != 2 || out.Processed != 2 {
					t.Errorf("publish %d: %+v, %v; want processed by both", i, out, err)
				}
			}
			told := 0
			for seen := 1; told < missed; seen++ {
				told = 0
				for _, e := range slowLog.wait(t, events.SlowConsumer, "feed", seen) {
					var k int
					if !errors.Is(e.Err, ErrSlowConsumer) {
						t.Fatalf("client event %v does not match ErrSlowConsumer", e)
					}
					if _, err := fmt.Sscanf(e.Err.Error(), "ftsl: slow consumer: %d messages missed", &k); err != nil {
						t.Fatalf("client event %v: %v", e, err)
					}
					told += k
				}
			}
			if told != missed {
				t.Errorf("the slow client was told of %d missed messages, the hub counted %d", told, missed)
			}
			if got := len(rec.messages()); got != n {
				t.Errorf("the healthy subscriber got %d of %d", got, n)
			}
			select {
			case m := <-unread:
				t.Errorf("the slow subscriber got message %d, which it missed", numberOf(m.Data))
			default:
			}
		})
	}
}

// TestSlowBlockRidesOut: under SlowBlock a subscriber that falls behind but reads on loses
// nothing: the hub waits for its room (up to MaxBlock) instead of failing its share.
func TestSlowBlockRidesOut(t *testing.T) {
	h := testHub(t, slowHubConfig(SlowBlock, 10*time.Second))
	hubLog := watchEvents(h.OnEvent)
	ctx := testCtx(t)
	pub := dial(t, h, Config{Name: "pub"})
	lagging := dial(t, h, slowClientConfig("lagging"))
	ch := make(chan *Msg)
	if _, err := lagging.SubscribeChan("feed", ch); err != nil {
		t.Fatal(err)
	}
	const n = 200 // 200 KB: five times what the lagging subscriber's buffers hold
	tickets := make([]*Ticket, 0, n)
	for i := 1; i <= n; i++ {
		tk, err := pub.Publish(ctx, "feed", numbered(i), AckProcessed)
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	for i := 1; i <= n; i++ {
		m := <-ch
		if got := numberOf(m.Data); got != i {
			t.Fatalf("message %d is %d", i, got)
		}
		if err := m.Confirm(); err != nil {
			t.Fatal(err)
		}
	}
	for i, tk := range tickets {
		if out, err := tk.Wait(ctx); err != nil || out.Processed != 1 {
			t.Errorf("publish %d: %+v, %v", i+1, out, err)
		}
	}
	barrier(t, hubLog, pub)
	if evs := hubLog.all(events.SlowConsumer, ""); len(evs) != 0 {
		t.Errorf("hub raised %d SlowConsumer events", len(evs))
	}
}

// TestConcurrentPublishersAreNotSlow: publishers routing to the same subscriber at the same
// time (each on its own session's reader) must not make it look slow to each other: its
// session had room for all of them.
func TestConcurrentPublishersAreNotSlow(t *testing.T) {
	h := testHub(t, HubConfig{})
	hubLog := watchEvents(h.OnEvent)
	ctx := testCtx(t)
	sub := dial(t, h, Config{Name: "sub"})
	var handled atomic.Int64
	if _, err := sub.Subscribe("fan.*", func(context.Context, *Msg) error { handled.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	const pubs, n = 4, 500
	var wg sync.WaitGroup
	errs := make(chan error, pubs*n)
	for p := range pubs {
		c := dial(t, h, Config{Name: fmt.Sprint("pub", p)})
		wg.Add(1)
		go func() {
			defer wg.Done()
			tickets := make([]*Ticket, 0, n)
			for i := range n {
				tk, err := c.Publish(ctx, fmt.Sprint("fan.", p), []byte(fmt.Sprint(i)), AckDelivered)
				if err != nil {
					errs <- err
					return
				}
				tickets = append(tickets, tk)
			}
			for i, tk := range tickets {
				if out, err := tk.Wait(ctx); err != nil || out.Delivered != 1 {
					errs <- fmt.Errorf("pub%d's publish %d: %+v, %w", p, i, out, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 3 {
			t.Error(err)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d publishes failed", failed, pubs*n)
	}
	barrier(t, hubLog, sub)
	if evs := hubLog.all(events.SlowConsumer, ""); len(evs) != 0 {
		t.Errorf("%d SlowConsumer events for a subscriber with room", len(evs))
	}
}

// awaitAcked waits until the hub's session to c has no unacknowledged message left. A client that
// handled everything can still be behind with its acknowledgements (on a loaded machine its
// writer waits its turn), and the hub's small send buffer of these tests then counts it as slow.
// No event says "acknowledged": this polls.
func awaitAcked(t *testing.T, h *testedHub, c *Client) {
	t.Helper()
	ctx := testCtx(t)
	for {
		for _, m := range h.memberList() {
			if m.id == c.sess.ID() && m.sess.Stats().SendBuffered == 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the hub's session to %s never had its acknowledgements", c.cfg.Name)
		case <-time.After(200 * time.Microsecond):
		}
	}
}

// TestSlowBlockFlushesFirst: the hub defers waking its subscribers' writers until the end of
// what it routes in one go (oneway.Flusher). When a subscriber's session is full under
// SlowBlock, the routing must wake them before it waits for room: the room can only come from
// the subscriber acknowledging messages whose writer still waits for its wake-up. Here the
// small messages routed first are under the bound that wakes a writer anyway, and the big one
// needs their room; without the early wake-up nothing would write them until the session's next
// heartbeat (seconds), after MaxBlock, and the big message would be dropped as slow.
func TestSlowBlockFlushesFirst(t *testing.T) {
	cfg := slowHubConfig(SlowBlock, time.Second)
	cfg.Session.Core.MaxMessageSize = 28 << 10
	cfg.Session.Core.HeartbeatInterval = 10 * time.Second // nothing but the routing wakes the writer
	h := testHub(t, cfg)
	hubLog := watchEvents(h.OnEvent)
	pub := dial(t, h, Config{Name: "pub"})
	sub := dial(t, h, Config{Name: "sub"})
	ch := make(chan *Msg, 16)
	if _, err := sub.SubscribeChan("burst", ch); err != nil {
		t.Fatal(err)
	}
	barrier(t, hubLog, sub)
	var pm *member
	for _, m := range h.memberList() {
		if m.sess.ID() == pub.sess.ID() {
			pm = m
		}
	}
	if pm == nil {
		t.Fatal("the publisher is not a member")
	}
	// What the publisher's drain does with a burst: route it all with one Flusher, then flush.
	// (The publisher sends nothing meanwhile, so its drain does not run.)
	pm.drainMu.Lock()
	var fl oneway.Flusher
	const small, big = 7, 26 << 10 // 7 KB: under the 8 KiB bound (a quarter of 32 KiB)
	for i := 1; i <= small; i++ {
		if err := h.route(pm, wire.Pub{PubID: uint64(i), Subject: "burst", Payload: numbered(i)}, &fl); err != nil {
			t.Fatal(err)
		}
	}
	payload := numbered(small + 1)
	payload = append(payload, make([]byte, big-len(payload))...)
	if err := h.route(pm, wire.Pub{PubID: small + 1, Subject: "burst", Payload: payload}, &fl); err != nil {
		t.Fatal(err)
	}
	fl.Flush()
	pm.drainMu.Unlock()
	if st := h.Stats(); st.SlowDropped != 0 || st.Sent != small+1 {
		t.Fatalf("%d copies sent, %d dropped as slow; want %d and none", st.Sent, st.SlowDropped, small+1)
	}
	for i := 1; i <= small+1; i++ {
		m := <-ch
		if got := numberOf(m.Data); got != i {
			t.Fatalf("message %d is %d", i, got)
		}
		_ = m.Confirm()
	}
	barrier(t, hubLog, pub)
	if evs := hubLog.all(events.SlowConsumer, ""); len(evs) != 0 {
		t.Errorf("hub raised %d SlowConsumer events", len(evs))
	}
}
