package oneway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/testkit"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/internal/faultnet"
)

func testCtx(t testing.TB) context.Context { return testkit.Ctx(t) }

type pair struct {
	client, server *Session
	ln             *Listener
	proxy          *faultnet.Proxy // nil unless asked for
}

// newPair opens a one-way session over loopback TCP, through a fault-injecting proxy if proxied,
// and checks when the test ends that every goroutine is gone.
func newPair(t *testing.T, proxied bool, clientCfg, serverCfg Config) pair {
	t.Helper()
	ctx := testCtx(t)
	base := runtime.NumGoroutine()
	ln, err := Listen("127.0.0.1:0", serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	var px *faultnet.Proxy
	if proxied {
		if px, err = faultnet.NewProxy(addr); err != nil {
			t.Fatal(err)
		}
		addr = px.Addr()
	}
	c, err := Dial(ctx, addr, clientCfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Abort()
		_ = ln.Close()
		if px != nil {
			_ = px.Close()
		}
		for _, x := range []*Session{c, s} {
			select {
			case <-x.Done():
			case <-time.After(10 * time.Second):
				t.Errorf("session did not finish")
			}
		}
		testkit.CheckGoroutines(t, base)
	})
	return pair{client: c, server: s, ln: ln, proxy: px}
}

// collector records events from a callback and from the channel.
type collector struct {
	mu       sync.Mutex
	callback []events.Event
	channel  []events.Event
	done     chan struct{}
}

func collect(s *Session) *collector {
	c := &collector{done: make(chan struct{})}
	s.OnEvent(func(e events.Event) {
		c.mu.Lock()
		c.callback = append(c.callback, e)
		c.mu.Unlock()
	})
	ch := s.Events()
	go func() {
		defer close(c.done)
		for e := range ch {
			c.mu.Lock()
			c.channel = append(c.channel, e)
			c.mu.Unlock()
		}
	}()
	return c
}

// messageEvents returns the message events the channel saw, as "kind mid" strings.
func (c *collector) messageEvents() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.channel {
		if e.Message != 0 {
			out = append(out, fmt.Sprintf("%v %d", e.Kind, e.Message))
		}
	}
	return out
}

func TestAckLevels(t *testing.T) {
	for _, tc := range []struct {
		level  AckLevel
		status Status
		events []string // message events the sender sees for message 1
	}{
		{AckNone, StatusDelivered, nil},
		{AckDelivered, StatusDelivered, []string{"message delivered 1"}},
		{AckProcessed, StatusProcessed, []string{"message delivered 1", "message processed 1"}},
	} {
		t.Run(tc.level.String(), func(t *testing.T) {
			p := newPair(t, false, Config{}, Config{})
			ctx := testCtx(t)
			col := collect(p.client)
			tk, err := p.client.Send(ctx, []byte("hello"), tc.level)
			if err != nil {
				t.Fatal(err)
			}
			if tk.ID() != 1 || tk.Level() != tc.level {
				t.Fatalf("ticket %d level %v", tk.ID(), tk.Level())
			}
			d, err := p.server.Recv(ctx)
			if err != nil || string(d.Data) != "hello" || d.Level != tc.level || d.Attempt != 1 || d.Redelivered {
				t.Fatalf("delivery %+v, %v", d, err)
			}
			if err := d.Confirm(); err != nil {
				t.Fatal(err)
			}
			st, err := tk.Wait(ctx)
			if st != tc.status || err != nil {
				t.Fatalf("Wait: %v, %v; want %v", st, err, tc.status)
			}
			if tk.Status() != tc.status || tk.Err() != nil {
				t.Fatalf("Status %v, Err %v", tk.Status(), tk.Err())
			}
			select {
			case <-tk.Done():
			default:
				t.Fatal("Done not closed after Wait")
			}
			// A marker message afterwards: its events come after anything message 1 raised, so
			// once we see them, message 1's events are all in.
			mk, _ := p.client.Send(ctx, []byte("marker"), AckDelivered)
			if _, err := p.server.Recv(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := mk.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			if err := p.client.Close(ctx); err != nil {
				t.Fatal(err)
			}
			<-col.done
			want := append(append([]string{}, tc.events...), "message delivered 2")
			got := col.messageEvents()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("channel events %v, want %v", got, want)
			}
			<-p.client.Done()
			col.mu.Lock()
			defer col.mu.Unlock()
			if fmt.Sprint(col.callback) != fmt.Sprint(col.channel) {
				t.Fatalf("callback saw %v\nchannel saw %v", col.callback, col.channel)
			}
			last := col.channel[len(col.channel)-1]
			if last.Kind != events.SessionClosed || last.Session != p.client.ID() {
				t.Fatalf("last event %v", last)
			}
		})
	}
}

