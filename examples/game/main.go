// Command game is a small multiplayer game over FTSL one-way sessions whose server moves to
// another port in the middle of play, with its players' sessions, and no player notices more
// than a pause of a few milliseconds.
//
// It shows three things FTSL gives a game:
//
//   - two kinds of traffic on one session: inputs (players, 60 a second) and world states (the
//     server, at its tick rate) sent with AckNone, stale a moment later and never followed;
//     important events (a player scores) sent with AckProcessed, each one followed by its ticket
//     until the player has confirmed it, without the server loop ever waiting;
//   - live migration (PAPER III-C): the server freezes its sessions, writes them and the world
//     to a snapshot file, rebuilds both on a new port from the file, rebinds its name in the
//     naming service, and plays on; players resume there the moment their Resolver hears of it;
//   - that nothing is lost or repeated meanwhile: every player numbers the events it got, and
//     the game ends by comparing them with what the server sent.
//
// The demo runs a naming server, the game server and 8 bot players in one process, moves the
// server halfway, and prints the summary; it exits 0 only if no important event was lost or
// duplicated, every event was confirmed, every input arrived, and every player resumed:
//
//	go run ./examples/game -demo [-players 8] [-duration 3s] [-migrate-after 1.5s] [-v]
//
// The parts also run as separate processes, with a naming server such as ftsl-naming:
//
//	go run ./naming/cmd/ftsl-naming -listen 127.0.0.1:7117 &
//	go run ./examples/game -serve -listen 127.0.0.1:0 -naming http://127.0.0.1:7117 [-name game]
//	go run ./examples/game -play -naming http://127.0.0.1:7117 -name alice [-game game]
//
// Send the server SIGUSR1 to move it to a new port of the same host. With -snapshot FILE,
// SIGUSR2 or SIGTERM saves the game to FILE and exits without a word to the players (without
// -snapshot, SIGUSR2 is ignored and SIGTERM ends the game as SIGINT does), and
// "-serve -restore FILE" (in another process, on another address) takes it up: players resume
// there if it comes within their ResumeWindow (60 s). SIGINT ends the game: the server stops
// scoring, waits for every event's outcome, prints each player's counts and closes the
// sessions; a player prints its own counts when its session closes, or on SIGINT.
//
// The naming server's write token comes from -token, or FTSL_NAMING_TOKEN.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// options are the command line's.
type options struct {
	demo, serve, play bool

	listen    string
	namingURL string
	name      string
	game      string
	token     string
	snapshot  string
	restore   string

	players      int
	duration     time.Duration
	migrateAfter time.Duration
	tickRate     int
	inputRate    int
	seed         uint64
	verbose      bool
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command with args and returns its exit status. Each mode listens for the
// signals it uses.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "game:", err)
		return 2
	}
	switch {
	case o.demo:
		err = runDemo(ctx, o, stdout, stderr)
	case o.serve:
		err = runServe(ctx, o, stdout)
	case o.play:
		err = runPlay(ctx, o, stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "game:", err)
		return 1
	}
	return 0
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("game", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.demo, "demo", false, "run a naming server, the game server and bot players in one process, move the server, print the summary")
	fs.BoolVar(&o.serve, "serve", false, "run the game server")
	fs.BoolVar(&o.play, "play", false, "run one bot player")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "`address` the game server listens on (-serve)")
	fs.StringVar(&o.namingURL, "naming", "", "`URL` of the naming server (-serve, -play)")
	fs.StringVar(&o.name, "name", "", "-serve: the game's name in the naming service (default \"game\"); -play: the player's name")
	fs.StringVar(&o.game, "game", "game", "the game's `name` in the naming service (-play)")
	fs.StringVar(&o.token, "token", "", "the naming server's write token (default $FTSL_NAMING_TOKEN)")
	fs.StringVar(&o.snapshot, "snapshot", "", "-serve: on SIGUSR2 or SIGTERM, save the game to `file` and exit")
	fs.StringVar(&o.restore, "restore", "", "-serve: take up the game saved in `file`")
	fs.IntVar(&o.players, "players", 8, "bot players (-demo)")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "how long the demo plays")
	fs.DurationVar(&o.migrateAfter, "migrate-after", 1500*time.Millisecond, "when the demo moves the server (0: never)")
	fs.IntVar(&o.tickRate, "tick-rate", 30, "server ticks a second")
	fs.IntVar(&o.inputRate, "input-rate", 60, "player inputs a second")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the world and the bots")
	fs.BoolVar(&o.verbose, "v", false, "-demo: tell the story on stderr")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	modes := 0
	for _, m := range []bool{o.demo, o.serve, o.play} {
		if m {
			modes++
		}
	}
	switch {
	case modes != 1:
		return o, errors.New("give one of -demo, -serve, -play")
	case (o.serve || o.play) && o.namingURL == "":
		return o, errors.New("-serve and -play need -naming URL")
	case o.play && o.name == "":
		return o, errors.New("-play needs -name, the player's name")
	case o.players < 1 || o.players > maxPlayers:
		return o, fmt.Errorf("-players %d: want 1 to %d", o.players, maxPlayers)
	case o.tickRate < 1 || o.tickRate > 1000:
		return o, fmt.Errorf("-tick-rate %d: want 1 to 1000", o.tickRate)
	case o.inputRate < 1 || o.inputRate > 1000:
		return o, fmt.Errorf("-input-rate %d: want 1 to 1000", o.inputRate)
	case o.duration <= 0:
		return o, fmt.Errorf("-duration %v: want more than 0", o.duration)
	case o.migrateAfter < 0 || o.migrateAfter >= o.duration:
		return o, fmt.Errorf("-migrate-after %v: want 0 (never) or less than -duration %v", o.migrateAfter, o.duration)
	}
	if o.name == "" {
		o.name = "game"
	}
	if o.token == "" {
		o.token = os.Getenv("FTSL_NAMING_TOKEN") // (not the flag's default: -h would print it)
	}
	if o.play {
		if err := checkName(o.name); err != nil {
			return o, err
		}
	}
	return o, nil
}
