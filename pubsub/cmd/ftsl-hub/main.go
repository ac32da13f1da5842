// Command ftsl-hub runs a publish/subscribe hub (package pubsub) as a server: clients connect
// with pubsub.Dial and ride through broken connections with nothing lost.
//
//	ftsl-hub [-listen 127.0.0.1:4300] [-auth FILE] [-tls-cert FILE -tls-key FILE [-tls-client-ca FILE]] [limits]
//
// Once it listens it prints one line on standard output, "ftsl-hub listening on ADDR", with the
// real address (useful with port 0). It logs to standard error (-log, -log-format). SIGINT or
// SIGTERM closes it gracefully: no new clients or publishes, and every client's session is
// closed once what the hub accepted went through, for up to -shutdown-timeout; a second signal
// aborts at once. Exit status: 0 after a clean shutdown, 1 if the shutdown was cut short or the
// hub failed, 2 for bad flags or a bad file.
//
// # Auth file
//
// Without -auth every client may connect and do everything (a warning says so). With it, the
// JSON file says who may connect and what each may publish and subscribe to:
//
//	{
//	  "users": [
//	    {"user": "alice", "password_hash": "pbkdf2-sha256$600000$...$...",
//	     "publish": {"allow": ["orders.>"], "deny": ["orders.secret"]},
//	     "subscribe": {"allow": ["updates.>"]}},
//	    {"user": "bob", "password": "plain text", "identity": "builder"},
//	    {"token_sha256": "<sha256sum of the token>", "identity": "billing"},
//	    {"token": "plain text", "identity": "reports"},
//	    {"certificate_cn": "sensor-17", "publish": {"allow": ["sensors.17.>"]}}
//	  ],
//	  "anonymous": {"subscribe": {"allow": ["public.>"]}, "publish": {"deny": [">"]}}
//	}
//
// Each user has one way in: a user name with a password, a token, or, with -tls-client-ca, the
// subject CN of its client certificate (used when the client presents no other credential).
// "identity" is the name others see as the publisher (default: the user name or the CN; a token
// user must give one). "publish" and "subscribe" hold allow and deny lists of subjects, wildcards
// allowed: an empty allow list allows everything, and deny wins. "anonymous", if present, is
// what a client with no credential may do; without it such a client is refused.
//
// Secrets, and the trade-off: a plain "password" or "token" is accepted only if the file is
// readable by its owner alone (chmod 600), since anyone who reads the file has them.
// "password_hash" is PBKDF2-HMAC-SHA256 (the standard library has no bcrypt or argon2), made by
//
//	printf %s 'the password' | ftsl-hub -hash-password
//
// at 600,000 iterations: a stolen file costs an attacker that much per guess, and the hub about
// 150 ms of one CPU per login (logins run on at most half the CPUs at once; resumed sessions do
// not log in again). "token_sha256" is a plain SHA-256, enough for a long random token, which no
// amount of guessing finds, but not for a password. Secrets are compared in constant time, and
// an unknown user costs as much as a wrong password. A bad file is refused at startup, with the
// line and field at fault.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ftsl-go/ftsl/internal/cmdlog"
	"github.com/ftsl-go/ftsl/internal/ftslerr"

	"github.com/rs/zerolog"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub"
	"github.com/ftsl-go/ftsl/pubsub/internal/authfile"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1 // the hub failed, or its shutdown was cut short
	exitUsage = 2 // bad flags or a bad file
)

// DefaultListen is where the hub listens unless -listen says.
const DefaultListen = "127.0.0.1:4300"

// The bounds of -max-payload: room for a client's CONNECT (its name, credential and inbox), and
// core's bound on MaxMessageSize.
const (
	minPayload = 1 << 10
	maxPayload = 512 << 20
)

func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, sigs))
}

