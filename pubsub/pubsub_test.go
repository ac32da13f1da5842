package pubsub

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/testkit"
	"github.com/ftsl-go/ftsl/oneway"
)

func testCtx(t testing.TB) context.Context { return testkit.Ctx(t) }

// testHub starts a hub on loopback and closes it, checking for leaked goroutines, when the test
// ends.
func testHub(t *testing.T, cfg HubConfig) *testedHub {
	t.Helper()
	base := runtime.NumGoroutine()
	h, err := NewHub(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := oneway.Listen("127.0.0.1:0", cfg.Session)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- h.Serve(context.Background(), ln) }()
	th := &testedHub{Hub: h, addr: ln.Addr().String()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Errorf("hub Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		testkit.CheckGoroutines(t, base)
	})
	return th
}

// testedHub is a hub under test and the address it serves.
type testedHub struct {
	*Hub
	addr string
}

// dial connects a client to h, closed when the test ends.
func dial(t *testing.T, h *testedHub, cfg Config) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), h.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Closed when it can be, so that the hub's session ends cleanly whatever the load: an
		// ABORT the hub has not read when the client's socket closes is lost to the reset, and
		// the hub's session then waits for a resume that never comes, holding up the hub's
		// Close. A client a test left unable to close (a handler or channel never served) is
		// aborted after a while.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			c.Abort()
		}
		<-c.Done()
	})
	return c
}

