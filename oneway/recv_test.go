package oneway

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/events"
)

// TestStaleDeliveryStaysBound: a worker that kept message 1's delivery and rejects it after the
// next Recv must not touch message 2.
func TestStaleDeliveryStaysBound(t *testing.T) {
	p := newPair(t, false, Config{}, Config{MaxAttempts: 1})
	ctx := testCtx(t)
	t1, err := p.client.Send(ctx, []byte("one"), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	t2, err := p.client.Send(ctx, []byte("two"), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	d1, err := p.server.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := d1.Confirm(); err != nil {
		t.Fatal(err)
	}
	d2, err := p.server.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := d1.Reject(errors.New("late")); !errors.Is(err, ErrNotCurrent) {
		t.Errorf("Reject on message 1's delivery after it was confirmed: %v, want ErrNotCurrent", err)
	}
	if d1.ID != 1 || !bytes.Equal(d1.Data, []byte("one")) {
		t.Errorf("message 1's delivery now says ID %d, data %q", d1.ID, d1.Data)
	}
	if err := d2.Confirm(); err != nil {
		t.Fatal(err)
	}
	for i, tk := range []*Ticket{t1, t2} {
		if st, err := tk.Wait(ctx); st != StatusProcessed || err != nil {
			t.Errorf("ticket %d: %v %v, want processed", i+1, st, err)
		}
	}
}

// TestRecvIntoRefusesUsedDelivery: RecvInto fills only an unused Delivery; handing it one that
// was filled before is refused and leaves that delivery bound to its own message.
func TestRecvIntoRefusesUsedDelivery(t *testing.T) {
	p := newPair(t, false, Config{}, Config{})
	ctx := testCtx(t)
	for _, m := range []string{"one", "two"} {
		if _, err := p.client.Send(ctx, []byte(m), AckProcessed); err != nil {
			t.Fatal(err)
		}
	}
	var d Delivery
	if err := p.server.RecvInto(ctx, &d); err != nil {
		t.Fatal(err)
	}
	if err := p.server.RecvInto(ctx, &d); !errors.Is(err, ErrDeliveryUsed) {
		t.Fatalf("RecvInto with a used delivery: %v, want ErrDeliveryUsed", err)
	}
	if err := p.server.RecvInto(ctx, nil); !errors.Is(err, ErrDeliveryUsed) {
		t.Fatalf("RecvInto(nil): %v, want ErrDeliveryUsed", err)
	}
	if d.ID != 1 || string(d.Data) != "one" {
		t.Fatalf("the used delivery now says ID %d, data %q", d.ID, d.Data)
	}
	if err := d.Confirm(); err != nil {
		t.Fatal(err)
	}
	var d2 Delivery
	if err := p.server.RecvInto(ctx, &d2); err != nil || d2.ID != 2 || string(d2.Data) != "two" {
		t.Fatalf("RecvInto after the refusal: %v, ID %d, data %q", err, d2.ID, d2.Data)
	}
}

// TestNoCoreEscapeHatch: nothing exported on a one-way session hands out the core session
// underneath, whose sends would bypass the tickets and break the session for good.
func TestNoCoreEscapeHatch(t *testing.T) {
	coreSession := reflect.TypeFor[*core.Session]()
	st := reflect.TypeFor[*Session]()
	for i := range st.NumMethod() {
		m := st.Method(i)
		for j := range m.Type.NumOut() {
			if m.Type.Out(j) == coreSession {
				t.Errorf("oneway.Session.%s returns the core session", m.Name)
			}
		}
	}
}

// TestDispatcherPool: one goroutine receives and hands each delivery to a worker goroutine, which
// rejects every first attempt. With MaxInFlight deliveries held, the dispatcher waits in Recv; a
// rejected message must come back to it (not wait for a new message), and every ticket ends
// processed after exactly two attempts.
func TestDispatcherPool(t *testing.T) {
	p := newPair(t, false, Config{}, Config{MaxInFlight: 3})
	ctx := testCtx(t)
	const n = 200
	var tickets []*Ticket
	for i := 0; i < n; i++ {
		tk, err := p.client.Send(ctx, []byte{byte(i)}, AckProcessed)
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	var mu sync.Mutex
	attempts := map[uint64][]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for handled := 0; handled < 2*n; handled++ {
			d, err := p.server.Recv(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			go func() {
				mu.Lock()
				attempts[d.ID] = append(attempts[d.ID], d.Attempt)
				mu.Unlock()
				if d.Attempt == 1 {
					_ = d.Reject(errors.New("first try"))
				} else {
					_ = d.Confirm()
				}
			}()
		}
	}()
	for _, tk := range tickets {
		if st, err := tk.Wait(ctx); st != StatusProcessed || err != nil {
			t.Fatalf("ticket %d: %v %v", tk.ID(), st, err)
		}
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	for id := uint64(1); id <= n; id++ {
		if a := attempts[id]; len(a) != 2 || a[0] != 1 || a[1] != 2 {
			t.Fatalf("message %d attempts %v", id, a)
		}
	}
}

// TestConcurrentHandlers: with Concurrency(4) a handler stuck on one message does not stop the
// others from being handled, a message failing once is redelivered meanwhile, and the sender sees
// processed move past the stuck message as soon as it is released.
func TestConcurrentHandlers(t *testing.T) {
	p := newPair(t, false, Config{}, Config{})
	ctx := testCtx(t)
	release := make(chan struct{})
	var mu sync.Mutex
	handled := map[uint64]int{}
	others := make(chan struct{})
	err := p.server.Handle(func(_ context.Context, d *Delivery) error {
		mu.Lock()
		handled[d.ID]++
		if len(handled) == 10 && handled[2] == 2 {
			close(others)
		}
		mu.Unlock()
		switch {
		case d.ID == 1:
			<-release // stuck until every other message was handled
		case d.ID == 2 && d.Attempt == 1:
			return errors.New("once")
		}
		return nil
	}, Concurrency(4))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.server.Handle(func(context.Context, *Delivery) error { return nil }); err == nil {
		t.Fatal("a second Handle was accepted")
	}
	var tickets []*Ticket
	for i := 0; i < 10; i++ {
		tk, err := p.client.Send(ctx, []byte{byte(i)}, AckProcessed)
		if err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	select {
	case <-others:
	case <-ctx.Done():
		t.Fatalf("messages 2 to 10 were not handled while message 1 was: %v", handled)
	}
	if st := tickets[9].Status(); st == StatusProcessed {
		t.Fatal("message 10 processed while message 1 is not: processed is a prefix")
	}
	close(release)
	for _, tk := range tickets {
		if st, err := tk.Wait(ctx); st != StatusProcessed || err != nil {
			t.Fatalf("ticket %d: %v %v", tk.ID(), st, err)
		}
	}
}

// TestEventCallbackPanics: a panicking OnEvent callback is recovered and reported to the
// application's hook; the session and the other callbacks carry on with every event.
func TestEventCallbackPanics(t *testing.T) {
	var mu sync.Mutex
	var panics []any
	cfg := Config{Events: events.Config{OnPanic: func(_ events.Event, v any, _ []byte) {
		mu.Lock()
		panics = append(panics, v)
		mu.Unlock()
	}}}
	p := newPair(t, false, cfg, Config{})
	ctx := testCtx(t)
	p.client.OnEvent(func(events.Event) { panic("bad callback") })
	got := make(chan events.Event, 16)
	p.client.OnEvent(func(e events.Event) { got <- e })
	_ = p.server.Handle(func(context.Context, *Delivery) error { return nil })
	for i := 0; i < 3; i++ {
		tk, err := p.client.Send(ctx, []byte{byte(i)}, AckProcessed)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := tk.Wait(ctx); st != StatusProcessed || err != nil {
			t.Fatalf("ticket %d: %v %v", i, st, err)
		}
	}
	for n := 0; n < 6; n++ { // delivered and processed, three times
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatalf("the second callback got %d events of 6", n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(panics) < 6 || panics[0] != "bad callback" {
		t.Fatalf("panics reported: %v", panics)
	}
}

// TestOnArrivalAndOnEnd: a server handles its deliveries in place (OnArrival, TryRecv), and the
// sender follows every ticket with OnEnd instead of a goroutine each; a function given to a
// ticket that has ended runs at once.
func TestOnArrivalAndOnEnd(t *testing.T) {
	p := newPair(t, false, Config{}, Config{})
	ctx := testCtx(t)
	p.server.OnArrival(func() {
		for {
			d, ok, err := p.server.TryRecv()
			if err != nil || !ok {
				return
			}
			if d.Data[0]%7 == 0 {
				_ = d.Reject(errors.New("sevens fail"))
			} else {
				_ = d.Confirm()
			}
		}
	})
	const n = 200
	var mu sync.Mutex
	ended := map[uint64]Status{}
	all := make(chan struct{})
	for i := 0; i < n; i++ {
		tk, err := p.client.Send(ctx, []byte{byte(i)}, AckProcessed)
		if err != nil {
			t.Fatal(err)
		}
		tk.OnEnd(func(tk *Ticket) {
			mu.Lock()
			defer mu.Unlock()
			if _, dup := ended[tk.ID()]; dup {
				t.Errorf("ticket %d ended twice", tk.ID())
			}
			ended[tk.ID()] = tk.Status()
			if len(ended) == n {
				close(all)
			}
		})
	}
	select {
	case <-all:
	case <-ctx.Done():
		t.Fatalf("%d of %d tickets reported their end", len(ended), n)
	}
	mu.Lock()
	for id, st := range ended {
		want := StatusProcessed
		if byte(id-1)%7 == 0 {
			want = StatusFailed // after MaxAttempts, each one rejected
		}
		if st != want {
			t.Errorf("ticket %d: %v, want %v", id, st, want)
		}
	}
	mu.Unlock()
	tk, _ := p.client.Send(ctx, []byte{1}, AckDelivered)
	_, _ = tk.Wait(ctx)
	called := false
	tk.OnEnd(func(*Ticket) { called = true })
	if !called {
		t.Fatal("OnEnd on an ended ticket did not call at once")
	}
}
