package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/naming"
	"github.com/ftsl-go/ftsl/oneway"
)

// startTestNaming runs a naming server for the test, and returns a function that makes a
// Resolver of it (closed with the test), and a client.
func startTestNaming(t *testing.T) (func() core.Resolver, *naming.Client) {
	ns, err := naming.NewServer(naming.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(ns)
	t.Cleanup(hs.Close) // (cleanups run last first: the resolvers' watches end before)
	t.Cleanup(func() { ns.Close() })
	nc := &naming.Client{BaseURL: hs.URL}
	return func() core.Resolver {
		r, err := naming.NewResolver(nc, naming.ResolverConfig{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}, nc
}

// startTestServer runs a game server, ticking 100 times a second, until the test ends.
func startTestServer(ctx context.Context, t *testing.T, nc *naming.Client, seed uint64) *server {
	srv, err := startServer(ctx, serverConfig{name: "game", naming: nc, tickRate: 100, snapshotDir: t.TempDir(),
		logf: t.Logf}, "127.0.0.1:0", newWorld(seed))
	if err != nil {
		t.Fatal(err)
	}
	loopCtx, stopLoop := context.WithCancel(context.Background())
	go srv.run(loopCtx)
	t.Cleanup(func() {
		stopLoop()
		<-srv.done
		_ = srv.ln.Close()
	})
	return srv
}

// TestMigrateMovesEventTickets moves the server while a player holds events it has not
// confirmed: their tickets must move with the sessions, be followed again at the new address,
// and end processed there once the player confirms them; the player gets each exactly once.
func TestMigrateMovesEventTickets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resolver, nc := startTestNaming(t)
	srv := startTestServer(ctx, t, nc, 5)

	// A bot that plays, so that someone scores; and a player that reads nothing for now.
	b, err := joinPlayer(ctx, playerConfig{name: "bot", game: "game", seed: 1, inputRate: 100,
		ftsl: oneway.Config{Core: core.Config{Resolver: resolver()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.s.Abort()
	playCtx, stopPlay := context.WithCancel(ctx)
	defer stopPlay()
	played := make(chan error, 1)
	go func() { played <- b.play(playCtx) }()

	slow, err := oneway.Dial(ctx, "game", oneway.Config{Core: core.Config{Resolver: resolver()}})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Abort()
	tk, err := slow.Send(ctx, appendJoin(nil, "slow"), oneway.AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := tk.Wait(ctx); st != oneway.StatusProcessed {
		t.Fatalf("JOIN: %v, %v", st, err)
	}
	const held = 3
	if err := srv.await(ctx, func() bool { p := srv.world.player(slow.ID()); return p != nil && p.sent >= held }); err != nil {
		t.Fatal(err)
	}

	var m migration
	var merr error
	var moved, processedBefore uint64
	if err := srv.do(ctx, func() {
		m, merr = srv.migrate(ctx)
		if c := srv.conns[slow.ID()]; c != nil {
			moved = uint64(len(c.pending))
			processedBefore = c.p.processed
		}
	}); err != nil || merr != nil {
		t.Fatalf("migrate: %v, %v", err, merr)
	}
	if m.from == m.to || m.to == "" {
		t.Fatalf("migration %v", m)
	}
	if moved < held || processedBefore != 0 {
		t.Fatalf("after the move the server follows %d tickets of the slow player's (want at least %d), %d processed (want 0)",
			moved, held, processedBefore)
	}

	// The slow player reads and confirms everything now, at the new address.
	var rec eventRecord
	read := make(chan error, 1)
	go func() {
		var st state
		for {
			d, err := slow.Recv(context.Background())
			if err != nil {
				read <- err
				return
			}
			if k, _ := kindOf(d.Data); k == kindEvent {
				e, err := decodeEvent(d.Data)
				if err != nil {
					read <- err
					return
				}
				rec.add(e.seq)
			} else if err := decodeState(d.Data, &st); err != nil {
				read <- err
				return
			}
			_ = d.Confirm()
		}
	}()
	stopPlay()
	if err := <-played; err != nil {
		t.Fatal(err)
	}
	if err := srv.finish(ctx); err != nil {
		t.Fatal(err)
	}
	var p player
	if err := srv.do(ctx, func() { p = *srv.world.player(slow.ID()) }); err != nil {
		t.Fatal(err)
	}
	if err := slow.Close(ctx); err != nil {
		t.Fatal(err)
	}
	<-read // the session ended: everything it brought was taken
	if p.processed != p.sent || p.failed != 0 {
		t.Errorf("the server sent the slow player %d events: %d processed, %d failed", p.sent, p.processed, p.failed)
	}
	if rec.distinct() != p.sent || rec.duplicated != 0 || rec.missing() != 0 {
		t.Errorf("the slow player got %d of %d events, %d duplicated, %d missing", rec.distinct(), p.sent, rec.duplicated, rec.missing())
	}
}

// TestMigrateTicketsEndingAtResume moves the server while players hold events unconfirmed,
// and has each confirm them while the server is paused: the confirmations ride on the RESUME
// that reaches the new address, so the tickets end in the very handshake. The server must
// follow the moved tickets before its new listener serves, or it misses those outcomes. The
// players retry every 100 µs, so that they knock the moment it serves.
func TestMigrateTicketsEndingAtResume(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resolver, nc := startTestNaming(t)
	srv := startTestServer(ctx, t, nc, 9)
	b, err := joinPlayer(ctx, playerConfig{name: "bot", game: "game", seed: 2, inputRate: 100,
		ftsl: oneway.Config{Core: core.Config{Resolver: resolver()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.s.Abort()
	playCtx, stopPlay := context.WithCancel(ctx)
	defer stopPlay()
	played := make(chan error, 1)
	go func() { played <- b.play(playCtx) }()

	const holders = 8
	var held []*holder
	for i := range holders {
		h := newHolder(ctx, t, fmt.Sprintf("h%d", i), oneway.Config{MaxInFlight: 256,
			Core: core.Config{Resolver: resolver(), BackoffMin: 100 * time.Microsecond, BackoffMax: 200 * time.Microsecond}})
		held = append(held, h)
	}
	for _, h := range held {
		select {
		case <-h.holding:
		case <-ctx.Done():
			t.Fatal("a holder got no event to hold")
		}
	}
	var merr error
	if err := srv.do(ctx, func() { _, merr = srv.migrate(ctx) }); err != nil || merr != nil {
		t.Fatalf("migrate: %v, %v", err, merr)
	}
	stopPlay()
	if err := <-played; err != nil {
		t.Fatal(err)
	}
	if err := srv.finish(ctx); err != nil {
		t.Fatal(err)
	}
	for _, h := range held {
		var p player
		if err := srv.do(ctx, func() { p = *srv.world.player(h.s.ID()) }); err != nil {
			t.Fatal(err)
		}
		if p.processed != p.sent || p.failed != 0 {
			t.Errorf("%s: the server sent %d events: %d processed, %d failed", p.name, p.sent, p.processed, p.failed)
		}
	}
}

// holder is a player that holds the events it gets, unconfirmed, until its connection breaks;
// it then confirms them all, and from then on confirms everything at once.
type holder struct {
	s       *oneway.Session
	holding chan struct{} // closed once it holds an event

	mu   sync.Mutex
	held []*oneway.Delivery
	cut  bool
}

func newHolder(ctx context.Context, t *testing.T, name string, cfg oneway.Config) *holder {
	s, err := oneway.Dial(ctx, "game", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Abort)
	h := &holder{s: s, holding: make(chan struct{})}
	s.OnEvent(func(e events.Event) {
		if e.Kind != events.SessionReconnecting {
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.cut = true
		for _, d := range h.held {
			_ = d.Confirm()
		}
		h.held = nil
	})
	tk, err := s.Send(ctx, appendJoin(nil, name), oneway.AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := tk.Wait(ctx); st != oneway.StatusProcessed {
		t.Fatalf("JOIN %s: %v, %v", name, st, err)
	}
	go func() {
		var once sync.Once
		for {
			d, err := s.Recv(context.Background())
			if err != nil {
				return
			}
			h.mu.Lock()
			if k, _ := kindOf(d.Data); k == kindEvent && !h.cut {
				h.held = append(h.held, d)
				once.Do(func() { close(h.holding) })
			} else {
				_ = d.Confirm()
			}
			h.mu.Unlock()
		}
	}()
	return h
}