func TestRedelivery(t *testing.T) {
	for _, how := range []string{"reject", "recv-again"} {
		t.Run(how, func(t *testing.T) {
			p := newPair(t, false, Config{}, Config{})
			ctx := testCtx(t)
			tk, err := p.client.Send(ctx, []byte("job"), AckProcessed)
			if err != nil {
				t.Fatal(err)
			}
			for attempt := 1; attempt <= 3; attempt++ {
				d, err := p.server.Recv(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if d.ID != 1 || d.Attempt != attempt || d.Redelivered != (attempt > 1) || string(d.Data) != "job" {
					t.Fatalf("delivery %d: %+v", attempt, d)
				}
				switch {
				case attempt == 3:
					if err := d.Confirm(); err != nil {
						t.Fatal(err)
					}
				case how == "reject":
					if err := d.Reject(errors.New("busy")); err != nil {
						t.Fatal(err)
					}
				} // recv-again: just ask for the next message without a verdict
			}
			if st, err := tk.Wait(ctx); st != StatusProcessed || err != nil {
				t.Fatalf("ticket %v %v", st, err)
			}
			// Exactly three deliveries: the next Recv waits for a new message.
			short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			if d, err := p.server.Recv(short); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("a fourth delivery: %+v %v", d, err)
			}
		})
	}
}

func TestAlwaysFails(t *testing.T) {
	p := newPair(t, false, Config{}, Config{MaxAttempts: 4})
	ctx := testCtx(t)
	tk, _ := p.client.Send(ctx, []byte("poison"), AckProcessed)
	next, _ := p.client.Send(ctx, []byte("next"), AckProcessed)
	for attempt := 1; attempt <= 4; attempt++ {
		d, err := p.server.Recv(ctx)
		if err != nil || d.ID != 1 || d.Attempt != attempt {
			t.Fatalf("attempt %d: %+v %v", attempt, d, err)
		}
		if err := d.Reject(fmt.Errorf("bad record %d", attempt)); err != nil {
			t.Fatal(err)
		}
		if err := d.Reject(errors.New("twice")); !errors.Is(err, ErrNotCurrent) {
			t.Fatalf("second Reject of one attempt: %v", err)
		}
	}
	// The sender hears at once, without the receiver asking for more.
	st, err := tk.Wait(ctx)
	var rej *RejectedError
	if st != StatusFailed || !errors.Is(err, ErrRejected) || !errors.As(err, &rej) || rej.Reason != "bad record 4" || rej.Message != 1 {
		t.Fatalf("ticket: %v %v", st, err)
	}
	d, err := p.server.Recv(ctx)
	if err != nil || d.ID != 2 || string(d.Data) != "next" || d.Attempt != 1 {
		t.Fatalf("next message: %+v %v", d, err)
	}
	if err := d.Confirm(); err != nil {
		t.Fatal(err)
	}
	if st, err := next.Wait(ctx); st != StatusProcessed || err != nil {
		t.Fatalf("next ticket: %v %v", st, err)
	}
}

