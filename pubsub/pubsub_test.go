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
func testHub(t *testing.T, cfg HubConfig) *Hub {
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
	// Serve records the hub's address only once its goroutine runs; dial needs it at once.
	h.mu.Lock()
	h.addr = ln.Addr()
	h.mu.Unlock()
	served := make(chan error, 1)
	go func() { served <- h.Serve(context.Background(), ln) }()
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
	return h
}

// dial connects a client to h, closed when the test ends.
func dial(t *testing.T, h *Hub, cfg Config) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), h.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Abort(); <-c.Done() })
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
