// Command chat is terminal chat rooms over FTSL's publish/subscribe hub (package pubsub): what
// you type reaches everyone in the room exactly once and in order, through broken connections,
// and each line you send shows, like a messenger's ticks, how far it got.
//
// See it at work, with connections cut mid-conversation (a few seconds):
//
//	go run ./examples/chat -demo
//
// Chat for real: the first command runs a hub inside itself and prints how others join it.
//
//	go run ./examples/chat                                         # a hub, and you in room lobby
//	go run ./examples/chat -hub 127.0.0.1:PORT -name bob -room lobby  # join it
//	go run ./examples/chat -serve -listen 127.0.0.1:4300            # only a hub
//
// # Marks
//
// Each line you send is published at pubsub.AckProcessed with pubsub.ReportDelivered, and its
// mark follows its ticket:
//
//	✓        sent: Publish returned, the line is in your session, which gets it to the hub
//	         whatever happens to the connection
//	✓✓       delivered: every member of the room was handed it (Ticket.Delivered)
//	✓✓ blue  processed: every member showed it (Ticket.Wait: no error, Processed == Matched)
//	✗        failed, with who failed it and why (the OutcomeError's failures)
//
// A member connects with pubsub.Config.NoEcho, so the hub neither sends it its own lines nor
// counts it in their outcomes: "processed by 2/2" means both other members. A member alone in
// its room has its lines processed by 0/0.
//
// # Terminal and scripts
//
// On a terminal (standard input and output both), chat takes the keyboard itself (raw mode, on
// Linux and the BSDs and macOS), keeps the line you type at the bottom, prints what others say
// above it as it comes, and updates each mark in place. Commands: /who, /quit (or Ctrl-D, or
// Ctrl-C), and //text to send a line that starts with a slash.
//
// Otherwise it serves scripts: it reads lines from standard input and publishes each non-empty
// one (nothing is a command), prints what others say on standard output, one line each, as
//
//	[ROOM] NAME: TEXT
//
// and nothing else there (diagnostics go to standard error). At the end of the input it waits
// until every line sent has its outcome (up to -timeout), leaves, and exits 0 only if every line
// was processed by every member; otherwise 1, with the failures on standard error. With
// -wait-members N it sends nothing before N other members are in the room (up to -wait-timeout),
// so a script knows who will get its lines. A script that must see the others' lines too keeps
// its input open until it did.
//
// # Rooms and presence
//
// Room ROOM is the subject chat.ROOM. Lines travel as "<instance> <seq> <text>", where instance
// is a random ID of the process and seq counts its lines from 1: a receiver checks that each
// sender's lines come once and in order. Members say who is here on chat.ROOM.presence: "join
// <instance>" when they arrive, which every member present answers with "here <instance>", and
// "leave <instance>" when they go. A member whose process dies without a word stays listed.
//
// Exit status: 0 when everything went through, 1 when something failed, 2 for bad flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, sigs))
}

