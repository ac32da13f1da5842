package pubsub

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/faultnet"
	"github.com/ftsl-go/ftsl/oneway"
)

// chaos parameters: publishers, subscribers, and messages per publisher (FTSL_PUBSUB_CHAOS
// overrides the last; -short takes a tenth).
const (
	chaosPublishers  = 3
	chaosSubscribers = 50
)

func chaosMessages() int {
	if v, err := strconv.Atoi(os.Getenv("FTSL_PUBSUB_CHAOS")); err == nil && v > 0 {
		return v
	}
	if testing.Short() {
		return 150
	}
	return 1500
}

func chaosLevel(seq int) AckLevel { return AckLevel(seq % 3) }

// chaosRejects says whether subscriber k fails publisher p's message seq for good (every attempt).
func chaosRejects(k, p, seq int) bool {
	return chaosLevel(seq) == AckProcessed && (seq*7+k*3+p)%89 == 0
}

// TestChaos: three publishers send to fifty subscribers at all three ack levels while a proxy
// resets the connections of all of them at random, over a hundred times. Every subscriber must
// get every message exactly once, in each publisher's order, byte for byte, and every ticket's
// outcome must count exactly: matched, delivered, processed, and the failures the subscribers
// chose, with their reasons.
func TestChaos(t *testing.T) {
	n := chaosMessages()
	seed := time.Now().UnixNano()
	t.Logf("seed %d, %d publishers x %d messages to %d subscribers", seed, chaosPublishers, n, chaosSubscribers)
	// SlowBlock: while a subscriber reconnects its hub-side buffer may fill; the publisher waits
	// for it rather than fail its share (a failure the test could not predict).
	h := testHub(t, HubConfig{SlowConsumers: SlowBlock, MaxBlock: time.Minute})
	px, err := faultnet.NewProxy(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	defer px.SetChaos(faultnet.Chaos{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := Config{Session: oneway.Config{Core: core.Config{BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond,
		AckDelay: time.Millisecond}}}
	var clients []*Client
	defer func() {
		// Closed, not aborted, and through the proxy once it is calm: a client aborted while it
		// was reconnecting could not tell the hub, whose session would then wait out its resume
		// window and hold up the hub's Close.
		px.SetChaos(faultnet.Chaos{})
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		for _, c := range clients {
			if err := c.Close(cctx); err != nil {
				t.Errorf("closing %s: %v", c.cfg.Name, err)
			}
			<-c.Done()
		}
	}()
	connect := func(name string) *Client {
		for {
			c, err := Dial(ctx, px.Addr(), Config{Session: cfg.Session, Name: name})
			if err == nil {
				clients = append(clients, c)
				return c
			}
			if ctx.Err() != nil {
				t.Fatal(err)
			}
		}
	}

	// Subscribers: each checks order and content per publisher, and rejects what the rule says.
	type seen struct {
		mu   sync.Mutex
		next [chaosPublishers]int // the seq expected next from each publisher
		errs []string
	}
	subs := make([]*seen, chaosSubscribers)
	var received sync.WaitGroup
	received.Add(chaosSubscribers * chaosPublishers)
	for k := range chaosSubscribers {
		s := &seen{}
		subs[k] = s
		c := connect(fmt.Sprintf("sub%02d", k))
		_, err := c.Subscribe("chaos.>", func(_ context.Context, m *Msg) error {
			if len(m.Data) < 8 {
				return errors.New("short message")
			}
			p, seq := int(m.Data[0]), int(binary.BigEndian.Uint32(m.Data[1:5]))
			s.mu.Lock()
			defer s.mu.Unlock()
			switch {
			case p >= chaosPublishers || m.Subject != fmt.Sprintf("chaos.p%d", p) || string(m.Data[5:]) != chaosBody(p, seq):
				s.errs = append(s.errs, fmt.Sprintf("bad message %q on %s", m.Data, m.Subject))
			case seq == s.next[p] && m.Attempt == 1:
				s.next[p]++
				if s.next[p] == n {
					received.Done()
				}
			case m.Redelivered && seq < s.next[p] && chaosRejects(k, p, seq) && m.Attempt <= oneway.DefaultMaxAttempts:
				// Another attempt at a message it rejected. (With several messages held at once,
				// the redelivery comes after messages taken since: order holds for first attempts.)
			default:
				s.errs = append(s.errs, fmt.Sprintf("from p%d: seq %d (attempt %d), expected %d", p, seq, m.Attempt, s.next[p]))
			}
			if chaosRejects(k, p, seq) {
				return errors.New("chaos says no")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// Now the connections start dying: about every 50 KB through the proxy, in either direction.
	px.SetChaos(faultnet.Chaos{MinBytes: 1, MaxBytes: 100 << 10, Seed: seed})
	px.KillAll()

	var wg sync.WaitGroup
	errs := make(chan error, chaosPublishers)
	for p := range chaosPublishers {
		c := connect(fmt.Sprintf("pub%d", p))
		wg.Add(1)
		go func() {
			defer wg.Done()
			tickets := make([]*Ticket, n)
			for seq := range n {
				msg := append([]byte{byte(p), 0, 0, 0, 0}, chaosBody(p, seq)...)
				binary.BigEndian.PutUint32(msg[1:5], uint32(seq))
				tk, err := c.Publish(ctx, fmt.Sprintf("chaos.p%d", p), msg, chaosLevel(seq))
				if err != nil {
					errs <- fmt.Errorf("p%d publish %d: %w", p, seq, err)
					return
				}
				tickets[seq] = tk
			}
			for seq, tk := range tickets {
				if err := checkChaosOutcome(ctx, tk, p, seq); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	done := make(chan struct{})
	go func() { received.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Error("subscribers did not get every message")
	}
	for k, s := range subs {
		s.mu.Lock()
		if len(s.errs) > 0 {
			t.Errorf("sub%02d: %d errors, first %s", k, len(s.errs), s.errs[0])
		}
		s.mu.Unlock()
	}
	st := px.Stats()
	t.Logf("%d connections, %d killed", st.Accepted, st.Killed)
	if st.Killed < 100 && n >= 1500 {
		t.Errorf("only %d connections killed: want at least 100", st.Killed)
	}
	px.SetChaos(faultnet.Chaos{})
}

func chaosBody(p, seq int) string { return fmt.Sprintf("-publisher %d message %d-", p, seq) }

// checkChaosOutcome checks one ticket against what the subscribers' rule makes of it.
func checkChaosOutcome(ctx context.Context, tk *Ticket, p, seq int) error {
	out, err := tk.Wait(ctx)
	level := chaosLevel(seq)
	want := Outcome{}
	var wantFail []string
	if level != AckNone {
		want.Matched, want.Delivered = chaosSubscribers, chaosSubscribers
	}
	if level == AckProcessed {
		for k := range chaosSubscribers {
			if chaosRejects(k, p, seq) {
				wantFail = append(wantFail, fmt.Sprintf("sub%02d", k))
			} else {
				want.Processed++
			}
		}
		want.Failed = len(wantFail)
	}
	var gotFail []string
	for _, f := range out.Failures {
		if f.Reason != "chaos says no" {
			return fmt.Errorf("p%d message %d: %s failed with %q", p, seq, f.Subscriber, f.Reason)
		}
		gotFail = append(gotFail, f.Subscriber)
	}
	if (err != nil) != (len(wantFail) > 0) || len(gotFail) != len(wantFail) {
		return fmt.Errorf("p%d message %d (%v): failures %v, want %v (%v)", p, seq, level, gotFail, wantFail, err)
	}
	out.Failures = nil
	if fmt.Sprint(out) != fmt.Sprint(want) {
		return fmt.Errorf("p%d message %d (%v): outcome %+v, want %+v", p, seq, level, out, want)
	}
	return nil
}
