package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/naming"
	"github.com/ftsl-go/ftsl/oneway"
)

// runPlay plays one bot until SIGINT or SIGTERM (it then closes its session) or until the
// server ends the game, and prints what it saw.
func runPlay(ctx context.Context, o options, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := naming.NewResolver(&naming.Client{BaseURL: o.namingURL}, naming.ResolverConfig{})
	if err != nil {
		return err
	}
	defer r.Close()
	// The prints come from the session's goroutines; an io.Writer such as os.Stdout takes
	// whole lines from several goroutines.
	b, err := joinPlayer(ctx, playerConfig{name: o.name, game: o.game, seed: o.seed, inputRate: o.inputRate,
		ftsl: oneway.Config{Core: core.Config{Resolver: r}},
		onEvent: func(e event) {
			fmt.Fprintf(stdout, "event %d: %s scored, score %d (tick %d)\n", e.seq, e.scorer, e.score, e.tick)
		},
		onResume: func(d time.Duration) { fmt.Fprintf(stdout, "resumed in %s ms\n", ms(d)) }})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "joined %q as %s (session %d)\n", o.game, o.name, b.s.ID())
	playErr := b.play(ctx)
	if ctx.Err() != nil {
		closeCtx, cancel := context.WithTimeout(context.Background(), endTimeout)
		defer cancel()
		playErr = b.close(closeCtx)
	} else {
		<-b.recvDone // the session ended: every message it brought has been taken
	}
	rep := b.report()
	writePlayerSummary(stdout, rep)
	switch {
	case errors.Is(playErr, oneway.ErrSessionClosed) && ctx.Err() == nil:
		// The server ended the game. (core does not tell its clean close from an abort
		// but by the text: both are ErrSessionClosed.)
		fmt.Fprintf(stdout, "the server ended the session: %v\n", playErr)
	case playErr != nil:
		return fmt.Errorf("session %d: %w", rep.id, playErr)
	}
	return nil
}
