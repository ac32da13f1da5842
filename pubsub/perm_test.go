package pubsub

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ftsl-go/ftsl/events"
)

// recorder is a subscription handler that keeps "subject=data from publisher" of every message.
type recorder struct {
	mu   sync.Mutex
	got  []string
	seen chan struct{} // closed and replaced on every message
}

func newRecorder() *recorder { return &recorder{seen: make(chan struct{})} }

func (r *recorder) handle(_ context.Context, m *Msg) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, m.Subject+"="+string(m.Data)+" from "+m.Publisher)
	close(r.seen)
	r.seen = make(chan struct{})
	return nil
}

func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// waitFor waits until the recorder has n messages and returns them.
func (r *recorder) waitFor(t *testing.T, n int) []string {
	t.Helper()
	ctx := testCtx(t)
	for {
		r.mu.Lock()
		got, ch := append([]string(nil), r.got...), r.seen
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("waited for %d messages, have %q", n, got)
		}
	}
}

// byToken authenticates clients by their token: each token's permissions, or a refusal.
func byToken(calls *atomic.Int32, perms map[string]*Permissions) func(context.Context, ConnectInfo) (*Permissions, error) {
	return func(_ context.Context, c ConnectInfo) (*Permissions, error) {
		calls.Add(1)
		p, ok := perms[c.Token]
		if !ok {
			return nil, fmt.Errorf("unknown token %q", c.Token)
		}
		return p, nil
	}
}

// TestConnectDenied: a refused client's Dial fails with ErrPermission and the authenticator's
// own reason, the hub raises PermissionDenied once, Authenticate runs once per attempt, and
// the hub serves the clients it accepts as before.
func TestConnectDenied(t *testing.T) {
	var calls atomic.Int32
	h := testHub(t, HubConfig{Authenticate: byToken(&calls, map[string]*Permissions{"good": nil})})
	hubLog := watchEvents(h.OnEvent)

	_, err := Dial(testCtx(t), h.addr, Config{Name: "mallory", Credential: Credential{Token: "forged"}})
	if !errors.Is(err, ErrPermission) {
		t.Fatalf("Dial with a bad token: %v, want ErrPermission", err)
	}
	if !strings.Contains(err.Error(), `unknown token "forged"`) {
		t.Errorf("Dial's error %q does not say the authenticator's reason", err)
	}
	good := dial(t, h, Config{Name: "good", Credential: Credential{Token: "good"}})
	barrier(t, hubLog, good)
	denied := hubLog.all(events.PermissionDenied, "")
	if len(denied) != 1 || denied[0].Err == nil || !strings.Contains(denied[0].Err.Error(), "forged") {
		t.Errorf("hub's PermissionDenied events: %v, want one naming the token", denied)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("Authenticate ran %d times for 2 connections", n)
	}
}

// TestConnectDeniedReasonPrefix: an authenticator's error that carries the library's own
// "ftsl:" prefix (authfile's sentinels do) reaches the client with the prefix once.
func TestConnectDeniedReasonPrefix(t *testing.T) {
	errBad := errors.New("ftsl: credential not accepted")
	h := testHub(t, HubConfig{Authenticate: func(context.Context, ConnectInfo) (*Permissions, error) {
		return nil, errBad
	}})
	_, err := Dial(testCtx(t), h.addr, Config{Name: "mallory"})
	if !errors.Is(err, ErrPermission) {
		t.Fatalf("Dial: %v, want ErrPermission", err)
	}
	if got := err.Error(); strings.Count(got, "ftsl:") != 1 || !strings.Contains(got, "credential not accepted") {
		t.Errorf("Dial's error %q: want the reason once, with one ftsl: prefix", got)
	}
}

// TestConnectAuthenticatePanics: a panicking authenticator refuses the client; the hub lives.
func TestConnectAuthenticatePanics(t *testing.T) {
	h := testHub(t, HubConfig{Authenticate: func(_ context.Context, c ConnectInfo) (*Permissions, error) {
		if c.Name == "boom" {
			panic("authenticator bug")
		}
		return nil, nil
	}})
	if _, err := Dial(testCtx(t), h.addr, Config{Name: "boom"}); !errors.Is(err, ErrPermission) {
		t.Fatalf("Dial against a panicking authenticator: %v, want ErrPermission", err)
	}
	dial(t, h, Config{Name: "fine"})
}

