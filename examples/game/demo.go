package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/naming"
	"github.com/ftsl-go/ftsl/oneway"
)

// errGameFailed is the demo's error when the summary found a problem.
var errGameFailed = errors.New("ftsl: game: the game lost, duplicated or left unconfirmed some of its messages (see the summary)")

// runDemo plays a game in this process: naming server, game server, bots; it moves the server
// at -migrate-after and prints the summary at -duration.
func runDemo(ctx context.Context, o options, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(string, ...any) {}
	if o.verbose {
		logf = func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	}

	nc, stopNaming, err := startNaming(o.token)
	if err != nil {
		return err
	}
	defer stopNaming() // after the resolvers' Close, deferred below: their watches end first
	srv, err := startServer(ctx, serverConfig{name: o.name, naming: nc, tickRate: o.tickRate,
		logf: func(format string, args ...any) { logf("server: "+format, args...) }}, o.listen, newWorld(o.seed))
	if err != nil {
		return err
	}
	loopCtx, stopLoop := context.WithCancel(context.Background())
	go srv.run(loopCtx)
	defer func() {
		stopLoop()
		<-srv.done
		_ = srv.ln.Close()
	}()
	logf("server: serving %q at %s", o.name, srv.ln.Addr())

	bots := make([]*bot, o.players)
	for i := range bots {
		// A Resolver each, as separate processes would have: each watches the name itself.
		r, err := naming.NewResolver(nc, naming.ResolverConfig{})
		if err != nil {
			return err
		}
		defer r.Close()
		name := fmt.Sprintf("p%d", i+1)
		b, err := joinPlayer(ctx, playerConfig{name: name, game: o.name, seed: o.seed + uint64(i) + 1,
			inputRate: o.inputRate, ftsl: oneway.Config{Core: core.Config{Resolver: r}},
			onResume: func(d time.Duration) { logf("%s: resumed in %s ms", name, ms(d)) }})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer b.s.Abort() // (after a graceful close, nothing)
		bots[i] = b
	}

	playCtx, stopPlay := context.WithCancel(ctx)
	defer stopPlay()
	var wg sync.WaitGroup
	playErrs := make([]error, len(bots))
	for i, b := range bots {
		wg.Go(func() { playErrs[i] = b.play(playCtx) })
	}
	start := time.Now()
	if o.migrateAfter > 0 {
		if err := sleepUntil(ctx, start.Add(o.migrateAfter)); err != nil {
			return err
		}
		var m migration
		var merr error
		if err := srv.do(ctx, func() { m, merr = srv.migrate(ctx) }); err != nil {
			return err
		}
		if merr != nil {
			return fmt.Errorf("migration: %w", merr)
		}
		logf("server: %s", m)
	}
	if err := sleepUntil(ctx, start.Add(o.duration)); err != nil {
		return err
	}

	// The end: players stop, the server stops scoring and waits for every event's outcome,
	// then the players close their sessions once everything they sent is acknowledged.
	stopPlay()
	wg.Wait()
	for i, err := range playErrs {
		if err != nil {
			return fmt.Errorf("%s: %w", bots[i].cfg.name, err)
		}
	}
	endCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := srv.finish(endCtx); err != nil {
		return fmt.Errorf("waiting for the events' outcomes: %w", err)
	}
	reports := make([]botReport, len(bots))
	for i, b := range bots {
		reports[i] = b.report()
	}
	for _, b := range bots {
		if err := b.close(endCtx); err != nil {
			return fmt.Errorf("%s: close: %w", b.cfg.name, err)
		}
	}
	// Every input is counted once the server has read all its players' sessions to their end.
	if err := srv.await(endCtx, srv.empty); err != nil {
		return fmt.Errorf("waiting for the players to leave: %w", err)
	}
	var r report
	if err := srv.do(endCtx, func() { r = srv.report() }); err != nil {
		return err
	}
	if !writeDemoSummary(stdout, r, reports) {
		return errGameFailed
	}
	return nil
}

// sleepUntil waits until t, or for ctx to end.
func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startNaming runs a naming server on a loopback port, and returns a client of it and the
// function that stops it.
func startNaming(token string) (*naming.Client, func(), error) {
	ns, err := naming.NewServer(naming.ServerConfig{Token: token})
	if err != nil {
		return nil, nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	hs := &http.Server{Handler: ns, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = hs.Serve(l)
	}()
	stop := func() {
		_ = ns.Close()
		_ = hs.Close() // the watches were cancelled by their resolvers
		<-served
	}
	return &naming.Client{BaseURL: "http://" + l.Addr().String(), Token: token}, stop, nil
}
