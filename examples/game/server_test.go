package main

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/naming"
	"github.com/ftsl-go/ftsl/oneway"
)

// TestMigrateMovesEventTickets moves the server while a player holds events it has not
// confirmed: their tickets must move with the sessions, be followed again at the new address,
// and end processed there once the player confirms them; the player gets each exactly once.
func TestMigrateMovesEventTickets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ns, err := naming.NewServer(naming.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(ns)
	defer hs.Close()
	defer ns.Close()
	nc := &naming.Client{BaseURL: hs.URL}
	resolver := func() core.Resolver {
		r, err := naming.NewResolver(nc, naming.ResolverConfig{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}

	srv, err := startServer(ctx, serverConfig{name: "game", naming: nc, tickRate: 100, snapshotDir: t.TempDir(),
		logf: t.Logf}, "127.0.0.1:0", newWorld(5))
	if err != nil {
		t.Fatal(err)
	}
	loopCtx, stopLoop := context.WithCancel(context.Background())
	go srv.run(loopCtx)
	defer func() {
		stopLoop()
		<-srv.done
		_ = srv.ln.Close()
	}()

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
