package pubsub

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/testkit"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub/internal/wire"
)

// counter counts the messages a subscription got.
type counter struct{ n atomic.Int64 }

func (c *counter) handle(context.Context, *Msg) error { c.n.Add(1); return nil }

// TestNoEcho: a client with NoEcho gets none of its own publishes, and its subscriptions are not
// matched (the outcome leaves them out, and the hub hands no copy to its session: Stats.Sent); a
// queue group's message goes to another member, and a group of the publisher alone is not
// matched. Other clients get the publishes as before, and a client without NoEcho gets its own.
func TestNoEcho(t *testing.T) {
	type sub struct{ pattern, queue string }
	for _, tc := range []struct {
		name       string
		noEcho     bool
		self       []sub // the publisher's own subscriptions
		other      []sub // another client's, without NoEcho
		subject    string
		n          int     // publishes
		want       Outcome // each publish's
		selfGot    int64   // messages, all the publisher's subscriptions together
		otherGot   int64
		copiesSent uint64 // Stats.Sent after the n publishes
	}{
		{name: "plain", noEcho: true, self: []sub{{"chat.room", ""}}, other: []sub{{"chat.room", ""}},
			subject: "chat.room", n: 3, want: Outcome{Matched: 1, Delivered: 1, Processed: 1}, otherGot: 3, copiesSent: 3},
		{name: "alone", noEcho: true, self: []sub{{"chat.room", ""}},
			subject: "chat.room", n: 2, want: Outcome{}},
		{name: "wildcards", noEcho: true, self: []sub{{"chat.*", ""}, {"chat.>", ""}, {">", ""}}, other: []sub{{"chat.>", ""}},
			subject: "chat.room", n: 2, want: Outcome{Matched: 1, Delivered: 1, Processed: 1}, otherGot: 2, copiesSent: 2},
		{name: "queue group with another member", noEcho: true, self: []sub{{"jobs", "workers"}, {"jobs", "workers"}},
			other: []sub{{"jobs", "workers"}}, subject: "jobs", n: 10,
			want: Outcome{Matched: 1, Delivered: 1, Processed: 1}, otherGot: 10, copiesSent: 10},
		{name: "queue group of the publisher alone", noEcho: true, self: []sub{{"jobs", "workers"}},
			subject: "jobs", n: 3, want: Outcome{}},
		{name: "plain and a group of its own beside another's", noEcho: true, self: []sub{{"jobs", ""}, {"jobs", "mine"}},
			other: []sub{{"jobs", ""}, {"jobs", "workers"}}, subject: "jobs", n: 2,
			want: Outcome{Matched: 2, Delivered: 2, Processed: 2}, otherGot: 4, copiesSent: 4},
		{name: "without NoEcho", self: []sub{{"chat.room", ""}, {"chat.*", ""}}, other: []sub{{"chat.room", ""}},
			subject: "chat.room", n: 2, want: Outcome{Matched: 3, Delivered: 3, Processed: 3}, selfGot: 4, otherGot: 2, copiesSent: 6},
		{name: "without NoEcho, a queue group of its own", self: []sub{{"jobs", "workers"}},
			subject: "jobs", n: 2, want: Outcome{Matched: 1, Delivered: 1, Processed: 1}, selfGot: 2, copiesSent: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testHub(t, HubConfig{})
			ctx := testCtx(t)
			self := dial(t, h, Config{Name: "self", NoEcho: tc.noEcho})
			other := dial(t, h, Config{Name: "other"})
			var selfGot, otherGot counter
			for _, s := range tc.self {
				if _, err := self.Subscribe(s.pattern, selfGot.handle, Queue(s.queue)); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range tc.other {
				if _, err := other.Subscribe(s.pattern, otherGot.handle, Queue(s.queue)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range tc.n {
				tk, err := self.Publish(ctx, tc.subject, []byte{byte(i)}, AckProcessed)
				if err != nil {
					t.Fatal(err)
				}
				if out, err := tk.Wait(ctx); err != nil || out.Matched != tc.want.Matched ||
					out.Delivered != tc.want.Delivered || out.Processed != tc.want.Processed || out.Failed != 0 {
					t.Fatalf("publish %d: %+v, %v; want %+v", i, out, err, tc.want)
				}
			}
			// A copy to the publisher's own session, not matched, would still be counted here.
			settle(t, self)
			if st := h.Stats(); st.Sent != tc.copiesSent {
				t.Errorf("the hub sent %d copies, want %d", st.Sent, tc.copiesSent)
			}
			if got := selfGot.n.Load(); got != tc.selfGot {
				t.Errorf("the publisher got %d of its messages, want %d", got, tc.selfGot)
			}
			if got := otherGot.n.Load(); got != tc.otherGot {
				t.Errorf("the other client got %d, want %d", got, tc.otherGot)
			}
		})
	}
}

// settle returns once the hub routed every publish c made before: a publish's outcome may come
// before its routing added to the hub's Stats, but c's publishes are routed one after the other,
// so one more publish's outcome comes after the routing of all those before it. It adds nothing
// to Stats.Sent.
func settle(t *testing.T, c *Client) {
	t.Helper()
	tk, err := c.Publish(testCtx(t), "settle.nobody.listens", nil, AckDelivered)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := tk.Wait(testCtx(t)); err != nil || out.Matched != 0 {
		t.Fatalf("settling: %+v, %v", out, err)
	}
}

// TestNoEchoRequest: a NoEcho client's request that only it would answer finds no responders;
// one another client answers gets its answer through the inbox, and the NoEcho client answers
// other clients' requests.
func TestNoEchoRequest(t *testing.T) {
	h := testHub(t, HubConfig{})
	ctx := testCtx(t)
	self := dial(t, h, Config{Name: "self", NoEcho: true})
	other := dial(t, h, Config{Name: "other"})
	answer := func(who string) func(ctx context.Context, m *Msg) error {
		return func(ctx context.Context, m *Msg) error { return m.Respond(ctx, []byte(who+" answers "+string(m.Data))) }
	}
	if _, err := self.Subscribe("ask.self", answer("self")); err != nil {
		t.Fatal(err)
	}
	if _, err := self.Request(ctx, "ask.self", []byte("self")); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("a request only the NoEcho client answers: %v, want ErrNoResponders", err)
	}
	if ans, err := other.Request(ctx, "ask.self", []byte("other")); err != nil || string(ans.Data) != "self answers other" || ans.Publisher != "self" {
		t.Fatalf("another client's request to the NoEcho client: %v, %v", ans, err)
	}
	if _, err := other.Subscribe("ask.other", answer("other")); err != nil {
		t.Fatal(err)
	}
	if ans, err := self.Request(ctx, "ask.other", []byte("self")); err != nil || string(ans.Data) != "other answers self" {
		t.Fatalf("the NoEcho client's request to another: %v, %v", ans, err)
	}
}

// TestNoEchoUnknownFlag: a CONNECT with a flag the hub does not know is refused as malformed.
func TestNoEchoUnknownFlag(t *testing.T) {
	h := testHub(t, HubConfig{})
	raw := rawDial(t, h, oneway.Config{})
	b := wire.AppendConnect(nil, wire.Connect{Version: wire.Version, Name: "x", Inbox: raw.inbox, Flags: wire.ConnectNoEcho | 0x40})
	if err := raw.ask(t, b); err == nil || !strings.Contains(err.Error(), "unknown bits 0x40") {
		t.Fatalf("CONNECT with an unknown flag: %v", err)
	}
	raw.connect(t, "x") // (refused as malformed, not as a client: it may connect properly after)
}

// TestNoEchoMigrate: NoEcho goes with the hub where it moves, through the snapshot's encoding:
// after the move the client still gets none of its own publishes, and others still do.
func TestNoEchoMigrate(t *testing.T) {
	base := runtime.NumGoroutine()
	ctx := testCtx(t)
	mh := startMovingHub(t, HubConfig{})
	cfg := Config{Name: "self", NoEcho: true}
	cfg.Session.Core.Resolver = core.ResolverFunc(func(context.Context, string) (string, error) { return *mh.addr.Load(), nil })
	cfg.Session.Core.BackoffMin, cfg.Session.Core.BackoffMax = time.Millisecond, 10*time.Millisecond
	self, err := Dial(ctx, "the hub", cfg)
	if err != nil {
		t.Fatal(err)
	}
	other := mh.dial("other")
	defer func() {
		for _, c := range []*Client{self, other} {
			c.Abort()
			<-c.Done()
		}
		mh.close()
		testkit.CheckGoroutines(t, base)
	}()
	var selfGot, otherGot counter
	if _, err := self.Subscribe("chat", selfGot.handle); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Subscribe("chat", otherGot.handle); err != nil {
		t.Fatal(err)
	}
	st, _ := mh.moveThroughCodec()
	var noEcho []string
	for _, m := range st.Members {
		if m.NoEcho {
			noEcho = append(noEcho, m.Identity)
		}
	}
	if len(noEcho) != 1 || noEcho[0] != "self" {
		t.Fatalf("exported with NoEcho: %q, want [self]", noEcho)
	}
	tk, err := self.Publish(ctx, "chat", []byte("after the move"), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := tk.Wait(ctx); err != nil || out.Matched != 1 || out.Processed != 1 {
		t.Fatalf("a publish after the move: %+v, %v; want the other client only", out, err)
	}
	settle(t, self)
	if st := mh.hub.Stats(); st.Sent != 1 || selfGot.n.Load() != 0 || otherGot.n.Load() != 1 {
		t.Fatalf("after the move: %d copies sent, the publisher got %d, the other %d; want 1, 0, 1",
			st.Sent, selfGot.n.Load(), otherGot.n.Load())
	}
}