// options are the parsed flags.
type options struct {
	listen                 string
	auth                   string
	tlsCert, tlsKey, tlsCA string
	maxSubs, maxSubject    int
	maxPayload             byteSize
	maxSessions            int
	slow                   string
	maxBlock               time.Duration
	logLevel, logFormat    string
	shutdownTimeout        time.Duration
	hashPassword           bool
	hashIterations         int
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{maxPayload: core.DefaultMaxMessageSize}
	fs := flag.NewFlagSet("ftsl-hub", flag.ContinueOnError)
	// The flag package would print the whole usage after any mistake; one line says more.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&o.listen, "listen", DefaultListen, "TCP `address` to serve clients on (port 0: any free port)")
	fs.StringVar(&o.auth, "auth", "", "auth `file` (JSON): who may connect, and what each may publish and subscribe to; without it, everyone may do everything")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "server certificate `file` (PEM) for TLS; needs -tls-key")
	fs.StringVar(&o.tlsKey, "tls-key", "", "server private key `file` (PEM) for TLS")
	fs.StringVar(&o.tlsCA, "tls-client-ca", "", "CA certificates `file` (PEM): require client certificates signed by them (mutual TLS); needs -tls-cert")
	fs.IntVar(&o.maxSubs, "max-subscriptions", pubsub.DefaultMaxSubscriptions, "subscriptions one client may hold")
	fs.IntVar(&o.maxSubject, "max-subject", pubsub.DefaultMaxSubjectLength, "longest subject, pattern or queue name, in `bytes` (at most 4096)")
	fs.Var(&o.maxPayload, "max-payload", "largest message a client may send or get (subject and headers included): a `size` in bytes, or with a KiB, MiB or GiB suffix; 1KiB to 512MiB")
	fs.IntVar(&o.maxSessions, "max-sessions", core.DefaultMaxSessions, "sessions the hub holds at once, connected or waiting for their client to resume")
	fs.StringVar(&o.slow, "slow", "fail", "slow-consumer `policy`: fail (a subscriber that cannot take a message now fails its share of the publish at once) or block (the publisher waits up to -max-block for it)")
	fs.DurationVar(&o.maxBlock, "max-block", pubsub.DefaultMaxBlock, "longest wait for a slow subscriber with -slow block")
	fs.StringVar(&o.logLevel, "log", "info", "log `level`: trace, debug, info, warn, error or disabled")
	fs.StringVar(&o.logFormat, "log-format", "auto", "log `format`: console, json, or auto (console on a terminal, else json)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown may take before what is left is aborted")
	fs.BoolVar(&o.hashPassword, "hash-password", false, "read a password from standard input, print its password_hash for the auth file, and exit")
	fs.IntVar(&o.hashIterations, "hash-iterations", authfile.DefaultIterations, "PBKDF2 iterations for -hash-password")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, `Usage: ftsl-hub [flags]

Runs a pubsub hub. Prints "ftsl-hub listening on ADDR" once it listens; SIGINT or SIGTERM
closes it gracefully, a second one aborts. The auth file's format is in the command's
documentation (go doc github.com/ftsl-go/ftsl/pubsub/cmd/ftsl-hub).

Flags:
`)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		return nil, err
	} else if err != nil {
		return nil, ftslerr.Errorf("%w (ftsl-hub -h lists the flags)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	switch {
	case o.listen == "":
		return nil, errors.New("-listen: empty address")
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return nil, errors.New("-tls-cert and -tls-key go together")
	case o.tlsCA != "" && o.tlsCert == "":
		return nil, errors.New("-tls-client-ca needs -tls-cert and -tls-key: mutual TLS is TLS first")
	case o.maxSubs < 1:
		return nil, fmt.Errorf("-max-subscriptions %d: want at least 1", o.maxSubs)
	case o.maxSubject < 1 || o.maxSubject > 4096:
		return nil, fmt.Errorf("-max-subject %d: want 1 to 4096", o.maxSubject)
	case o.maxPayload < minPayload || o.maxPayload > maxPayload:
		return nil, fmt.Errorf("-max-payload %v: want %v to %v", o.maxPayload, byteSize(minPayload), byteSize(maxPayload))
	case o.maxSessions < 1:
		return nil, fmt.Errorf("-max-sessions %d: want at least 1", o.maxSessions)
	case o.slow != "fail" && o.slow != "block":
		return nil, fmt.Errorf("-slow %q: want fail or block", o.slow)
	case o.maxBlock <= 0:
		return nil, fmt.Errorf("-max-block %v: want a positive duration", o.maxBlock)
	case o.shutdownTimeout <= 0:
		return nil, fmt.Errorf("-shutdown-timeout %v: want a positive duration", o.shutdownTimeout)
	case o.logFormat != "auto" && o.logFormat != "console" && o.logFormat != "json":
		return nil, fmt.Errorf("-log-format %q: want console, json or auto", o.logFormat)
	}
	return o, nil
}