func TestPublishSubscribe(t *testing.T) {
	h := testHub(t, HubConfig{})
	ctx := testCtx(t)
	pub := dial(t, h, Config{Name: "pub"})
	a := dial(t, h, Config{Name: "a"})
	b := dial(t, h, Config{Name: "b"})
	var mu sync.Mutex
	got := map[string][]string{}
	handler := func(name string) func(context.Context, *Msg) error {
		return func(_ context.Context, m *Msg) error {
			mu.Lock()
			defer mu.Unlock()
			got[name] = append(got[name], m.Subject+"="+string(m.Data)+" from "+m.Publisher)
			if string(m.Data) == "bad" {
				return errors.New("no thanks")
			}
			return nil
		}
	}
	if _, err := a.Subscribe("orders.*", handler("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe("orders.>", handler("b")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		subject, data string
		level         AckLevel
		want          Outcome
		wantErr       bool
	}{
		{"orders.new", "1", AckNone, Outcome{}, false},
		{"orders.new", "2", AckDelivered, Outcome{Matched: 2, Delivered: 2}, false},
		{"orders.new", "3", AckProcessed, Outcome{Matched: 2, Delivered: 2, Processed: 2}, false},
		{"orders.eu.new", "4", AckProcessed, Outcome{Matched: 1, Delivered: 1, Processed: 1}, false},
		{"nobody.here", "5", AckProcessed, Outcome{}, false},
		{"orders.new", "bad", AckProcessed, Outcome{Matched: 2, Delivered: 2, Failed: 2}, true},
	} {
		tk, err := pub.Publish(ctx, tc.subject, []byte(tc.data), tc.level)
		if err != nil {
			t.Fatal(err)
		}
		out, err := tk.Wait(ctx)
		if (err != nil) != tc.wantErr {
			t.Fatalf("%s %s: %v", tc.subject, tc.data, err)
		}
		out.Failures = nil
		if fmt.Sprint(out) != fmt.Sprint(tc.want) {
			t.Errorf("%s %s at %v: outcome %+v, want %+v", tc.subject, tc.data, tc.level, out, tc.want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]string{
		"a": "[orders.new=1 from pub orders.new=2 from pub orders.new=3 from pub orders.new=bad from pub orders.new=bad from pub orders.new=bad from pub]",
		"b": "[orders.new=1 from pub orders.new=2 from pub orders.new=3 from pub orders.eu.new=4 from pub orders.new=bad from pub orders.new=bad from pub orders.new=bad from pub]",
	}
	for name, w := range want {
		if g := fmt.Sprint(got[name]); g != w {
			t.Errorf("%s got %s\nwant %s", name, g, w)
		}
	}
}

// TestQueueGroupAndRequest: a queue group shares messages among its members, each message to one;
// a request gets the first answer; a request nobody hears fails at once.
func TestQueueGroupAndRequest(t *testing.T) {
	h := testHub(t, HubConfig{})
	ctx := testCtx(t)
	pub := dial(t, h, Config{Name: "pub"})
	var mu sync.Mutex
	counts := map[string]int{}
	for _, name := range []string{"w1", "w2", "w3"} {
		c := dial(t, h, Config{Name: name})
		_, err := c.Subscribe("jobs.>", func(_ context.Context, m *Msg) error {
			mu.Lock()
			counts[name]++
			mu.Unlock()
			return nil
		}, Queue("workers"))
		if err != nil {
			t.Fatal(err)
		}
	}
	const n = 300
	for i := 0; i < n; i++ {
		tk, err := pub.Publish(ctx, "jobs.a", []byte{byte(i)}, AckProcessed)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := tk.Wait(ctx); err != nil || out.Matched != 1 || out.Processed != 1 {
			t.Fatalf("publish %d: %+v %v", i, out, err)
		}
	}
	mu.Lock()
	total := counts["w1"] + counts["w2"] + counts["w3"]
	if total != n || counts["w1"] == 0 || counts["w2"] == 0 || counts["w3"] == 0 {
		t.Errorf("the group's members got %v", counts)
	}
	mu.Unlock()

	responder := dial(t, h, Config{Name: "time"})
	_, err := responder.Subscribe("time.now", func(ctx context.Context, m *Msg) error {
		return m.Respond(ctx, []byte("noon, asked "+string(m.Data)))
	})
	if err != nil {
		t.Fatal(err)
	}
	ans, err := pub.Request(ctx, "time.now", []byte("politely"))
	if err != nil || string(ans.Data) != "noon, asked politely" || ans.Publisher != "time" {
		t.Fatalf("request: %v %v", ans, err)
	}
	if _, err := pub.Request(ctx, "time.never", nil); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("request nobody hears: %v", err)
	}
	if _, err := pub.Publish(ctx, "bad..subject", nil, AckNone); !errors.Is(err, ErrInvalidSubject) {
		t.Fatalf("invalid subject: %v", err)
	}
	if _, err := pub.Subscribe("a.>.b", func(context.Context, *Msg) error { return nil }); !errors.Is(err, ErrInvalidSubject) {
		t.Fatalf("invalid pattern: %v", err)
	}
}

// TestReportDelivered: with ReportDelivered, a publish at AckProcessed hears that every matched
// subscriber has the message before they process it; without it, only at the end.
func TestReportDelivered(t *testing.T) {
	h := testHub(t, HubConfig{})
	ctx := testCtx(t)
	pub := dial(t, h, Config{Name: "pub"})
	held := make(chan *Msg, 10)
	for _, name := range []string{"a", "b"} {
		c := dial(t, h, Config{Name: name})
		if _, err := c.SubscribeChan("chat.room", held); err != nil {
			t.Fatal(err)
		}
	}
	for _, report := range []bool{true, false} {
		var opts []PublishOption
		if report {
			opts = append(opts, ReportDelivered())
		}
		tk, err := pub.Publish(ctx, "chat.room", []byte("hi"), AckProcessed, opts...)
		if err != nil {
			t.Fatal(err)
		}
		ms := []*Msg{<-held, <-held} // both subscribers hold it, unconfirmed
		if report {
			select {
			case <-tk.Delivered():
			case <-ctx.Done():
				t.Fatal("Delivered not closed while both subscribers hold the message")
			}
			if st := tk.Status(); st != StatusDelivered {
				t.Fatalf("status %v, want delivered", st)
			}
		} else {
			// The hub sends nothing before the outcome: a publish after this one, whose outcome
			// comes back, shows that nothing for this one arrived meanwhile.
			probe, _ := pub.Publish(ctx, "nobody.listens", nil, AckProcessed)
			if _, err := probe.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case <-tk.Delivered():
				t.Fatal("Delivered closed before the end without ReportDelivered")
			default:
			}
		}
		select {
		case <-tk.Done():
			t.Fatal("the ticket ended before the subscribers confirmed")
		default:
		}
		for _, m := range ms {
			if err := m.Confirm(); err != nil {
				t.Fatal(err)
			}
		}
		out, err := tk.Wait(ctx)
		if err != nil || out.Processed != 2 {
			t.Fatalf("outcome %+v %v", out, err)
		}
		select {
		case <-tk.Delivered():
		default:
			t.Fatal("Delivered still open after the end")
		}
	}
	// Matching nobody: complete at once, Delivered closed with it.
	tk, _ := pub.Publish(ctx, "nobody.listens", nil, AckProcessed, ReportDelivered())
	if out, err := tk.Wait(ctx); err != nil || out.Matched != 0 {
		t.Fatalf("no match: %+v %v", out, err)
	}
	<-tk.Delivered()
}

// TestTicketOnEnd: OnEnd runs once when the ticket ends, or at once after; Outcome then gives
// what Wait gives.
func TestTicketOnEnd(t *testing.T) {
	h := testHub(t, HubConfig{})
	ctx := testCtx(t)
	sub := dial(t, h, Config{Name: "sub"})
	if _, err := sub.Subscribe("jobs", func(context.Context, *Msg) error { return nil }); err != nil {
		t.Fatal(err)
	}
	pub := dial(t, h, Config{Name: "pub"})
	tk, err := pub.Publish(ctx, "jobs", []byte("x"), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan Outcome, 2)
	tk.OnEnd(func(tk *Ticket) {
		out, err := tk.Outcome()
		if err != nil {
			t.Error(err)
		}
		ended <- out
	})
	if out := <-ended; out.Matched != 1 || out.Processed != 1 {
		t.Fatalf("outcome %+v", out)
	}
	tk.OnEnd(func(tk *Ticket) { out, _ := tk.Outcome(); ended <- out }) // after the end: at once
	select {
	case out := <-ended:
		if out.Processed != 1 {
			t.Fatalf("outcome %+v", out)
		}
	default:
		t.Fatal("OnEnd after the end was not called at once")
	}
	if out, err := tk.Wait(ctx); err != nil || out.Processed != 1 {
		t.Fatalf("Wait: %+v %v", out, err)
	}
}