// options are the parsed flags.
type options struct {
	hub, listen     string
	name, room      string
	serve, demo     bool
	waitMembers     int
	waitTimeout     time.Duration
	timeout         time.Duration
	pace            time.Duration
	shutdownTimeout time.Duration
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // one line says more than the whole usage after a mistake
	fs.Usage = func() {}
	fs.StringVar(&o.hub, "hub", "", "join the hub at `address` (host:port); without it, chat runs a hub of its own and prints how to join it")
	fs.StringVar(&o.name, "name", "", "your `name` in the room: letters, digits, '-' and '_' (default: your user name)")
	fs.StringVar(&o.room, "room", "lobby", "the `room` to join (the subject chat.ROOM)")
	fs.BoolVar(&o.serve, "serve", false, "run only a hub; SIGINT or SIGTERM closes it")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "`address` of the hub chat runs (port 0: any free port)")
	fs.IntVar(&o.waitMembers, "wait-members", 0, "send nothing before `N` other members are in the room")
	fs.DurationVar(&o.waitTimeout, "wait-timeout", 30*time.Second, "how long -wait-members waits before giving up (exit 1)")
	fs.DurationVar(&o.timeout, "timeout", 90*time.Second, "how long, once the input ended, to wait for the outcomes of the lines sent")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long closing the hub may take before what is left is aborted")
	fs.BoolVar(&o.demo, "demo", false, "run a scripted conversation between alice, bob and carol, with connections cut, and check that nothing was lost or duplicated")
	fs.DurationVar(&o.pace, "pace", 250*time.Millisecond, "with -demo, the pause between lines")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, `Usage:
  chat [-name NAME] [-room ROOM] [-listen ADDR]   run a hub and join it (prints how others join)
  chat -hub ADDR [-name NAME] [-room ROOM]       join a hub
  chat -serve [-listen ADDR]                     run only a hub
  chat -demo                                     the scripted demo, connections cut and all

On a terminal, type lines to send them (/who, /quit); otherwise lines are read from standard
input and what others say is printed as "[ROOM] NAME: TEXT". go doc ./examples/chat says more.

Flags:
`)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		return nil, err
	} else if err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	only := func(mode string, allowed ...string) error {
		for name := range set {
			if name != mode && !slices.Contains(allowed, name) {
				return fmt.Errorf("-%s does not go with -%s", name, mode)
			}
		}
		return nil
	}
	switch {
	case o.demo:
		if err := only("demo", "pace"); err != nil {
			return nil, fmt.Errorf("%w: the demo runs its own hub and users", err)
		}
	case o.serve:
		if err := only("serve", "listen", "shutdown-timeout"); err != nil {
			return nil, fmt.Errorf("%w: -serve runs only a hub", err)
		}
	case o.hub != "" && set["listen"]:
		return nil, errors.New("-listen is the address of the hub chat runs; with -hub it joins another")
	case set["pace"]:
		return nil, errors.New("-pace goes with -demo")
	}
	if !o.serve && !o.demo {
		if !set["name"] {
			o.name = defaultName()
		}
		if err := checkName("name", o.name); err != nil {
			return nil, err
		}
		if err := checkName("room", o.room); err != nil {
			return nil, fmt.Errorf("%w (a room is one subject token: chat.ROOM)", err)
		}
	}
	switch {
	case set["hub"] && o.hub == "":
		return nil, errors.New("-hub: empty address")
	case o.listen == "":
		return nil, errors.New("-listen: empty address")
	case o.waitMembers < 0:
		return nil, fmt.Errorf("-wait-members %d: want 0 or more", o.waitMembers)
	case o.waitTimeout <= 0:
		return nil, fmt.Errorf("-wait-timeout %v: want a positive duration", o.waitTimeout)
	case o.timeout <= 0:
		return nil, fmt.Errorf("-timeout %v: want a positive duration", o.timeout)
	case o.shutdownTimeout <= 0:
		return nil, fmt.Errorf("-shutdown-timeout %v: want a positive duration", o.shutdownTimeout)
	case o.pace < 0 || o.pace > 10*time.Second:
		return nil, fmt.Errorf("-pace %v: want 0 to 10s", o.pace)
	}
	return o, nil
}

// defaultName is the user's login name made fit for a chat name, or "guest".
func defaultName() string {
	var b strings.Builder
	for _, r := range os.Getenv("USER") {
		if b.Len() == maxName {
			break
		}
		if isNameRune(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "guest"
	}
	return b.String()
}

// run is the whole command; main only wires it to the process. sigs delivers SIGINT and SIGTERM.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, sigs <-chan os.Signal) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "chat: %v (chat -h lists the flags)\n", err)
		return exitUsage
	}
	switch {
	case o.serve:
		return serve(o, stdout, stderr, sigs)
	case o.demo:
		return demo(o, stdout, stderr)
	}
	return chat(o, stdin, stdout, stderr, sigs)
}

// isTerminal reports whether f is a terminal (a character device, as os.File tells).
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