// run is the whole command; main only wires it to the process. sigs delivers SIGINT and SIGTERM.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, sigs <-chan os.Signal) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "ftsl-hub:", err)
		return exitUsage
	}
	if o.hashPassword {
		return hashPassword(stdin, stdout, stderr, o.hashIterations)
	}
	log, err := cmdlog.New(stderr, o.logLevel, o.logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "ftsl-hub:", err)
		return exitUsage
	}
	cfg, err := hubConfig(o, log)
	if err != nil {
		fmt.Fprintln(stderr, "ftsl-hub:", err)
		return exitUsage
	}
	hub, err := pubsub.NewHub(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "ftsl-hub:", err)
		return exitUsage
	}
	logEvents(hub, log)
	ln, err := oneway.Listen(o.listen, cfg.Session)
	if err != nil {
		log.Error().Err(err).Str("listen", o.listen).Msg("cannot listen")
		_ = hub.Close(context.Background()) // no client yet: nothing to wait for
		return exitFail
	}
	served := make(chan error, 1)
	go func() { served <- hub.Serve(context.Background(), ln) }()
	log.Info().Stringer("addr", ln.Addr()).Bool("tls", cfg.Session.Core.TLS != nil).
		Bool("mutual_tls", o.tlsCA != "").Msg("hub serving")
	fmt.Fprintf(stdout, "ftsl-hub listening on %s\n", ln.Addr())

	status := exitOK
	select {
	case sig := <-sigs:
		log.Info().Stringer("signal", sig).Stringer("timeout", o.shutdownTimeout).
			Msg("shutting down: every session closes once its messages are through; a second signal aborts")
	case err := <-served: // Serve ends before Close only if accepting failed
		log.Error().Err(err).Msg("serving failed; shutting down")
		status = exitFail
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- hub.Close(ctx) }()
	select {
	case err = <-closed:
	case sig := <-sigs:
		log.Warn().Stringer("signal", sig).Msg("second signal: aborting what is left")
		cancel()
		err = <-closed
	}
	if status == exitOK {
		<-served
	}
	if err != nil {
		log.Error().Err(err).Msg("shutdown cut short: sessions with messages still in flight were aborted")
		return exitFail
	}
	if status == exitOK {
		log.Info().Msg("hub closed")
	}
	return status
}

// hubConfig turns the flags into the hub's configuration, reading the TLS and auth files.
func hubConfig(o *options, log zerolog.Logger) (pubsub.HubConfig, error) {
	slow := pubsub.SlowFail
	if o.slow == "block" {
		slow = pubsub.SlowBlock
	}
	cfg := pubsub.HubConfig{
		MaxSubscriptions: o.maxSubs,
		MaxSubjectLength: o.maxSubject,
		SlowConsumers:    slow,
		MaxBlock:         o.maxBlock,
		Logger:           log,
	}
	sc := &cfg.Session.Core
	sc.MaxMessageSize = int(o.maxPayload)
	// Each buffer must hold a message of the largest size; twice that keeps one in flight
	// while the next is written.
	sc.SendBufferBytes = max(core.DefaultSendBufferBytes, 2*int(o.maxPayload))
	sc.ReceiveBufferBytes = max(core.DefaultReceiveBufferBytes, 2*int(o.maxPayload))
	sc.MaxSessions = o.maxSessions
	sc.Logger = log
	var err error
	if sc.TLS, err = tlsConfig(o.tlsCert, o.tlsKey, o.tlsCA); err != nil {
		return cfg, err
	}
	if o.auth == "" {
		log.Warn().Msg("no -auth file: every client may connect and publish and subscribe to anything")
		return cfg, nil
	}
	f, err := authfile.Load(o.auth, authfile.Options{MaxSubjectLength: o.maxSubject})
	if err != nil {
		return cfg, err
	}
	if f.UsesCertificates() && o.tlsCA == "" {
		return cfg, fmt.Errorf("-auth %s maps client certificates (certificate_cn), which needs -tls-client-ca", o.auth)
	}
	cfg.Authenticate = f.Authenticate
	log.Info().Str("file", o.auth).Int("users", f.Users()).Msg("auth file loaded")
	return cfg, nil
}

func tlsConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	if certFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert %s, -tls-key %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-client-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-tls-client-ca %s: no PEM certificate in it", caFile)
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	return cfg, nil
}

// logEvents logs the hub's events worth an operator's attention. Refusals and slow consumers
// can come in floods (a stranger retrying a wrong password, a stuck subscriber), so they are
// sampled: a burst, then nothing more for the rest of the second.
func logEvents(hub *pubsub.Hub, log zerolog.Logger) {
	if log.GetLevel() > zerolog.InfoLevel {
		return // nothing would be logged: spare the hub making events
	}
	sampled := log.Sample(&zerolog.BurstSampler{Burst: 20, Period: time.Second})
	hub.OnEvent(func(e events.Event) {
		var ev *zerolog.Event
		switch e.Kind {
		case events.PermissionDenied, events.SlowConsumer, events.SubscriberLost:
			ev = sampled.Info()
		default:
			ev = log.Debug()
		}
		ev.Str("event", e.Kind.String()).Uint64("session", e.Session)
		if e.Subject != "" {
			ev.Str("subject", e.Subject)
		}
		ev.AnErr("reason", e.Err).Msg("hub event")
	})
}

// hashPassword prints the password_hash of the first line of in.
func hashPassword(in io.Reader, stdout, stderr io.Writer, iterations int) int {
	line, err := readLine(in, 4096)
	if err != nil {
		fmt.Fprintln(stderr, "ftsl-hub: -hash-password:", err)
		return exitUsage
	}
	h, err := authfile.HashPassword(line, iterations)
	if err != nil {
		fmt.Fprintln(stderr, "ftsl-hub: -hash-password:", err)
		return exitUsage
	}
	fmt.Fprintln(stdout, h)
	return exitOK
}

// readLine reads up to the first newline (dropped, with a \r before it) or the end of r, at most
// limit bytes: a terminal gives the line at Enter, a pipe may give no newline.
func readLine(r io.Reader, limit int) (string, error) {
	s, err := bufio.NewReader(io.LimitReader(r, int64(limit)+1)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	s = strings.TrimSuffix(s, "\n")
	if len(s) > limit {
		return "", fmt.Errorf("the password is longer than %d bytes", limit)
	}
	return strings.TrimSuffix(s, "\r"), nil
}

// byteSize is a flag holding a number of bytes, written plain or with a binary suffix.
type byteSize int

var sizeSuffixes = []struct {
	suffix string
	mult   int
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

func (b byteSize) String() string {
	for _, s := range sizeSuffixes {
		if b != 0 && int(b)%s.mult == 0 {
			return strconv.Itoa(int(b)/s.mult) + s.suffix
		}
	}
	return strconv.Itoa(int(b))
}

func (b *byteSize) Set(v string) error {
	mult := 1
	for _, s := range sizeSuffixes {
		if n, ok := strings.CutSuffix(v, s.suffix); ok {
			v, mult = n, s.mult
			break
		}
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxPayload/mult {
		return fmt.Errorf("want a number of bytes up to %v, like 1048576 or 1MiB", byteSize(maxPayload))
	}
	*b = byteSize(n * mult)
	return nil
}
