package pubsub

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub/internal/wire"
)

// TestMaxSubscriptions: a client's subscription past HubConfig.MaxSubscriptions is refused with
// ErrLimit, and room comes back with Unsubscribe. The bound is each client's own. As in NATS
// (max_subs), a request's inbox subscription counts.
func TestMaxSubscriptions(t *testing.T) {
	h := testHub(t, HubConfig{MaxSubscriptions: 3})
	ctx := testCtx(t)
	nop := func(context.Context, *Msg) error { return nil }
	c := dial(t, h, Config{Name: "c"})
	var subs []*Subscription
	for _, p := range []string{"a", "b.*", "c.>"} {
		s, err := c.Subscribe(p, nop)
		if err != nil {
			t.Fatalf("Subscribe(%q): %v", p, err)
		}
		subs = append(subs, s)
	}
	if _, err := c.Subscribe("d", nop); !errors.Is(err, ErrLimit) {
		t.Fatalf("a 4th subscription: %v, want ErrLimit", err)
	}
	if _, err := c.Subscribe("d", nop, Queue("q")); !errors.Is(err, ErrLimit) {
		t.Fatalf("a 4th subscription in a queue group: %v, want ErrLimit", err)
	}
	if _, err := c.Request(ctx, "a", nil); !errors.Is(err, ErrLimit) {
		t.Fatalf("a request needing a 4th subscription (its inbox): %v, want ErrLimit", err)
	}
	other := dial(t, h, Config{Name: "other"})
	for _, p := range []string{"a", "b", "c"} {
		if _, err := other.Subscribe(p, nop); err != nil {
			t.Fatalf("another client's Subscribe(%q): %v", p, err)
		}
	}
	if n := h.index.Len(); n != 6 {
		t.Fatalf("index holds %d subscriptions, want 6", n)
	}
	if err := subs[0].Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe("d", nop); err != nil {
		t.Fatalf("Subscribe after an Unsubscribe: %v", err)
	}
	if _, err := c.Subscribe("e", nop); !errors.Is(err, ErrLimit) {
		t.Fatalf("over the limit again: %v, want ErrLimit", err)
	}
}

// TestMaxSubjectLength: a subject, pattern or queue name over the limit is refused with
// ErrInvalidSubject by the client before anything is sent, and by the hub when a client with a
// laxer limit (or none: raw protocol) sends one anyway.
func TestMaxSubjectLength(t *testing.T) {
	const limit = 64
	h := testHub(t, HubConfig{MaxSubjectLength: limit})
	ctx := testCtx(t)
	nop := func(context.Context, *Msg) error { return nil }
	fits, over := strings.Repeat("s", limit), strings.Repeat("s", limit+1)

	strict := dial(t, h, Config{Name: "strict", MaxSubjectLength: limit})
	sent := strict.sess.Stats().MessagesSent
	if tk, err := strict.Publish(ctx, over, nil, AckProcessed); !errors.Is(err, ErrInvalidSubject) || tk != nil {
		t.Errorf("Publish on a long subject: %v, %v; want ErrInvalidSubject and no ticket", tk, err)
	}
	if _, err := strict.Subscribe(over, nop); !errors.Is(err, ErrInvalidSubject) {
		t.Errorf("Subscribe to a long pattern: %v, want ErrInvalidSubject", err)
	}
	if _, err := strict.Subscribe("a", nop, Queue(over)); !errors.Is(err, ErrInvalidSubject) {
		t.Errorf("Subscribe with a long queue name: %v, want ErrInvalidSubject", err)
	}
	if _, err := strict.Request(ctx, over, nil); !errors.Is(err, ErrInvalidSubject) {
		t.Errorf("Request on a long subject: %v, want ErrInvalidSubject", err)
	}
	// (Request subscribed to its inbox first: that is the one message sent.)
	if n := strict.sess.Stats().MessagesSent - sent; n != 1 {
		t.Errorf("the client sent %d messages for the refused calls, want 1 (Request's inbox)", n)
	}

	lax := dial(t, h, Config{Name: "lax"})
	subs := h.index.Len()
	tk, err := lax.Publish(ctx, over, nil, AckNone)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Wait(ctx); !errors.Is(err, ErrInvalidSubject) {
		t.Errorf("the hub took a long subject: %v, want ErrInvalidSubject", err)
	}
	if _, err := lax.Subscribe(over, nop); !errors.Is(err, ErrInvalidSubject) {
		t.Errorf("the hub took a long pattern: %v, want ErrInvalidSubject", err)
	}
	if _, err := lax.Subscribe("a", nop, Queue(over)); !errors.Is(err, ErrInvalidSubject) {
		t.Errorf("the hub took a long queue name: %v, want ErrInvalidSubject", err)
	}
	if n := h.index.Len(); n != subs {
		t.Errorf("index holds %d subscriptions after the refusals, had %d", n, subs)
	}
	rec := newRecorder()
	if _, err := lax.Subscribe(fits, rec.handle, Queue(fits)); err != nil {
		t.Fatalf("a pattern and queue name of the limit's length: %v", err)
	}
	if tk, err = strict.Publish(ctx, fits, []byte("x"), AckProcessed); err != nil {
		t.Fatal(err)
	}
	if out, err := tk.Wait(ctx); err != nil || out.Processed != 1 {
		t.Fatalf("a subject of the limit's length: %+v, %v", out, err)
	}

	// Raw protocol: the hub decodes a string of up to wire.MaxString bytes, then refuses it by
	// the limit; a longer one is malformed.
	raw := rawDial(t, h, oneway.Config{})
	raw.connect(t, "raw")
	huge, hugest := strings.Repeat("h", wire.MaxString), strings.Repeat("h", wire.MaxString+1)
	for _, tc := range []struct {
		what string
		msg  []byte
		want string
	}{
		{"SUB", wire.AppendSub(nil, wire.Sub{SID: 1, Subject: huge}), "invalid subject"},
		{"SUB queue", wire.AppendSub(nil, wire.Sub{SID: 1, Subject: "a", Queue: huge}), "invalid subject"},
		{"PUB", wire.AppendPubHeader(nil, 1, 0, huge, ""), "invalid subject"},
		{"PUB wildcard", wire.AppendPubHeader(nil, 1, 0, "a.>", ""), "invalid subject"},
		{"SUB longer than MaxString", wire.AppendSub(nil, wire.Sub{SID: 1, Subject: hugest}), "malformed"},
		{"PUB longer than MaxString", wire.AppendPubHeader(nil, 1, 0, hugest, ""), "malformed"},
	} {
		err := raw.ask(t, tc.msg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("raw %s: %v, want a refusal saying %q", tc.what, err, tc.want)
		}
		if tc.want == "invalid subject" && !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("raw %s: %v does not match ErrInvalidSubject", tc.what, err)
		}
	}
	if n := h.index.Len(); n != subs+1 {
		t.Errorf("index holds %d subscriptions after the raw refusals, want %d", n, subs+1)
	}
	// Requests work at the smallest limit: their inbox subjects fit.
	if _, err := lax.Subscribe("svc", func(ctx context.Context, m *Msg) error { return m.Respond(ctx, m.Data) }); err != nil {
		t.Fatal(err)
	}
	if ans, err := strict.Request(ctx, "svc", []byte("ping")); err != nil || string(ans.Data) != "ping" {
		t.Errorf("Request at MaxSubjectLength %d: %v, %v", limit, ans, err)
	}
}

