package pubsub

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub/internal/wire"
)

// goodPair runs a well-behaved publisher and subscriber on subject while a test attacks the
// hub: n publishes at AckProcessed, flat out. check waits for them and fails the test unless
// every one arrived, once and in order, and every outcome is exactly one processed.
func goodPair(t *testing.T, h *testedHub, subject string, n int) (check func()) {
	t.Helper()
	ctx := testCtx(t)
	sub := dial(t, h, Config{Name: "good-sub"})
	pub := dial(t, h, Config{Name: "good-pub"})
	var mu sync.Mutex
	var got []int
	all := make(chan struct{})
	if _, err := sub.Subscribe(subject, func(_ context.Context, m *Msg) error {
		var i int
		fmt.Sscan(string(m.Data), &i)
		mu.Lock()
		defer mu.Unlock()
		got = append(got, i)
		if len(got) == n {
			close(all)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tickets := make(chan *Ticket, n)
	errs := make(chan error, 1)
	go func() {
		defer close(tickets)
		for i := 1; i <= n; i++ {
			tk, err := pub.Publish(ctx, subject, []byte(fmt.Sprint(i)), AckProcessed)
			if err != nil {
				errs <- err
				return
			}
			tickets <- tk
		}
	}()
	return func() {
		t.Helper()
		i := 0
		for tk := range tickets {
			i++
			out, err := tk.Wait(ctx)
			if err != nil || out.Matched != 1 || out.Delivered != 1 || out.Processed != 1 {
				t.Errorf("good publish %d: %+v, %v", i, out, err)
			}
		}
		select {
		case err := <-errs:
			t.Fatalf("good publisher: %v", err)
		default:
		}
		select {
		case <-all:
		case <-ctx.Done():
		}
		mu.Lock()
		defer mu.Unlock()
		if len(got) != n {
			t.Fatalf("good subscriber got %d of %d", len(got), n)
		}
		for k, v := range got {
			if v != k+1 {
				t.Fatalf("good subscriber's message %d is %d", k+1, v)
			}
		}
	}
}

// TestHostileClients: while a good publisher and subscriber work, other sessions send the hub
// garbage, truncated and out-of-order messages, huge subjects, and a subscriber never reads while
// its subject is flooded. Every bad message is refused, and nothing else changes for the others.
func TestHostileClients(t *testing.T) {
	h := testHub(t, HubConfig{})
	hubLog := watchEvents(h.OnEvent)
	ctx := testCtx(t)
	check := goodPair(t, h, "good.x", 1000)
	var wg sync.WaitGroup
	actor := func(name string, f func(t *testing.T)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(name, f) // (subtests of a test whose goroutine waits for them: see wg.Wait)
		}()
	}
	valid := map[string][]byte{
		"CONNECT": wire.AppendConnect(nil, wire.Connect{Version: wire.Version, Name: "x", Inbox: "_INBOX.garbage1"}),
		"SUB":     wire.AppendSub(nil, wire.Sub{SID: 7, Subject: "garbage.>", Queue: "q"}),
		"UNSUB":   wire.AppendUnsub(nil, 7),
		"PUB":     append(wire.AppendPubHeader(nil, 1, uint8(AckProcessed), "garbage.y", "_INBOX.garbage1.1"), "payload"...),
	}

	actor("before CONNECT", func(t *testing.T) {
		raw := rawDial(t, h, oneway.Config{})
		for _, op := range []string{"SUB", "UNSUB", "PUB"} {
			if err := raw.ask(t, valid[op]); err == nil || !strings.Contains(err.Error(), "connect first") {
				t.Errorf("%s before CONNECT: %v", op, err)
			}
		}
		for _, b := range [][]byte{{}, {0}, {wire.OpMsg}, {wire.OpOutcome, 1}, {255, 1, 2, 3}} {
			if err := raw.ask(t, b); err == nil {
				t.Errorf("% x before CONNECT accepted", b)
			}
		}
		c := valid["CONNECT"]
		for i := range len(c) - 1 { // every truncation
			if err := raw.ask(t, c[:i]); err == nil {
				t.Errorf("CONNECT cut to %d bytes accepted", i)
			}
		}
		if err := raw.ask(t, append(c[:len(c):len(c)], 0)); err == nil {
			t.Error("CONNECT with a byte too many accepted")
		}
		for _, inbox := range []string{"", "INBOX.x", "_INBOX.", "_INBOX.a.b", "_INBOX.*", "_INBOX.>", "_INBOX." + strings.Repeat("i", 300)} {
			b := wire.AppendConnect(nil, wire.Connect{Version: wire.Version, Inbox: inbox})
			if err := raw.ask(t, b); !errors.Is(err, ErrPermission) {
				t.Errorf("CONNECT with inbox %.20q: %v, want ErrPermission", inbox, err)
			}
		}
		// A bad inbox refuses the connection for good, as a wrong version does.
		if err := raw.ask(t, wire.AppendConnect(nil, wire.Connect{Version: wire.Version, Inbox: raw.inbox})); !errors.Is(err, ErrPermission) {
			t.Errorf("CONNECT after a refused one: %v, want ErrPermission", err)
		}
		other := rawDial(t, h, oneway.Config{})
		if err := other.ask(t, wire.AppendConnect(nil, wire.Connect{Version: 99, Inbox: other.inbox})); err == nil ||
			!strings.Contains(err.Error(), "protocol version 99") {
			t.Errorf("CONNECT of version 99: %v", err)
		}
	})

	actor("after CONNECT", func(t *testing.T) {
		raw := rawDial(t, h, oneway.Config{})
		raw.connect(t, "garbage")
		for _, op := range []string{"SUB", "UNSUB", "PUB"} {
			b := valid[op]
			for i := 1; i < len(b); i++ {
				if op == "PUB" && i >= len(b)-len("payload") {
					break // the payload is the rest: a shorter one is still a PUB
				}
				if err := raw.ask(t, b[:i]); err == nil {
					t.Errorf("%s cut to %d bytes accepted", op, i)
				}
			}
		}
		for name, b := range map[string][]byte{
			"SUB with a byte too many": append(append([]byte(nil), valid["SUB"]...), 0),
			"PUB at ack level 7":       wire.AppendPubHeader(nil, 1, 7, "garbage.y", ""),
			"UNSUB of no subscription": wire.AppendUnsub(nil, 12345),
			"a second CONNECT":         valid["CONNECT"],
			"MSG to the hub":           wire.AppendMsgHeader(nil, 1, "good.x", "", "forged"),
			"OUTCOME to the hub":       wire.AppendOutcome(nil, wire.Outcome{PubID: 1}),
			"NOTICE to the hub":        wire.AppendNotice(nil, wire.Notice{Kind: 1}),
			"op 0":                     {0, 1, 2},
			"op 200":                   {200},
			"SUB to an empty token":    wire.AppendSub(nil, wire.Sub{SID: 8, Subject: "a..b"}),
			"SUB to a bad wildcard":    wire.AppendSub(nil, wire.Sub{SID: 8, Subject: "a.>.b"}),
			"PUB to a wildcard":        wire.AppendPubHeader(nil, 1, 0, "good.*", ""),
			"PUB to invalid UTF-8":     wire.AppendPubHeader(nil, 1, 0, "good.\xff", ""),
		} {
			if err := raw.ask(t, b); err == nil {
				t.Errorf("%s accepted", name)
			}
		}
		if err := raw.ask(t, valid["SUB"]); err != nil {
			t.Fatalf("a valid SUB: %v", err)
		}
		if err := raw.ask(t, valid["SUB"]); err == nil {
			t.Error("a SUB reusing its ID accepted")
		}
		if err := raw.ask(t, valid["UNSUB"]); err != nil {
			t.Errorf("a valid UNSUB: %v", err)
		}
		// Random messages, of every op but SUB (a random SUB could be to ">", and this
		// session reads nothing: the good pair would count it).
		r := rand.New(rand.NewPCG(1, 2))
		tickets := make([]*oneway.Ticket, 0, 2000)
		for range 2000 {
			b := make([]byte, r.IntN(40))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			if len(b) > 0 && b[0] == wire.OpSub {
				b[0] = wire.OpPub
			}
			tk, err := raw.s.Send(ctx, b, oneway.AckProcessed)
			if err != nil {
				t.Fatal(err)
			}
			tickets = append(tickets, tk)
		}
		for _, tk := range tickets {
			if _, err := tk.Wait(ctx); errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("a random message was never answered")
			}
		}
	})

	actor("huge subjects", func(t *testing.T) {
		var cfg Config
		cfg.Name = "huge"
		cfg.MaxSubjectLength = 4096
		c := dial(t, h, cfg)
		nop := func(context.Context, *Msg) error { return nil }
		for i := range 50 {
			long := strings.Repeat(fmt.Sprint(i%10), 4096)
			if _, err := c.Subscribe(long, nop); !errors.Is(err, ErrInvalidSubject) {
				t.Fatalf("Subscribe to %d bytes: %v", len(long), err)
			}
			tk, err := c.Publish(ctx, long, []byte("x"), AckProcessed)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tk.Wait(ctx); !errors.Is(err, ErrInvalidSubject) {
				t.Fatalf("Publish to %d bytes: %v", len(long), err)
			}
		}
		deep := strings.Repeat("d.", 127) + ">" // 255 bytes, 128 tokens: within the limit
		rec := newRecorder()
		if _, err := c.Subscribe(deep, rec.handle); err != nil {
			t.Fatalf("Subscribe to a deep pattern: %v", err)
		}
		subject := strings.Repeat("d.", 127) + "e"
		tk, err := c.Publish(ctx, subject, []byte("deep"), AckProcessed)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := tk.Wait(ctx); err != nil || out.Processed != 1 {
			t.Fatalf("Publish to a deep subject: %+v, %v", out, err)
		}
	})

	actor("never reads", func(t *testing.T) {
		var cfg oneway.Config
		cfg.Core.MaxMessageSize = 8 << 10
		cfg.Core.ReceiveBufferBytes = 16 << 10
		raw := rawDial(t, h, cfg)
		raw.connect(t, "sleeper")
		if err := raw.ask(t, wire.AppendSub(nil, wire.Sub{SID: 1, Subject: "flood.>"})); err != nil {
			t.Fatal(err)
		}
		flooder := dial(t, h, Config{Name: "flooder"})
		payload := make([]byte, 4<<10)
		var last *Ticket
		for i := range 2000 { // 8 MiB: the sleeper's window and its share of the hub fill
			tk, err := flooder.Publish(ctx, fmt.Sprint("flood.", i%10), payload, AckDelivered)
			if err != nil {
				t.Fatal(err)
			}
			last = tk
		}
		out, err := last.Wait(ctx)
		if !errors.Is(err, ErrSlowConsumer) || out.Matched != 1 || len(out.Failures) != 1 || out.Failures[0].Subscriber != "sleeper" {
			t.Errorf("the last flood publish: %+v, %v; want the sleeper's slow-consumer failure", out, err)
		}
		if got := raw.s.Stats().MessagesReceived; got != 0 {
			t.Errorf("the sleeper read %d messages", got)
		}
	})

	wg.Wait()
	check()
	if evs := hubLog.all(events.SlowConsumer, ""); len(evs) == 0 {
		t.Error("no SlowConsumer event for the sleeper")
	} else if e := evs[0]; !strings.HasPrefix(e.Subject, "flood.") {
		t.Errorf("SlowConsumer event %v", e)
	}
	// The hub still takes new clients and serves them.
	late := dial(t, h, Config{Name: "late"})
	rec := newRecorder()
	if _, err := late.Subscribe("late", rec.handle); err != nil {
		t.Fatal(err)
	}
	if _, err := late.Publish(ctx, "late", []byte("ok"), AckNone); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 1)
}

