package naming_test

import (
	"bytes"
	"context"
	"net"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/testkit"
	"github.com/ftsl-go/ftsl/naming"
)

// Both resolvers fit core's interface by their methods alone: naming does not import core.
var (
	_ core.WatchingResolver = (*naming.Resolver)(nil)
	_ core.WatchingResolver = (*naming.StaticResolver)(nil)
	_ core.Resolver         = (*naming.SRVResolver)(nil)
)

// states records what an Observer hears of a session's state.
type states struct {
	mu   sync.Mutex
	seen []core.State
	kick chan struct{}
}

func newStates() *states { return &states{kick: make(chan struct{}, 1)} }

func (s *states) Progress(core.Progress) {}
func (s *states) Failed(uint64, string)  {}
func (s *states) StateChanged(st core.State, _ error) {
	s.mu.Lock()
	s.seen = append(s.seen, st)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// await waits until st was heard after the first from entries, and returns the count heard.
func (s *states) await(ctx context.Context, from int, st core.State) (int, bool) {
	for {
		s.mu.Lock()
		for i := from; i < len(s.seen); i++ {
			if s.seen[i] == st {
				s.mu.Unlock()
				return i + 1, true
			}
		}
		s.mu.Unlock()
		select {
		case <-s.kick:
		case <-ctx.Done():
			return 0, false
		}
	}
}

// lineCounter counts the log lines that hold a word; zerolog writes one line per Write.
type lineCounter struct {
	word []byte
	n    atomic.Int64
	kick chan struct{}
}

func (c *lineCounter) Write(p []byte) (int, error) {
	if bytes.Contains(p, c.word) {
		c.n.Add(1)
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// TestMigrationFollowsRebind moves a server, with its session, to a listener on another port
// and rebinds its name; the client, dialled by name through a resolver, is waiting out a
// reconnection backoff of a minute or more, and must resume as soon as the name moves. Only the
// resolver's Changed channel can explain a resumption before the backoff ends, and the test
// waits for it for 20 s at most.
func TestMigrationFollowsRebind(t *testing.T) {
	t.Run("Resolver", func(t *testing.T) {
		base := runtime.NumGoroutine()
		defer func() { testkit.CheckGoroutines(t, base) }() // after the deferred closes below
		ns, err := naming.NewServer(naming.ServerConfig{Token: "tok"})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(ns)
		defer ts.Close()
		defer ns.Close()
		client := &naming.Client{BaseURL: ts.URL, Token: "tok", HTTPClient: ts.Client()}
		r, err := naming.NewResolver(client, naming.ResolverConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		testMigration(t, r,
			func(ctx context.Context, addr string) error { _, err := client.Bind(ctx, "chat", addr); return err },
			func(ctx context.Context, addr string) error { _, err := client.Rebind(ctx, "chat", addr); return err })
	})
	t.Run("StaticResolver", func(t *testing.T) {
		base := runtime.NumGoroutine()
		defer func() { testkit.CheckGoroutines(t, base) }()
		r, err := naming.NewStaticResolver(nil)
		if err != nil {
			t.Fatal(err)
		}
		set := func(_ context.Context, addr string) error { return r.Set("chat", addr) }
		testMigration(t, r, set, set)
	})
}

func testMigration(t *testing.T, r core.WatchingResolver, bind, rebind func(context.Context, string) error) {
	ctx := testkit.Ctx(t)
	ln, err := core.Listen("127.0.0.1:0", core.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := bind(ctx, ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	moving := &lineCounter{word: []byte(core.RejectMoving.String()), kick: make(chan struct{}, 1)}
	c, err := core.Dial(ctx, "chat", core.Config{
		Resolver:   r,
		BackoffMin: time.Minute, BackoffMax: 2 * time.Minute,
		Logger: zerolog.New(moving).Level(zerolog.DebugLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	st := newStates()
	c.Observe(st)
	srv, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, ctx, c, srv, "before the move")

	// The server pauses; the client's connection is cut, it tries again at once, is told the
	// server is moving, and settles into its backoff.
	if err := ln.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	heard, ok := st.await(ctx, 0, core.StateDisconnected)
	if !ok {
		t.Fatal("the client never saw its connection cut")
	}
	for moving.n.Load() == 0 {
		select {
		case <-moving.kick:
		case <-ctx.Done():
			t.Fatal("the client was never told the server is moving")
		}
	}
	// Sent while disconnected: it waits in the client's buffer and goes to the new place.
	if _, err := c.Send(ctx, []byte("during the move"), core.AckNone); err != nil {
		t.Fatal(err)
	}
	state, err := ln.Export()
	if err != nil {
		t.Fatal(err)
	}
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln2, moved, err := core.NewListenerFrom(nl, core.Config{}, state)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if len(moved) != 1 || moved[0].ID() != c.ID() {
		t.Fatalf("imported %d sessions", len(moved))
	}
	if err := ln2.Continue(); err != nil {
		t.Fatal(err)
	}
	_ = ln.Close()

	start := time.Now()
	if err := rebind(ctx, ln2.Addr().String()); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, ok := st.await(wctx, heard, core.StateConnected); !ok {
		t.Fatalf("the client did not resume within 20 s of the rebind (its backoff is at least 30 s): state %v", c.State())
	}
	took := time.Since(start)
	t.Logf("the client resumed %v after the rebind (its reconnection backoff: 1 to 2 minutes)", took)
	if c.State() != core.StateConnected {
		t.Errorf("state %v after resuming", c.State())
	}
	srv2 := moved[0]
	if m, err := srv2.Recv(ctx); err != nil || string(m.Data) != "during the move" {
		t.Fatalf("the new server received %q %v", m.Data, err)
	} else {
		_ = srv2.Settle(m.ID, nil)
	}
	exchange(t, ctx, c, srv2, "after the move")
	if err := c.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	srv2.Abort()
}

// exchange sends msg from the client and checks that the server gets it, then back.
func exchange(t *testing.T, ctx context.Context, c, s *core.Session, msg string) {
	t.Helper()
	for _, p := range [][2]*core.Session{{c, s}, {s, c}} {
		if _, err := p[0].Send(ctx, []byte(msg), core.AckProcessed); err != nil {
			t.Fatal(err)
		}
		m, err := p[1].Recv(ctx)
		if err != nil || string(m.Data) != msg {
			t.Fatalf("received %q %v, want %q", m.Data, err, msg)
		}
		if err := p[1].Settle(m.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
}