// TestPublishDenied: a publish the client may not make fails its ticket with ErrPermission, at
// every level, raises PermissionDenied on both ends, and reaches nobody; the permitted ones go.
func TestPublishDenied(t *testing.T) {
	var calls atomic.Int32
	h := testHub(t, HubConfig{Authenticate: byToken(&calls, map[string]*Permissions{
		"pub": {Publish: Rules{Allow: []string{"orders.>"}, Deny: []string{"orders.secret"}}},
		"all": nil,
	})})
	hubLog := watchEvents(h.OnEvent)
	ctx := testCtx(t)
	pub := dial(t, h, Config{Name: "pub", Credential: Credential{Token: "pub"}})
	pubLog := watchEvents(pub.OnEvent)
	spy := dial(t, h, Config{Name: "spy", Credential: Credential{Token: "all"}})
	rec := newRecorder()
	if _, err := spy.Subscribe(">", rec.handle); err != nil {
		t.Fatal(err)
	}
	denied := []string{"payments.new", "orders.secret", "orders"}
	for _, subject := range denied {
		for _, level := range []AckLevel{AckNone, AckDelivered, AckProcessed} {
			tk, err := pub.Publish(ctx, subject, []byte("x"), level)
			if err != nil {
				t.Fatal(err)
			}
			out, err := tk.Wait(ctx)
			if !errors.Is(err, ErrPermission) || tk.Status() != StatusFailed {
				t.Errorf("publish to %s at %v: %v, status %v; want ErrPermission, failed", subject, level, err, tk.Status())
			}
			if out.Matched != 0 {
				t.Errorf("publish to %s: outcome %+v", subject, out)
			}
		}
	}
	tk, err := pub.Publish(ctx, "orders.new", []byte("ok"), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := tk.Wait(ctx); err != nil || out.Processed != 1 {
		t.Fatalf("permitted publish: %+v, %v", out, err)
	}
	if got := rec.waitFor(t, 1); fmt.Sprint(got) != "[orders.new=ok from pub]" {
		t.Errorf("the spy got %q", got)
	}
	barrier(t, hubLog, spy)
	for _, subject := range denied {
		if n := len(hubLog.all(events.PermissionDenied, subject)); n != 3 {
			t.Errorf("hub raised PermissionDenied on %s %d times for 3 publishes", subject, n)
		}
		if n := len(pubLog.wait(t, events.PermissionDenied, subject, 3)); n != 3 {
			t.Errorf("publisher raised PermissionDenied on %s %d times for 3 publishes", subject, n)
		}
	}
}

// TestSubscribeDenied: a subscription the client may not make fails with ErrPermission and
// raises PermissionDenied once; the client can go on.
func TestSubscribeDenied(t *testing.T) {
	var calls atomic.Int32
	h := testHub(t, HubConfig{Authenticate: byToken(&calls, map[string]*Permissions{
		"sub": {Subscribe: Rules{Allow: []string{"orders.>"}}},
		"all": nil,
	})})
	hubLog := watchEvents(h.OnEvent)
	c := dial(t, h, Config{Name: "sub", Credential: Credential{Token: "sub"}})
	other := dial(t, h, Config{Name: "other", Credential: Credential{Token: "all"}})
	cLog := watchEvents(c.OnEvent)
	nop := func(context.Context, *Msg) error { return nil }
	for _, pattern := range []string{"payments.new", ">", "*.new", "orders"} {
		if _, err := c.Subscribe(pattern, nop); !errors.Is(err, ErrPermission) {
			t.Errorf("Subscribe(%q): %v, want ErrPermission", pattern, err)
		}
		if _, err := c.Subscribe(pattern, nop, Queue("workers")); !errors.Is(err, ErrPermission) {
			t.Errorf("Subscribe(%q) in a queue group: %v, want ErrPermission", pattern, err)
		}
	}
	if _, err := c.Subscribe("orders.new", nop); err != nil {
		t.Fatalf("permitted Subscribe: %v", err)
	}
	barrier(t, hubLog, other)
	for _, pattern := range []string{"payments.new", ">", "*.new", "orders"} {
		if n := len(hubLog.all(events.PermissionDenied, pattern)); n != 2 {
			t.Errorf("hub raised PermissionDenied on %s %d times for 2 refusals", pattern, n)
		}
		cLog.wait(t, events.PermissionDenied, pattern, 2)
	}
	if n := h.index.Len(); n != 1 {
		t.Errorf("the hub's index holds %d subscriptions, want 1", n)
	}
}

// TestWildcardPermissions: a subscription must be covered by what is allowed, not merely look
// like it; one that overlaps a denied subject is allowed, and that subject never reaches it.
func TestWildcardPermissions(t *testing.T) {
	var calls atomic.Int32
	h := testHub(t, HubConfig{Authenticate: byToken(&calls, map[string]*Permissions{
		"star":   {Subscribe: Rules{Allow: []string{"orders.*"}}},
		"tail":   {Subscribe: Rules{Allow: []string{"orders.>"}, Deny: []string{"orders.secret"}}},
		"mixed":  {Subscribe: Rules{Allow: []string{"orders.*", "orders.*.>"}}},
		"pub":    nil,
		"nosecr": {Subscribe: Rules{Deny: []string{"orders.secret", "*.private.>"}}},
	})})
	ctx := testCtx(t)
	nop := func(context.Context, *Msg) error { return nil }

	star := dial(t, h, Config{Name: "star", Credential: Credential{Token: "star"}})
	if _, err := star.Subscribe("orders.>", nop); !errors.Is(err, ErrPermission) {
		t.Errorf(`allowed "orders.*", Subscribe("orders.>"): %v, want ErrPermission`, err)
	}
	if _, err := star.Subscribe(">", nop); !errors.Is(err, ErrPermission) {
		t.Errorf(`allowed "orders.*", Subscribe(">"): %v, want ErrPermission`, err)
	}
	if _, err := star.Subscribe("orders.*.x", nop); !errors.Is(err, ErrPermission) {
		t.Errorf(`allowed "orders.*", Subscribe("orders.*.x"): %v, want ErrPermission`, err)
	}
	for _, ok := range []string{"orders.*", "orders.new"} {
		if _, err := star.Subscribe(ok, nop); err != nil {
			t.Errorf(`allowed "orders.*", Subscribe(%q): %v`, ok, err)
		}
	}
	mixed := dial(t, h, Config{Name: "mixed", Credential: Credential{Token: "mixed"}})
	if _, err := mixed.Subscribe("orders.>", nop); err != nil {
		t.Errorf(`allowed "orders.*" and "orders.*.>", Subscribe("orders.>"): %v`, err)
	}

	tail := dial(t, h, Config{Name: "tail", Credential: Credential{Token: "tail"}})
	if _, err := tail.Subscribe("orders.secret", nop); !errors.Is(err, ErrPermission) {
		t.Errorf(`denied "orders.secret", Subscribe("orders.secret"): %v, want ErrPermission`, err)
	}
	tailRec := newRecorder()
	if _, err := tail.Subscribe("orders.>", tailRec.handle); err != nil {
		t.Fatalf(`allowed "orders.>" but not "orders.secret", Subscribe("orders.>"): %v`, err)
	}
	tailStar := newRecorder()
	if _, err := tail.Subscribe("orders.*", tailStar.handle); err != nil {
		t.Fatalf(`allowed "orders.>" but not "orders.secret", Subscribe("orders.*"): %v`, err)
	}
	open := dial(t, h, Config{Name: "nosecr", Credential: Credential{Token: "nosecr"}})
	openRec := newRecorder()
	if _, err := open.Subscribe(">", openRec.handle); err != nil {
		t.Fatalf(`denied only "orders.secret", Subscribe(">"): %v`, err)
	}

	pub := dial(t, h, Config{Name: "pub", Credential: Credential{Token: "pub"}})
	// Matched counts the subscriptions the message may go to: those whose pattern matches it,
	// less those whose client may not receive it.
	for _, tc := range []struct {
		subject string
		want    int
	}{
		{"orders.new", 6},       // star x2, mixed, tail x2, open
		{"orders.secret", 2},    // star's "orders.*", mixed
		{"orders.secret.x", 3},  // mixed, tail's "orders.>", open
		{"orders.private.x", 2}, // mixed, tail's "orders.>"
		{"x.private.y", 0},
	} {
		want := tc.want
		tk, err := pub.Publish(ctx, tc.subject, []byte("1"), AckProcessed)
		if err != nil {
			t.Fatal(err)
		}
		out, err := tk.Wait(ctx)
		if err != nil || out.Matched != want || out.Processed != want {
			t.Errorf("publish to %s: %+v, %v; want %d matched and processed", tc.subject, out, err, want)
		}
	}
	want := "[orders.new=1 from pub orders.secret.x=1 from pub orders.private.x=1 from pub]"
	if got := tailRec.messages(); fmt.Sprint(got) != want {
		t.Errorf(`"orders.>" without "orders.secret" got %q, want %s`, got, want)
	}
	if got := tailStar.messages(); fmt.Sprint(got) != "[orders.new=1 from pub]" {
		t.Errorf(`"orders.*" without "orders.secret" got %q`, got)
	}
	if got := openRec.messages(); fmt.Sprint(got) != "[orders.new=1 from pub orders.secret.x=1 from pub]" {
		t.Errorf(`">" without "orders.secret" and "*.private.>" got %q`, got)
	}
}

// TestInboxesArePrivate: a client subscribed to ">" (or "_INBOX.>", or another client's inbox)
// never receives the answers to another client's requests; the requester does.
func TestInboxesArePrivate(t *testing.T) {
	h := testHub(t, HubConfig{})
	ctx := testCtx(t)
	requester := dial(t, h, Config{Name: "requester"})
	responder := dial(t, h, Config{Name: "responder"})
	if _, err := responder.Subscribe("svc.time", func(ctx context.Context, m *Msg) error {
		return m.Respond(ctx, []byte("noon"))
	}); err != nil {
		t.Fatal(err)
	}
	// The requester's inbox exists once it made a request.
	if ans, err := requester.Request(ctx, "svc.time", []byte("q0")); err != nil || string(ans.Data) != "noon" {
		t.Fatalf("Request: %v, %v", ans, err)
	}
	snoop := dial(t, h, Config{Name: "snoop"})
	all, inboxes, theirs := newRecorder(), newRecorder(), newRecorder()
	for pattern, rec := range map[string]*recorder{">": all, "_INBOX.>": inboxes, requester.inbox + ".*": theirs} {
		if _, err := snoop.Subscribe(pattern, rec.handle); err != nil {
			t.Fatalf("Subscribe(%q): %v", pattern, err)
		}
	}
	for i := 1; i <= 3; i++ {
		ans, err := requester.Request(ctx, "svc.time", []byte(fmt.Sprint("q", i)))
		if err != nil || string(ans.Data) != "noon" || ans.Publisher != "responder" {
			t.Fatalf("Request %d: %+v, %v", i, ans, err)
		}
	}
	// The responder's answers and this come in order from the same publisher.
	if _, err := responder.Publish(ctx, "done", nil, AckNone); err != nil {
		t.Fatal(err)
	}
	got := all.waitFor(t, 4)
	if fmt.Sprint(got) != "[svc.time=q1 from requester svc.time=q2 from requester svc.time=q3 from requester done= from responder]" {
		t.Errorf(`">" got %q`, got)
	}
	if got := inboxes.messages(); len(got) != 0 {
		t.Errorf(`"_INBOX.>" got %q`, got)
	}
	if got := theirs.messages(); len(got) != 0 {
		t.Errorf("another's inbox got %q", got)
	}
	// Its own inbox is its own.
	own := newRecorder()
	if _, err := snoop.Subscribe(snoop.inbox+".x", own.handle); err != nil {
		t.Fatal(err)
	}
	if _, err := responder.Publish(ctx, snoop.inbox+".x", []byte("mine"), AckProcessed); err != nil {
		t.Fatal(err)
	}
	if got := own.waitFor(t, 1); got[0] != snoop.inbox+".x=mine from responder" {
		t.Errorf("own inbox got %q", got)
	}
}

// TestPublisherIdentity: subscribers see a publisher as its Permissions.Identity, else its user,
// else its name; outcomes name a failing subscriber the same way.
func TestPublisherIdentity(t *testing.T) {
	h := testHub(t, HubConfig{Authenticate: func(_ context.Context, c ConnectInfo) (*Permissions, error) {
		switch c.Name {
		case "alice":
			return &Permissions{Identity: "alice@example"}, nil
		case "bob":
			return &Permissions{}, nil
		}
		return nil, nil
	}})
	ctx := testCtx(t)
	rec := newRecorder()
	sub := dial(t, h, Config{Name: "sub"})
	if _, err := sub.Subscribe("id", rec.handle); err != nil {
		t.Fatal(err)
	}
	clients := []*Client{
		dial(t, h, Config{Name: "alice", Credential: Credential{User: "a", Password: "x"}}),
		dial(t, h, Config{Name: "bob", Credential: Credential{User: "bob-user", Password: "y"}}),
		dial(t, h, Config{Name: "carol"}),
	}
	for _, c := range clients {
		tk, err := c.Publish(ctx, "id", nil, AckProcessed)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tk.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(rec.messages()); got != "[id= from alice@example id= from bob-user id= from carol]" {
		t.Errorf("publishers seen as %s", got)
	}
	// A failing subscriber is named by its identity in the outcome.
	if _, err := clients[0].Subscribe("fail", func(context.Context, *Msg) error { return errors.New("nope") }); err != nil {
		t.Fatal(err)
	}
	tk, err := clients[2].Publish(ctx, "fail", nil, AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	out, err := tk.Wait(ctx)
	var oe *OutcomeError
	if !errors.As(err, &oe) || len(out.Failures) != 1 || out.Failures[0].Subscriber != "alice@example" ||
		!strings.Contains(out.Failures[0].Reason, "nope") {
		t.Errorf("failing subscriber: %+v, %v", out, err)
	}
}

// TestTLSClientCertificate: under mutual TLS the authenticator sees the client's certificate and
// can name the client by it, or refuse a client that has none.
func TestTLSClientCertificate(t *testing.T) {
	st, ct := testTLS(t)
	st.ClientAuth = tls.RequestClientCert // a client without a certificate reaches Authenticate
	var cfg HubConfig
	cfg.Session.Core.TLS = st
	cfg.Authenticate = func(_ context.Context, c ConnectInfo) (*Permissions, error) {
		if c.TLS == nil {
			return nil, errors.New("not over TLS")
		}
		if len(c.TLS.PeerCertificates) == 0 {
			return nil, errors.New("no client certificate")
		}
		return &Permissions{Identity: "cn:" + c.TLS.PeerCertificates[0].Subject.CommonName}, nil
	}
	h := testHub(t, cfg)
	ctx := testCtx(t)

	var anon Config
	anon.Session.Core.TLS = ct.Clone()
	_, err := Dial(ctx, h.addr, anon)
	if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "no client certificate") {
		t.Fatalf("Dial without a client certificate: %v", err)
	}

	var withCert Config
	withCert.Name = "ignored"
	withCert.Session.Core.TLS = ct.Clone()
	withCert.Session.Core.TLS.Certificates = st.Certificates
	c := dial(t, h, withCert)
	rec := newRecorder()
	if _, err := c.Subscribe("who", rec.handle); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, "who", nil, AckNone); err != nil {
		t.Fatal(err)
	}
	if got := rec.waitFor(t, 1); got[0] != "who= from cn:ftsl test" {
		t.Errorf("publisher seen as %q", got)
	}
}