// TestSubscriptionFlood: a client sends SUB requests as fast as it can. The hub holds at most
// MaxSubscriptions of them and refuses every one beyond with ErrLimit, while a good pair works.
func TestSubscriptionFlood(t *testing.T) {
	const limit = 1000
	h := testHub(t, HubConfig{MaxSubscriptions: limit})
	ctx := testCtx(t)
	check := goodPair(t, h, "good.x", 1000)
	base := h.index.Len()
	raw := rawDial(t, h, oneway.Config{})
	raw.connect(t, "flooder")
	n := floodRequests()
	var accepted, refused, other atomic.Int64
	var otherErr atomic.Value
	var ends sync.WaitGroup // the OnEnd calls: they run after their ticket's end is visible
	var last *oneway.Ticket
	maxSeen := 0
	var b []byte
	for i := 1; i <= n; i++ {
		b = wire.AppendSub(b[:0], wire.Sub{SID: uint64(i), Subject: fmt.Sprint("flood.", i)})
		tk, err := raw.s.Send(ctx, b, oneway.AckProcessed)
		if err != nil {
			t.Fatal(err)
		}
		ends.Add(1)
		tk.OnEnd(func(tk *oneway.Ticket) {
			defer ends.Done()
			switch err := ticketError(tk.Err()); {
			case err == nil:
				accepted.Add(1)
			case errors.Is(err, ErrLimit):
				refused.Add(1)
			default:
				other.Add(1)
				otherErr.Store(err)
			}
		})
		last = tk
		if i%(n/100) == 0 {
			maxSeen = max(maxSeen, h.index.Len()-base)
		}
	}
	if _, err := last.Wait(ctx); !errors.Is(ticketError(err), ErrLimit) {
		t.Fatalf("the last SUB: %v", err)
	}
	check()
	if got := h.index.Len() - base; got != limit || maxSeen > limit {
		t.Errorf("the flooder holds %d subscriptions (at most %d seen), want %d", got, maxSeen, limit)
	}
	all := make(chan struct{})
	go func() { ends.Wait(); close(all) }()
	select {
	case <-all:
	case <-ctx.Done():
		t.Fatal("not every ticket's OnEnd ran")
	}
	if a, r, o := accepted.Load(), refused.Load(), other.Load(); a != limit || r != int64(n-limit) || o != 0 {
		t.Errorf("%d SUBs: %d accepted, %d refused with ErrLimit, %d otherwise (%v)", n, a, r, o, otherErr.Load())
	}
}