// TestRefuse: a refused message fails at its first attempt, with no redelivery.
func TestRefuse(t *testing.T) {
	p := newPair(t, false, Config{}, Config{MaxAttempts: 4})
	ctx := testCtx(t)
	tk, _ := p.client.Send(ctx, []byte("poison"), AckProcessed)
	next, _ := p.client.Send(ctx, []byte("next"), AckNone)
	d, err := p.server.Recv(ctx)
	if err != nil || d.ID != 1 {
		t.Fatalf("first: %+v %v", d, err)
	}
	if err := d.Refuse(errors.New("malformed")); err != nil {
		t.Fatal(err)
	}
	if err := d.Refuse(nil); !errors.Is(err, ErrNotCurrent) {
		t.Fatalf("second Refuse: %v", err)
	}
	st, err := tk.Wait(ctx)
	var rej *RejectedError
	if st != StatusFailed || !errors.As(err, &rej) || rej.Reason != "malformed" {
		t.Fatalf("ticket: %v %v", st, err)
	}
	d, err = p.server.Recv(ctx)
	if err != nil || d.ID != 2 || d.Redelivered {
		t.Fatalf("next message: %+v %v", d, err)
	}
	if err := d.Refuse(nil); err != nil { // at AckNone it only releases the message
		t.Fatal(err)
	}
	if st, err := next.Wait(ctx); st == StatusFailed || err != nil {
		t.Fatalf("next ticket: %v %v", st, err)
	}
}

