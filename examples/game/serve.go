package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/ftsl-go/ftsl/naming"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/snapshot"
)

// endTimeout bounds the graceful end of a game: the events' outcomes, the sessions' closes.
const endTimeout = 10 * time.Second

// startServer starts a new game w on a listener at addr and binds the name to it.
func startServer(ctx context.Context, cfg serverConfig, addr string, w *world) (*server, error) {
	ln, err := oneway.Listen(addr, cfg.ftsl)
	if err != nil {
		return nil, err
	}
	// Rebind, not Bind: a server that starts takes its name, from a server that crashed too.
	b, err := cfg.naming.Rebind(ctx, cfg.name, ln.Addr().String())
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("ftsl: game: bind %q: %w", cfg.name, err)
	}
	srv := newServer(cfg, ln, w)
	srv.bound = b.Version
	return srv, nil
}

// runServe runs the game server until SIGINT (the game ends), or SIGUSR2/SIGTERM with
// -snapshot (the game is saved); SIGUSR1 moves it.
func runServe(ctx context.Context, o options, stdout io.Writer) error {
	logf := func(format string, args ...any) { fmt.Fprintf(stdout, format+"\n", args...) }
	move, save, end := serverSignals(o.snapshot != "")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, append(append(move, save...), end...)...)
	defer signal.Stop(sigs)

	cfg := serverConfig{name: o.name, naming: &naming.Client{BaseURL: o.namingURL, Token: o.token},
		tickRate: o.tickRate, logf: logf}
	var srv *server
	if o.restore != "" {
		snap, err := snapshot.ReadFile(o.restore)
		if err != nil {
			return err
		}
		srv = newServer(cfg, nil, nil)
		if err := srv.restore(ctx, snap, o.listen); err != nil {
			return fmt.Errorf("restore %s: %w", o.restore, err)
		}
		logf("restored %s: tick %d, %d players", o.restore, srv.world.tick, len(srv.world.players))
	} else {
		var err error
		if srv, err = startServer(ctx, cfg, o.listen, newWorld(o.seed)); err != nil {
			return err
		}
	}
	logf("serving %q at %s", o.name, srv.ln.Addr())
	loopCtx, stopLoop := context.WithCancel(context.Background())
	go srv.run(loopCtx)
	defer func() {
		stopLoop()
		<-srv.done
		_ = srv.ln.Close()
	}()

	for {
		var sig os.Signal
		select {
		case <-ctx.Done():
			sig = os.Interrupt
		case sig = <-sigs:
		}
		switch {
		case contains(move, sig):
			var m migration
			var merr error
			if err := srv.do(ctx, func() { m, merr = srv.migrate(ctx) }); err != nil {
				return err
			}
			if errors.Is(merr, errNotFrozen) {
				logf("migration failed: %v", merr)
				continue
			}
			if merr != nil {
				return fmt.Errorf("migration: %w", merr)
			}
			logf("%s", m)
		case contains(save, sig) && o.snapshot == "":
			logf("%v ignored: no -snapshot file to save the game to", sig)
		case contains(save, sig):
			return saveGame(ctx, srv, stopLoop, o.snapshot, logf)
		default:
			return endGame(srv, stdout)
		}
	}
}

// saveGame freezes the game into the snapshot file at path and stops the server without a
// word to the players: they wait, resuming, for the server that takes it up (-restore).
func saveGame(ctx context.Context, srv *server, stopLoop func(), path string, logf func(string, ...any)) error {
	var snap *snapshot.Snapshot
	var err error
	if err := srv.do(ctx, func() {
		if snap, err = srv.freeze(ctx); err == nil {
			stopLoop() // the sessions are in snap: the loop has nothing left to run
		}
	}); err != nil {
		return err
	}
	if err != nil {
		return err
	}
	if err := snap.WriteFile(path); err != nil {
		return fmt.Errorf("the game is lost: %w", err)
	}
	logf("saved the game to %s (%d bytes); take it up with -serve -restore %s", path, snap.Size(), path)
	return nil
}

// endGame ends the game gracefully: no more scoring, every event's outcome known, every
// session closed (its player has all that was sent), then the summary and the name unbound.
func endGame(srv *server, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), endTimeout)
	defer cancel()
	var errs []error
	if err := srv.finish(ctx); err != nil {
		errs = append(errs, fmt.Errorf("waiting for the events' outcomes: %w", err))
	}
	var ln *oneway.Listener
	if err := srv.do(ctx, func() { ln = srv.ln }); err != nil {
		return err
	}
	// The loop runs on meanwhile, reading what the players sent to the end of their sessions.
	if err := ln.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := srv.await(ctx, srv.empty); err != nil {
		errs = append(errs, fmt.Errorf("waiting for the players to leave: %w", err))
	}
	var r report
	if err := srv.do(ctx, func() { r = srv.report() }); err != nil {
		return err
	}
	writeServerSummary(stdout, r)
	err := srv.cfg.naming.UnbindVersion(ctx, srv.cfg.name, srv.bound)
	if err != nil && !errors.Is(err, naming.ErrVersionMismatch) && !errors.Is(err, naming.ErrNotFound) {
		errs = append(errs, fmt.Errorf("unbind %q: %w", srv.cfg.name, err))
	}
	return errors.Join(errs...)
}

func contains(sigs []os.Signal, sig os.Signal) bool {
	for _, s := range sigs {
		if s == sig {
			return true
		}
	}
	return false
}