// floodRequests is how many SUBs TestSubscriptionFlood sends: a million, or fewer where -race or
// -short would make that take too long.
func floodRequests() int {
	switch {
	case testing.Short():
		return 20000
	case raceEnabled:
		return 100000
	}
	return 1000000
}

// TestDeafPublisher: a client that publishes asking for outcomes and never reads them cannot
// grow the hub: its outcomes wait, up to maxWaiting, and then the hub takes no more of its
// messages (its session fills and its sends block) until it reads again; then everything it
// sent is carried out. A good pair works throughout.
func TestDeafPublisher(t *testing.T) {
	var hcfg HubConfig
	hcfg.Session.Core.MaxMessageSize = 16 << 10
	hcfg.Session.Core.SendBufferBytes = 64 << 10 // a couple of thousand outcomes
	h := testHub(t, hcfg)
	ctx := testCtx(t)
	check := goodPair(t, h, "good.x", 1000)
	var cfg oneway.Config
	cfg.Core.MaxMessageSize = 1024
	cfg.Core.ReceiveBufferBytes = 2048
	raw := rawDial(t, h, cfg)
	raw.connect(t, "deaf")
	var deaf *member
	h.mu.Lock()
	for m := range h.members {
		if m.id == raw.s.ID() {
			deaf = m
		}
	}
	h.mu.Unlock()
	waiting := func() int {
		deaf.mu.Lock()
		defer deaf.mu.Unlock()
		return len(deaf.waiting)
	}
	const n = 20000
	tickets := make([]*oneway.Ticket, 0, n)
	most := 0
	for i := 1; i <= n; i++ {
		tk, err := raw.s.Send(ctx, wire.AppendPubHeader(nil, uint64(i), uint8(AckDelivered), "nobody", ""), oneway.AckProcessed)
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
		if i%100 == 0 {
			most = max(most, waiting())
		}
	}
	// No event says the hub stopped reading it: look until it did.
	for deadline := time.Now().Add(10 * time.Second); !deaf.throttled.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the hub never stopped taking the deaf client's messages (%d outcomes waiting)", waiting())
		}
	}
	if most = max(most, waiting()); most > maxWaiting {
		t.Errorf("%d outcomes waited for the deaf client, the bound is %d", most, maxWaiting)
	}
	check()

	// It reads again: every publish is carried out, and it gets every outcome.
	outcomes := 0
	for outcomes < n {
		d, err := raw.s.Recv(ctx)
		if err != nil {
			t.Fatalf("after %d outcomes: %v", outcomes, err)
		}
		if o, err := wire.DecodeOutcome(d.Data); err != nil || o.Matched != 0 {
			t.Fatalf("outcome %d: %+v, %v", outcomes+1, o, err)
		}
		outcomes++
	}
	for i, tk := range tickets {
		if st, err := tk.Wait(ctx); st != oneway.StatusProcessed {
			t.Fatalf("PUB %d: %v, %v", i+1, st, err)
		}
	}
}