// TestMaxSubjectLengthBounds: a limit that cannot hold a client's inbox subjects is refused, naming
// the field, rather than making a hub that refuses every client.
func TestMaxSubjectLengthBounds(t *testing.T) {
	for _, n := range []int{-1, 1, 16, 63, 4097} {
		if _, err := NewHub(HubConfig{MaxSubjectLength: n}); err == nil || !strings.Contains(err.Error(), "MaxSubjectLength") {
			t.Errorf("NewHub with MaxSubjectLength %d: %v", n, err)
		}
		if n > 64 {
			continue // a client's limit has no top: the hub's applies
		}
		if _, err := Dial(testCtx(t), "127.0.0.1:1", Config{MaxSubjectLength: n}); err == nil || !strings.Contains(err.Error(), "MaxSubjectLength") {
			t.Errorf("Dial with MaxSubjectLength %d: %v", n, err)
		}
	}
}

// TestMessageSize: a message over the hub's MaxMessageSize, its PUB header included, fails at
// Publish with ErrMessageTooLarge and nothing is sent. One that fits as a PUB but not as the MSG
// subscribers get (which names the publisher) is refused by the hub with ErrLimit, at every ack
// level, rather than accepted and lost. A subscriber whose own limit is smaller fails its share
// with a reason matching ErrMessageTooLarge.
func TestMessageSize(t *testing.T) {
	const limit = 4096
	var cfg HubConfig
	cfg.Session.Core.MaxMessageSize = limit
	h := testHub(t, cfg)
	ctx := testCtx(t)
	pub := dial(t, h, Config{Name: "pub"})
	big := dial(t, h, Config{Name: "big"})
	rec := newRecorder()
	if _, err := big.Subscribe("size", rec.handle); err != nil {
		t.Fatal(err)
	}
	var smallCfg Config
	smallCfg.Name = "small"
	smallCfg.Session.Core.MaxMessageSize = 1024
	small := dial(t, h, smallCfg)
	smallRec := newRecorder()
	if _, err := small.Subscribe("size", smallRec.handle); err != nil {
		t.Fatal(err)
	}

	room := limit - len(wire.AppendPubHeader(nil, 1, uint8(AckProcessed), "size", ""))
	sent := pub.sess.Stats().MessagesSent
	if tk, err := pub.Publish(ctx, "size", make([]byte, room+1), AckProcessed); !errors.Is(err, oneway.ErrMessageTooLarge) || tk != nil {
		t.Fatalf("Publish of %d bytes, 1 over: %v, %v; want ErrMessageTooLarge", room+1, tk, err)
	}
	if n := pub.sess.Stats().MessagesSent; n != sent {
		t.Errorf("%d messages sent for a refused Publish", n-sent)
	}
	for _, level := range []AckLevel{AckNone, AckProcessed} {
		tk, err := pub.Publish(ctx, "size", make([]byte, room), level)
		if err != nil {
			t.Fatalf("Publish of %d bytes, the limit: %v", room, err)
		}
		if _, err := tk.Wait(ctx); !errors.Is(err, ErrLimit) {
			t.Errorf("a PUB at the limit at %v: %v, want ErrLimit (its MSG would not fit)", level, err)
		}
	}
	tk, err := pub.Publish(ctx, "size", make([]byte, room-64), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	out, err := tk.Wait(ctx)
	if out.Matched != 2 || out.Processed != 1 || len(out.Failures) != 1 || out.Failures[0].Subscriber != "small" {
		t.Fatalf("outcome %+v, %v; want 2 matched, 1 processed, small failed", out, err)
	}
	if !errors.Is(err, oneway.ErrMessageTooLarge) || !errors.Is(out.Failures[0].Err, oneway.ErrMessageTooLarge) {
		t.Errorf("small's failure %q (%v) does not match ErrMessageTooLarge", out.Failures[0].Reason, err)
	}
	if got := rec.waitFor(t, 1); len(got) != 1 {
		t.Errorf("big got %d messages", len(got))
	}
	if got := smallRec.messages(); len(got) != 0 {
		t.Errorf("small got %d messages", len(got))
	}
}
