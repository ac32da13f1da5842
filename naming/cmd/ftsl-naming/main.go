// Command ftsl-naming runs an FTSL naming service (package naming): servers bind their names to
// their addresses, and FTSL clients that dial a name find the server there, and find it again,
// at once, when it migrates and rebinds the name.
//
//	ftsl-naming [-listen 127.0.0.1:7117] [-data FILE] [-token T] [limits]
//
// The HTTP API is in the package documentation (go doc github.com/ftsl-go/ftsl/naming). Once
// it listens it prints one line on standard output, "ftsl-naming listening on ADDR", with the
// real address (useful with port 0). It logs to standard error (-log, -log-format).
//
// Writes (bind, rebind, unbind) need the token given by -token, or, so that it does not show in
// the process list, by the environment variable FTSL_NAMING_TOKEN (-token wins). Without either,
// anyone who reaches the server may move every name (a warning says so). The token travels in
// clear over HTTP: keep the server on a network you trust, or behind a TLS proxy.
//
// With -data the bindings persist in that file (created with mode 0600), so a restart keeps
// them; without it they live in memory only. SIGINT or SIGTERM shuts the server down
// gracefully: waiting watches are answered at once, requests under way finish, for up to
// -shutdown-timeout; a second signal stops at once. Exit status: 0 after a clean shutdown, 1 if
// the server failed or its shutdown was cut short, 2 for bad flags or a bad data file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ftsl-go/ftsl/internal/cmdlog"
	"github.com/ftsl-go/ftsl/internal/ftslerr"

	"github.com/rs/zerolog"

	"github.com/ftsl-go/ftsl/naming"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1 // the server failed, or its shutdown was cut short
	exitUsage = 2 // bad flags or a bad data file
)

// DefaultListen is where the server listens unless -listen says.
const DefaultListen = "127.0.0.1:7117"

// TokenEnv is the environment variable holding the token when -token is not given.
const TokenEnv = "FTSL_NAMING_TOKEN"

func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, sigs))
}

// options are the parsed flags.
type options struct {
	listen, data, token string
	maxNames, maxWatch  int
	maxWait             time.Duration
	logLevel, logFormat string
	shutdownTimeout     time.Duration
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("ftsl-naming", flag.ContinueOnError)
	// The flag package would print the whole usage after any mistake; one line says more.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&o.listen, "listen", DefaultListen, "TCP `address` to serve HTTP on (port 0: any free port)")
	fs.StringVar(&o.data, "data", "", "data `file` the bindings persist in (its directory must exist); without it they live in memory only")
	fs.StringVar(&o.token, "token", "", "bearer `token` that writes need (default: $"+TokenEnv+"; none: anyone may write)")
	fs.IntVar(&o.maxNames, "max-names", naming.DefaultMaxNames, "names bound at once (at most 100000)")
	fs.IntVar(&o.maxWatch, "max-watchers", naming.DefaultMaxWatchers, "watches waiting at once; more are answered 503")
	fs.DurationVar(&o.maxWait, "max-wait", naming.DefaultMaxWait, "longest a watch waits for a change")
	fs.StringVar(&o.logLevel, "log", "info", "log `level`: trace, debug, info, warn, error or disabled")
	fs.StringVar(&o.logFormat, "log-format", "auto", "log `format`: console, json, or auto (console on a terminal, else json)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown may take")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, `Usage: ftsl-naming [flags]

Runs an FTSL naming service over HTTP. Prints "ftsl-naming listening on ADDR" once it listens;
SIGINT or SIGTERM shuts it down gracefully, a second one at once. The API is in the package
documentation (go doc github.com/ftsl-go/ftsl/naming).

Flags:
`)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		return nil, err
	} else if err != nil {
		return nil, ftslerr.Errorf("%w (ftsl-naming -h lists the flags)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "token" })
	if !set {
		o.token = getenv(TokenEnv)
	}
	switch {
	case o.listen == "":
		return nil, errors.New("-listen: empty address")
	case set && o.token == "":
		return nil, errors.New("-token: empty (leave it out to let anyone write)")
	case o.maxNames < 1:
		return nil, fmt.Errorf("-max-names %d: want at least 1", o.maxNames)
	case o.maxWatch < 1:
		return nil, fmt.Errorf("-max-watchers %d: want at least 1", o.maxWatch)
	case o.maxWait <= 0:
		return nil, fmt.Errorf("-max-wait %v: want a positive duration", o.maxWait)
	case o.shutdownTimeout <= 0:
		return nil, fmt.Errorf("-shutdown-timeout %v: want a positive duration", o.shutdownTimeout)
	case o.logFormat != "auto" && o.logFormat != "console" && o.logFormat != "json":
		return nil, fmt.Errorf("-log-format %q: want console, json or auto", o.logFormat)
	}
	return o, nil
}

// run is the whole command; main only wires it to the process. sigs delivers SIGINT and SIGTERM.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, sigs <-chan os.Signal) int {
	o, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "ftsl-naming:", err)
		return exitUsage
	}
	lg, err := cmdlog.New(stderr, o.logLevel, o.logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "ftsl-naming:", err)
		return exitUsage
	}
	srv, err := naming.NewServer(naming.ServerConfig{
		DataFile:    o.data,
		Token:       o.token,
		MaxNames:    o.maxNames,
		MaxWatchers: o.maxWatch,
		MaxWait:     o.maxWait,
		DefaultWait: min(naming.DefaultWait, o.maxWait),
		Logger:      lg,
	})
	if err != nil {
		fmt.Fprintln(stderr, "ftsl-naming:", err)
		return exitUsage
	}
	if o.token == "" {
		lg.Warn().Msg("no -token and no " + TokenEnv + ": anyone who reaches the server may bind, rebind and unbind names")
	}
	if o.data == "" {
		lg.Warn().Msg("no -data file: the bindings live in memory only, and a restart loses them")
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		lg.Error().Err(err).Str("listen", o.listen).Msg("cannot listen")
		return exitFail
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A watch waits up to max-wait and a sixteenth more before it writes its answer.
		WriteTimeout:   o.maxWait + o.maxWait/16 + 30*time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       log.New(lg.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second}), "", 0),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	lg.Info().Stringer("addr", ln.Addr()).Str("data", o.data).Bool("token", o.token != "").Msg("naming server serving")
	fmt.Fprintf(stdout, "ftsl-naming listening on %s\n", ln.Addr())

	status := exitOK
	select {
	case sig := <-sigs:
		lg.Info().Stringer("signal", sig).Stringer("timeout", o.shutdownTimeout).Msg("shutting down; a second signal stops at once")
	case err := <-served:
		lg.Error().Err(err).Msg("serving failed; shutting down")
		status = exitFail
	}
	_ = srv.Close() // answers the waiting watches, so Shutdown need not wait for them
	ctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- hs.Shutdown(ctx) }()
	select {
	case err = <-shut:
	case sig := <-sigs:
		lg.Warn().Stringer("signal", sig).Msg("second signal: stopping at once")
		cancel()
		_ = hs.Close()
		err = <-shut
		if err == nil {
			err = errors.New("stopped by a second signal")
		}
	}
	if err != nil {
		lg.Error().Err(err).Msg("shutdown cut short")
		_ = hs.Close()
		return exitFail
	}
	if status == exitOK {
		lg.Info().Msg("naming server stopped")
	}
	return status
}
