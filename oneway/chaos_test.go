package oneway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/testkit"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/internal/faultnet"
)

func chaosLevel(i uint64) AckLevel { return AckLevel((i * 7) % 3) }

// chaosWorkers handle the server's side of the chaos test.
const chaosWorkers = 4

// The receiving application fails every attempt at some messages and the first attempt at others.
func alwaysFails(i uint64) bool { return i%11 == 0 }
func failsOnce(i uint64) bool   { return i%4 == 0 }

func chaosContent(seed, i uint64) []byte {
	b := make([]byte, testkit.LogUniformSize(mrand.New(mrand.NewPCG(seed, i)), 64<<10))
	testkit.Fill(b, seed, i)
	return b
}

// TestChaos is core's chaos test one layer up: tickets of all three levels, receivers that fail
// some messages for good and others once (the server's with several handler goroutines), and a
// proxy resetting the connection after random byte counts. Every ticket must end in the status its level and the receiver's verdicts call for,
// exactly once; every message must be handled in order with the right attempts; and the events
// must match the tickets one for one.
func TestChaos(t *testing.T) {
	n := testkit.ChaosMessages()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, %d messages each way", seed, n)
	// Sending flat out, one ack can end thousands of tickets at once: the event queues must hold
	// that burst for "events match tickets one for one" to hold.
	evq := events.Config{QueueSize: 1 << 16}
	ccfg := Config{Core: core.Config{BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond, AckDelay: time.Millisecond}, Events: evq}
	p := newPair(t, true, ccfg, Config{Core: core.Config{AckDelay: time.Millisecond}, Events: evq})
	p.proxy.SetChaos(faultnet.Chaos{MinBytes: 1, MaxBytes: 3 << 20, Seed: int64(seed)})
	p.proxy.KillAll() // chaos applies to connections made from now on
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	sides := []struct {
		name     string
		s        *Session
		seed     uint64
		col      *collector
		tickets  []*Ticket
		handled  chan error
		attempts map[uint64][]int
	}{
		{name: "client", s: p.client, seed: seed},
		{name: "server", s: p.server, seed: seed + 1},
	}
	for i := range sides {
		sides[i].col = collect(sides[i].s)
		sides[i].handled = make(chan error, 1)
	}
	// The client's handler checks the server's messages: in order, byte for byte, with the
	// attempts the verdicts call for.
	for i := range sides[:1] {
		me, peerSeed := &sides[i], sides[1-i].seed
		var next uint64 = 1
		var attempt int
		var once sync.Once
		finish := func(err error) { once.Do(func() { me.handled <- err }) }
		_ = me.s.Handle(func(_ context.Context, d *Delivery) error {
			if d.ID != next {
				if d.ID == next+1 && attempt > 0 { // the previous message is done with
					next, attempt = d.ID, 0
				} else {
					finish(fmt.Errorf("%s got message %d, expected %d", me.name, d.ID, next))
					return nil
				}
			}
			attempt++
			if d.Attempt != attempt || d.Redelivered != (attempt > 1) || d.Level != chaosLevel(d.ID) {
				finish(fmt.Errorf("%s: message %d attempt %d (redelivered %v, level %v), expected attempt %d",
					me.name, d.ID, d.Attempt, d.Redelivered, d.Level, attempt))
			}
			if !bytes.Equal(d.Data, chaosContent(peerSeed, d.ID)) {
				finish(fmt.Errorf("%s: message %d corrupted", me.name, d.ID))
			}
			if d.ID == uint64(n) && (d.Level != AckProcessed || !alwaysFails(d.ID) || attempt == 3) {
				finish(nil)
			}
			if d.Level == AckProcessed && (alwaysFails(d.ID) || failsOnce(d.ID) && attempt == 1) {
				return fmt.Errorf("no %d/%d", d.ID, attempt)
			}
			return nil
		})
	}
	// The server handles the client's messages with several goroutines, each pausing a random
	// while, so messages finish out of order and redeliveries go to any of them; each message must
	// still come byte for byte, with exactly the attempts its verdicts call for.
	{
		me, peerSeed := &sides[1], sides[0].seed
		var mu sync.Mutex
		attempts := make([]int, n+1)
		finished := 0
		var once sync.Once
		finish := func(err error) { once.Do(func() { me.handled <- err }) }
		_ = me.s.Handle(func(_ context.Context, d *Delivery) error {
			for range mrand.IntN(10) {
				runtime.Gosched()
			}
			if d.ID == 0 || d.ID > uint64(n) {
				finish(fmt.Errorf("server got message %d", d.ID))
				return nil
			}
			mu.Lock()
			attempts[d.ID]++
			attempt := attempts[d.ID]
			mu.Unlock()
			if d.Attempt != attempt || d.Redelivered != (attempt > 1) || d.Level != chaosLevel(d.ID) {
				finish(fmt.Errorf("server: message %d attempt %d (redelivered %v, level %v), expected attempt %d",
					d.ID, d.Attempt, d.Redelivered, d.Level, attempt))
			}
			if !bytes.Equal(d.Data, chaosContent(peerSeed, d.ID)) {
				finish(fmt.Errorf("server: message %d corrupted", d.ID))
			}
			fail := d.Level == AckProcessed && (alwaysFails(d.ID) || failsOnce(d.ID) && attempt == 1)
			if !fail || alwaysFails(d.ID) && attempt == 3 {
				mu.Lock()
				finished++
				if finished == n {
					finish(nil)
				}
				mu.Unlock()
			}
			if fail {
				return fmt.Errorf("no %d/%d", d.ID, attempt)
			}
			return nil
		}, Concurrency(chaosWorkers))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i := range sides {
		me := &sides[i]
		me.tickets = make([]*Ticket, 0, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= uint64(n); i++ {
				send := me.s.Send
				if i%3 == 0 { // content is fresh for each message and never changed
					send = func(ctx context.Context, m []byte, level AckLevel) (*Ticket, error) {
						k := min(len(m), int(i%100))
						return me.s.SendShared(ctx, m[:k], m[k:], level)
					}
				}
				tk, err := send(ctx, chaosContent(me.seed, i), chaosLevel(i))
				if err != nil {
					errs <- fmt.Errorf("%s send %d: %w", me.name, i, err)
					return
				}
				me.tickets = append(me.tickets, tk)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range sides {
		select {
		case err := <-sides[i].handled:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatalf("%s: handler never reached the last message", sides[i].name)
		}
	}
	// Every ticket ends, in the status its level and the receiver's verdicts call for.
	for _, me := range sides {
		for _, tk := range me.tickets {
			st, err := tk.Wait(ctx)
			i := tk.ID()
			want := StatusDelivered
			if chaosLevel(i) == AckProcessed {
				want = StatusProcessed
				if alwaysFails(i) {
					want = StatusFailed
				}
			}
			if st != want {
				t.Fatalf("%s: ticket %d (%v): %v %v, want %v", me.name, i, chaosLevel(i), st, err, want)
			}
			if want == StatusFailed {
				var rej *RejectedError
				if !errors.As(err, &rej) || rej.Reason != fmt.Sprintf("no %d/3", i) {
					t.Fatalf("%s: ticket %d failed with %v", me.name, i, err)
				}
			} else if err != nil {
				t.Fatalf("%s: ticket %d: %v", me.name, i, err)
			}
		}
	}
	ps := p.proxy.Stats()
	p.proxy.SetChaos(faultnet.Chaos{})
	if err := p.client.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The events match the tickets one for one: no event lost, none duplicated.
	for _, me := range sides {
		<-me.col.done
		if d := me.s.EventsDropped(); d != 0 {
			t.Fatalf("%s: %d events dropped", me.name, d)
		}
		counts := map[string]int{}
		me.col.mu.Lock()
		for _, e := range me.col.channel {
			if e.Message == 0 {
				continue
			}
			counts[fmt.Sprintf("%v %d", e.Kind, e.Message)]++
		}
		me.col.mu.Unlock()
		for i := uint64(1); i <= uint64(n); i++ {
			want := map[events.Kind]int{}
			switch chaosLevel(i) {
			case AckDelivered:
				want[events.MessageDelivered] = 1
			case AckProcessed:
				want[events.MessageDelivered] = 1
				if alwaysFails(i) {
					want[events.MessageFailed] = 1
				} else {
					want[events.MessageProcessed] = 1
				}
			}
			for _, k := range []events.Kind{events.MessageDelivered, events.MessageProcessed, events.MessageFailed} {
				if got := counts[fmt.Sprintf("%v %d", k, i)]; got != want[k] {
					t.Fatalf("%s: message %d: %d %v events, want %d", me.name, i, got, k, want[k])
				}
			}
		}
	}
	t.Logf("%d connections, %d killed; client resent %d frames", ps.Accepted, ps.Killed, p.client.Stats().FramesResent)
	if ps.Killed < 200 && n >= 50000 {
		t.Fatalf("only %d connections killed", ps.Killed)
	}
}