func TestHandle(t *testing.T) {
	p := newPair(t, false, Config{}, Config{})
	ctx := testCtx(t)
	var mu sync.Mutex
	seen := map[string][]int{}
	err := p.server.Handle(func(ctx context.Context, d *Delivery) error {
		mu.Lock()
		seen[string(d.Data)] = append(seen[string(d.Data)], d.Attempt)
		mu.Unlock()
		switch string(d.Data) {
		case "flaky":
			if d.Attempt < 3 {
				panic("not yet")
			}
		case "broken":
			return fmt.Errorf("broken on attempt %d", d.Attempt)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.server.Handle(func(context.Context, *Delivery) error { return nil }); err == nil {
		t.Fatal("second Handle accepted")
	}
	flaky, _ := p.client.Send(ctx, []byte("flaky"), AckProcessed)
	broken, _ := p.client.Send(ctx, []byte("broken"), AckProcessed)
	// AckProcessed, so that its ticket ends only after the handler has recorded it.
	fine, _ := p.client.Send(ctx, []byte("fine"), AckProcessed)
	if st, err := flaky.Wait(ctx); st != StatusProcessed || err != nil {
		t.Fatalf("flaky: %v %v", st, err)
	}
	st, err := broken.Wait(ctx)
	if st != StatusFailed || !errors.Is(err, ErrRejected) || err.(*RejectedError).Reason != "broken on attempt 3" {
		t.Fatalf("broken: %v %v", st, err)
	}
	if st, err := fine.Wait(ctx); st != StatusProcessed || err != nil {
		t.Fatalf("fine: %v %v", st, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen) != "map[broken:[1 2 3] fine:[1] flaky:[1 2 3]]" {
		t.Fatalf("handler saw %v", seen)
	}
}

func TestPanicReason(t *testing.T) {
	p := newPair(t, false, Config{}, Config{MaxAttempts: 1})
	ctx := testCtx(t)
	_ = p.server.Handle(func(context.Context, *Delivery) error { panic("kaboom") })
	tk, _ := p.client.Send(ctx, []byte("x"), AckProcessed)
	_, err := tk.Wait(ctx)
	var rej *RejectedError
	if !errors.As(err, &rej) || rej.Reason != ErrHandlerPanic.Error()+": kaboom" {
		t.Fatalf("%v", err)
	}
}

func TestDeliveryMisuse(t *testing.T) {
	p := newPair(t, false, Config{}, Config{})
	ctx := testCtx(t)
	_, _ = p.client.Send(ctx, []byte("a"), AckProcessed)
	_, _ = p.client.Send(ctx, []byte("b"), AckNone)
	d, _ := p.server.Recv(ctx)
	old := d
	if err := d.Confirm(); err != nil {
		t.Fatal(err)
	}
	if err := d.Confirm(); !errors.Is(err, ErrNotCurrent) {
		t.Fatalf("second Confirm: %v", err)
	}
	d2, _ := p.server.Recv(ctx)
	if d2.ID != 2 {
		t.Fatalf("got %d", d2.ID)
	}
	if err := old.Reject(errors.New("late")); !errors.Is(err, ErrNotCurrent) {
		t.Fatalf("Reject of a superseded delivery: %v", err)
	}
	if err := d2.Confirm(); err != nil {
		t.Fatalf("Confirm of an AckNone message: %v", err)
	}
	if err := d2.Reject(nil); !errors.Is(err, ErrNotCurrent) {
		t.Fatalf("a second verdict: %v, want ErrNotCurrent", err)
	}
}

// TestTicketsEnd: tickets waiting on a peer that will never answer end when the session does.
func TestTicketsEnd(t *testing.T) {
	t.Run("abort", func(t *testing.T) {
		p := newPair(t, false, Config{}, Config{})
		ctx := testCtx(t)
		col := collect(p.client)
		var tks []*Ticket
		for _, l := range []AckLevel{AckProcessed, AckDelivered, AckProcessed} {
			tk, err := p.client.Send(ctx, []byte("x"), l)
			if err != nil {
				t.Fatal(err)
			}
			tks = append(tks, tk)
		}
		p.client.Abort()
		for _, tk := range tks {
			st, err := tk.Wait(ctx)
			if st != StatusFailed || !errors.Is(err, ErrSessionClosed) {
				t.Fatalf("ticket %d: %v %v", tk.ID(), st, err)
			}
		}
		if _, err := p.client.Send(ctx, []byte("x"), AckNone); !errors.Is(err, ErrSessionClosed) {
			t.Fatalf("Send after Abort: %v", err)
		}
		<-col.done
		got := col.messageEvents()
		if fmt.Sprint(got) != "[message failed 1 message failed 2 message failed 3]" {
			t.Fatalf("events %v", got)
		}
	})
	t.Run("lost", func(t *testing.T) {
		cfg := Config{Core: core.Config{ResumeWindow: 200 * time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond}}
		p := newPair(t, true, cfg, Config{})
		ctx := testCtx(t)
		col := collect(p.client)
		tk, _ := p.client.Send(ctx, []byte("x"), AckProcessed)
		p.proxy.Refuse(true)
		p.proxy.KillAll()
		st, err := tk.Wait(ctx)
		if st != StatusFailed || !errors.Is(err, ErrSessionLost) {
			t.Fatalf("ticket: %v %v", st, err)
		}
		<-col.done
		col.mu.Lock()
		defer col.mu.Unlock()
		var kinds []string
		for _, e := range col.channel {
			kinds = append(kinds, e.Kind.String())
		}
		// The message may or may not have been delivered before the connection died.
		s := fmt.Sprint(kinds)
		if s != "[session reconnecting message failed session lost]" && s != "[message delivered session reconnecting message failed session lost]" {
			t.Fatalf("events %v", kinds)
		}
	})
}

// TestCloseWaitsForTickets: Close returns once every ticket has ended.
func TestCloseWaitsForTickets(t *testing.T) {
	p := newPair(t, false, Config{}, Config{})
	ctx := testCtx(t)
	_ = p.server.Handle(func(context.Context, *Delivery) error { return nil })
	var tks []*Ticket
	for i := 0; i < 200; i++ {
		tk, err := p.client.Send(ctx, []byte{byte(i)}, AckLevel(i%3))
		if err != nil {
			t.Fatal(err)
		}
		tks = append(tks, tk)
	}
	if err := p.client.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tk := range tks {
		select {
		case <-tk.Done():
		default:
			t.Fatalf("ticket %d still pending after Close", tk.ID())
		}
		if tk.Err() != nil {
			t.Fatalf("ticket %d: %v", tk.ID(), tk.Err())
		}
	}
	if _, err := p.client.Send(ctx, nil, AckNone); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
}

func TestBufferFullEvent(t *testing.T) {
	cfg := Config{Core: core.Config{MaxMessageSize: 1000, SendBufferBytes: 4096, ReceiveBufferBytes: 4096}}
	p := newPair(t, false, cfg, cfg)
	ctx := testCtx(t)
	col := collect(p.client)
	full := false
	for i := 0; i < 100 && !full; i++ {
		_, err := p.client.TrySend(make([]byte, 1000), AckNone)
		full = errors.Is(err, ErrBufferFull)
	}
	if !full {
		t.Fatal("TrySend never reported a full buffer")
	}
	p.client.Abort()
	<-col.done
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.channel) == 0 || col.channel[0].Kind != events.BufferFull {
		t.Fatalf("events %v", col.channel)
	}
	_ = ctx
}

// TestEventOrder: over connection kills, a session's events come in the order things happened:
// reconnecting before resumed, and for every message delivered before processed, in message order.
func TestEventOrder(t *testing.T) {
	// Sending flat out, one ack can end thousands of tickets at once: the event queue must hold
	// that burst for the test's "none dropped" to hold.
	cfg := Config{Core: core.Config{BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond, AckDelay: time.Millisecond},
		Events: events.Config{QueueSize: 1 << 16}}
	p := newPair(t, true, cfg, Config{})
	ctx := testCtx(t)
	col := collect(p.client)
	_ = p.server.Handle(func(context.Context, *Delivery) error { return nil })
	const n = 2000
	var last *Ticket
	for i := 1; i <= n; i++ {
		if i%100 == 0 {
			p.proxy.KillAll()
		}
		tk, err := p.client.Send(ctx, []byte("m"), AckProcessed)
		if err != nil {
			t.Fatal(err)
		}
		last = tk
	}
	if st, err := last.Wait(ctx); st != StatusProcessed || err != nil {
		t.Fatal(st, err)
	}
	if err := p.client.Close(ctx); err != nil {
		t.Fatal(err)
	}
	<-col.done
	col.mu.Lock()
	defer col.mu.Unlock()
	var delivered, processed uint64
	down := false
	resumes := 0
	for _, e := range col.channel {
		switch e.Kind {
		case events.MessageDelivered:
			if e.Message != delivered+1 {
				t.Fatalf("delivered %d after %d", e.Message, delivered)
			}
			delivered = e.Message
		case events.MessageProcessed:
			if e.Message != processed+1 || e.Message > delivered {
				t.Fatalf("processed %d after %d, delivered %d", e.Message, processed, delivered)
			}
			processed = e.Message
		case events.SessionReconnecting:
			if down {
				t.Fatal("reconnecting twice without a resume")
			}
			down = true
		case events.SessionResumed:
			if !down {
				t.Fatal("resumed without reconnecting")
			}
			down = false
			resumes++
		}
	}
	if delivered != n || processed != n {
		t.Fatalf("delivered %d processed %d, want %d", delivered, processed, n)
	}
	if resumes == 0 {
		t.Fatal("no connection was killed")
	}
	if d := p.client.EventsDropped(); d != 0 {
		t.Fatalf("%d events dropped", d)
	}
}

// TestPostShared: messages posted without tickets interleave with ticketed ones over connection
// kills; every message arrives once and in order, and every ticket ends with its own status.
func TestPostShared(t *testing.T) {
	p := newPair(t, true, Config{}, Config{})
	ctx := testCtx(t)
	const n = 3000
	got := make(chan []byte, n)
	_ = p.server.Handle(func(_ context.Context, d *Delivery) error {
		got <- bytes.Clone(d.Data)
		return nil
	})
	shared := []byte("-body")
	var tks []*Ticket
	for i := 0; i < n; i++ {
		prefix := []byte(fmt.Sprint(i))
		if i%3 == 0 {
			tk, err := p.client.SendShared(ctx, prefix, shared, AckProcessed)
			if err != nil {
				t.Fatal(err)
			}
			tks = append(tks, tk)
		} else {
			for {
				err := p.client.PostShared(prefix, shared)
				if err == nil {
					break
				}
				if !errors.Is(err, ErrBufferFull) {
					t.Fatal(err)
				}
				runtime.Gosched() // the test's own back-off: PostShared never waits
			}
		}
		if i%500 == 250 {
			p.proxy.KillAll()
		}
	}
	for i := 0; i < n; i++ {
		select {
		case m := <-got:
			if want := fmt.Sprint(i) + "-body"; string(m) != want {
				t.Fatalf("message %d is %q, want %q", i, m, want)
			}
		case <-ctx.Done():
			t.Fatalf("only %d of %d messages arrived", i, n)
		}
	}
	for _, tk := range tks {
		st, err := tk.Wait(ctx)
		if st != StatusProcessed || err != nil {
			t.Fatalf("ticket %d: %v %v", tk.ID(), st, err)
		}
	}
	if err := p.client.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.client.PostShared(nil, shared); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("PostShared after Close: %v", err)
	}
}

// TestEventsAfterEnd: the event dispatcher is made when first asked for; asked for after the
// session ended, its channel is closed and empty, and Done was not held up by it.
func TestEventsAfterEnd(t *testing.T) {
	p := newPair(t, false, Config{}, Config{})
	ctx := testCtx(t)
	p.client.Abort()
	select {
	case <-p.client.Done():
	case <-ctx.Done():
		t.Fatal("Done never closed")
	}
	p.client.OnEvent(func(events.Event) { t.Error("a callback registered after the end was called") })
	if _, ok := <-p.client.Events(); ok {
		t.Fatal("an event on the channel of an ended session")
	}
	if n := p.client.EventsDropped(); n != 0 {
		t.Fatalf("%d events dropped", n)
	}
}

// TestConcurrentTrySend: non-blocking sends from several goroutines at once, with room for all,
// never fail for meeting each other; one meeting a sender that waits for room does fail at once.
func TestConcurrentTrySend(t *testing.T) {
	p := newPair(t, false, Config{}, Config{})
	ctx := testCtx(t)
	_ = p.server.Handle(func(context.Context, *Delivery) error { return nil })
	var wg sync.WaitGroup
	var full atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				var err error
				switch i % 3 {
				case 0:
					_, err = p.client.TrySend([]byte{byte(g)}, AckNone)
				case 1:
					_, err = p.client.TrySendShared([]byte{byte(g)}, []byte("x"), AckDelivered)
				default:
					err = p.client.PostShared([]byte{byte(g)}, []byte("y"))
				}
				if errors.Is(err, ErrBufferFull) {
					full.Add(1)
				} else if err != nil {
					t.Error(err)
					return
				}
				if i%100 == 0 {
					// Keep well inside the buffer: wait until the peer has what was sent.
					tk, err := p.client.Send(ctx, nil, AckDelivered)
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = tk.Wait(ctx)
				}
			}
		}()
	}
	wg.Wait()
	if n := full.Load(); n > 0 {
		t.Fatalf("%d non-blocking sends failed with room to spare", n)
	}

	// A receiver that reads nothing: a blocking Send ends up waiting for room, and a TrySend
	// then fails at once instead of waiting behind it.
	cfg := Config{Core: core.Config{MaxMessageSize: 1000, SendBufferBytes: 4096, ReceiveBufferBytes: 4096}}
	q := newPair(t, false, cfg, cfg)
	sendCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	blocked := make(chan error, 1)
	go func() {
		for {
			if _, err := q.client.Send(sendCtx, make([]byte, 1000), AckNone); err != nil {
				blocked <- err
				return
			}
		}
	}()
	for !q.client.roomWait.Load() {
		runtime.Gosched() // until the sender waits for room (no event says so)
	}
	if _, err := q.client.TrySend([]byte("x"), AckNone); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("TrySend behind a Send waiting for room: %v", err)
	}
	cancel()
	if err := <-blocked; !errors.Is(err, context.Canceled) {
		t.Fatalf("the blocked Send: %v", err)
	}
}

// TestOnDelivered: at AckProcessed, OnDelivered comes when the receiver has the message, before
// it is processed; registered later, at once; and never for a message the receiver never had.
func TestOnDelivered(t *testing.T) {
	p := newPair(t, false, Config{}, Config{})
	ctx := testCtx(t)
	tk, err := p.client.Send(ctx, []byte("a"), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	var mu sync.Mutex
	note := func(s string) func(*Ticket) {
		return func(*Ticket) { mu.Lock(); order = append(order, s); mu.Unlock() }
	}
	delivered := make(chan struct{})
	tk.OnDelivered(func(x *Ticket) { note("delivered")(x); close(delivered) })
	tk.OnEnd(note("ended"))
	d, err := p.server.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-delivered:
	case <-ctx.Done():
		t.Fatal("OnDelivered not called while the receiver holds the message")
	}
	if tk.Status() != StatusDelivered {
		t.Fatalf("status %v", tk.Status())
	}
	if err := d.Confirm(); err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	late := false
	tk.OnDelivered(func(*Ticket) { late = true })
	mu.Lock()
	got := fmt.Sprint(order)
	mu.Unlock()
	if got != "[delivered ended]" || !late {
		t.Fatalf("calls %s, late registration called: %v", got, late)
	}

	// A message the receiver never had: its ticket ends, OnDelivered never runs.
	never, err := p.client.Send(ctx, []byte("b"), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	never.OnDelivered(func(*Ticket) { t.Error("OnDelivered for a message never received") })
	p.client.Abort()
	if st, _ := never.Wait(ctx); st != StatusFailed {
		t.Fatalf("status %v after Abort", st)
	}
	never.OnDelivered(func(*Ticket) { t.Error("OnDelivered after a failed end") })
}

// TestOnConnectionChange: a dead connection calls the hook with false and the error, a resume
// with true, and the session's end does not call it.
func TestOnConnectionChange(t *testing.T) {
	cfg := Config{Core: core.Config{BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond}}
	p := newPair(t, true, cfg, Config{})
	ctx := testCtx(t)
	type change struct {
		up  bool
		err error
	}
	changes := make(chan change, 8)
	p.client.OnConnectionChange(func(up bool, err error) { changes <- change{up, err} })
	if p.proxy.KillAll() == 0 {
		t.Fatal("no connection to kill")
	}
	for _, wantUp := range []bool{false, true} {
		select {
		case c := <-changes:
			if c.up != wantUp || (!c.up && c.err == nil) {
				t.Fatalf("change %+v, want connected=%v (with an error when down)", c, wantUp)
			}
		case <-ctx.Done():
			t.Fatalf("no change to connected=%v", wantUp)
		}
	}
	// Still the same session, carrying messages.
	tk, err := p.client.Send(ctx, []byte("after"), AckDelivered)
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.server.Recv(ctx)
	if err != nil {
		t.Fatalf("Recv after the resume: %v", err)
	}
	if string(d.Data) != "after" {
		t.Fatalf("Recv after the resume: %q", d.Data)
	}
	if st, err := tk.Wait(ctx); st != StatusDelivered || err != nil {
		t.Fatalf("ticket after the resume: %v %v", st, err)
	}
	p.client.Abort()
	<-p.client.Done()
	select {
	case c := <-changes:
		t.Fatalf("a change %+v at the session's end", c)
	default:
	}
}
