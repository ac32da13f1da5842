// Command filetransfer copies files to a receiver over an FTSL session, and finishes the copy
// whatever the network does on the way.
//
//	filetransfer serve -listen 127.0.0.1:7000 -dir DIR
//	filetransfer send -to HOST:PORT FILE|DIR...
//
// serve receives files into DIR. Each file arrives in a partial file in DIR, is checked against
// the SHA-256 its sender announced, and is then renamed to its name (inside DIR, directories
// created as needed); serve prints "received NAME SIZE sha256=HEX" for each. It prints
// "listening on ADDR" once it listens, and stops on SIGINT or SIGTERM.
//
// send sends files, and directories with every regular file under them (a directory d arrives as
// DIR/d/...), several at once over one session. It shows a progress bar with rate and ETA on a
// terminal and a plain progress line every second or tenth of the way otherwise, prints
// "sent NAME SIZE sha256=HEX in SECONDS s (MB/s)" once the receiver has written a file and
// confirmed its SHA-256, and exits 0 only once it has for every file. The rate counts the bytes
// sent in this run. Exit status 1 means a transfer failed, 2 a mistake in the command (a file
// name that would not stay inside the receiver's directory among them: absolute, with a ".."
// element, empty, with NUL, too long); the last line on standard error says what.
//
// # What FTSL gives here
//
// A connection that breaks in the middle of a file costs nothing: the session resumes on a new
// connection, the sender resends what the receiver's session layer lacked, and the transfer goes
// on. No byte is lost or written twice, and the program does nothing for it: no reconnection
// code, no offsets to reconcile, no checkpoint per chunk. Over plain TCP the same program would
// have to redial, ask where the receiver got to, and start again from there, on every cut.
//
// If the sender itself dies (killed, rebooted), its session dies with it. Run again with the
// same files, it asks the receiver what it already has and sends only the rest: the receiver
// keeps each partial file under a name derived from the file's name, size and fingerprint (the
// SHA-256 of its first MiB), so a different file of the same name starts afresh rather than
// resuming onto the wrong bytes. The receiver keeps partial files until they are completed. If
// the receiver dies, the sender gives up once it has failed to resume the session for
// -resume-window (60 s by default) and says so; run again once the receiver is back, it
// resumes from the partial file the same way.
//
// # The protocol
//
// Messages on one oneway session; the first byte says which, integers are big-endian. The sender
// numbers its transfers (xfer, u32), one per file; several may be under way at once.
//
//	OFFER  01 xfer u32, size u64, fingerprint [32], name length u16, name  at AckProcessed
//	CHUNK  02 xfer u32, offset u64, data                                  at AckNone; the last at AckProcessed
//	DONE   03 xfer u32, sha256 [32]                                       at AckProcessed
//	CANCEL 04 xfer u32: the sender gives up; the partial file stays       at AckNone
//
// and from the receiver:
//
//	OFFSET 81 xfer u32, offset u64: send from here                        at AckNone
//	ERROR  82 xfer u32, reason length u16, reason: stop, the transfer failed
//
// The receiver answers an OFFER with OFFSET, the length of the partial file it has for that
// file (0 if none). The sender then sends CHUNKs from there, in order, and DONE with the SHA-256
// of the whole file. The receiver writes each CHUNK where its partial file ends (an offset that
// is not there is a protocol error), hashes what it writes, and on DONE compares the hashes,
// renames the file into place, and confirms DONE: the sender's DONE ticket ending processed is
// the VERIFIED answer. A failure (a bad name, a write error, a hash that differs) refuses the
// message concerned, so a ticket at AckProcessed fails with the receiver's reason, and sends
// ERROR, since bulk chunks ask for no acknowledgement at all; a hash that differs also deletes
// the partial file. A receiver that meets an OFFER for a partial file another session is
// writing (the same sender run again, while its dead session still waits to be resumed) hands
// the file to the new session, and the old one's transfer fails.
//
// Bulk chunks at AckNone ask for nothing beyond the session's own cumulative acknowledgement; on
// the sender's side each has a ticket, which ends (and gives the chunk's buffer back) once the
// receiver's session layer has the chunk. The sender reads
// each chunk into a buffer the session sends from by reference (SendShared), so it makes no copy
// in user space; the receiver hashes and writes each chunk straight from the session's receive
// buffer, so the one user-space copy on its side is the session's own, from the socket's read
// buffer into that receive buffer.
//
// # Limits
//
// A sender may have 64 files under way at once (-parallel), and a receiver 1,024 files arriving
// at once from all its senders; beyond that, offers are refused as busy. A chunk is at most
// 1 MiB less 13 bytes, the receiver's largest message. Without -fsync, a file the receiver
// reported may still be in the operating system's cache when the machine loses power; a partial
// file damaged that way is caught by the final hash, deleted, and sent again in full.
package main

import (
	"context"
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

	"github.com/ftsl-go/ftsl/naming"
	"github.com/ftsl-go/ftsl/oneway"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  filetransfer serve -listen 127.0.0.1:7000 -dir DIR [-naming URL -name NAME] [flags]
  filetransfer send -to HOST:PORT [flags] FILE|DIR...
  filetransfer send -naming URL -name NAME [flags] FILE|DIR...
run "filetransfer serve -h" or "filetransfer send -h" for the flags`

// run runs the command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		err = runServe(ctx, args[1:], stdout, stderr)
	case "send":
		err = runSend(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "filetransfer: unknown command %q\n%s\n", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "filetransfer:", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
		return 2
	}
	fmt.Fprintln(stderr, "filetransfer:", err)
	return 1
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:7000", "`address` to listen on")
	dir := fs.String("dir", "", "`directory` to receive files into (created if missing)")
	fsync := fs.Bool("fsync", false, "flush each file to disk before renaming it into place")
	window := fs.Duration("resume-window", 0, "how long a sender's broken session is kept for it to resume (default 60s)")
	namingURL := fs.String("naming", "", "the naming service's base `URL`: bind -name to the address served")
	name := fs.String("name", "", "the `name` to bind at the naming service (with -naming)")
	token := fs.String("token", os.Getenv("FTSL_NAMING_TOKEN"), "the naming service's write `token` (default $FTSL_NAMING_TOKEN)")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	switch {
	case (*namingURL == "") != (*name == ""):
		return fmt.Errorf("%w: -naming and -name go together", errUsage)
	case *dir == "":
		return fmt.Errorf("%w: serve needs -dir", errUsage)
	case fs.NArg() > 0:
		return fmt.Errorf("%w: serve takes no arguments, got %q", errUsage, fs.Args())
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(*dir)
	if err != nil {
		return err
	}
	defer root.Close()
	cfg := receiverSessionConfig(oneway.Config{})
	cfg.Core.ResumeWindow = *window
	ln, err := oneway.Listen(*listen, cfg)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	r := newReceiver(root, *fsync, stdout, stderr)
	if *namingURL != "" {
		nc := &naming.Client{BaseURL: *namingURL, Token: *token}
		// Rebind, not Bind: a receiver restarted after a crash takes its name back.
		if _, err := nc.Rebind(ctx, *name, ln.Addr().String()); err != nil {
			_ = ln.Close()
			return fmt.Errorf("naming: %w", err)
		}
		fmt.Fprintf(stdout, "bound %s to %s\n", *name, ln.Addr())
	}
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	return r.serve(ctx, ln)
}

// newReceiver returns a receiver writing into root, its report lines to out and its complaints
// to log.
func newReceiver(root *os.Root, fsync bool, out, log io.Writer) *receiver {
	return &receiver{
		root:   root,
		fsync:  fsync,
		out:    &lineWriter{w: out},
		log:    &lineWriter{w: log},
		active: make(map[string]*transfer),
	}
}

// receiverSessionConfig is the session configuration of a receiver: a window several chunks
// deep, so the sender never waits for the receiver's writes to catch up with a chunk or two.
func receiverSessionConfig(c oneway.Config) oneway.Config {
	if c.Core.ReceiveBufferBytes == 0 {
		c.Core.ReceiveBufferBytes = 8 << 20
	}
	return c
}

func runSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "", "the receiver's `host:port`")
	as := fs.String("as", "", "the `name` the receiver gives the file (one file only)")
	parallel := fs.Int("parallel", defaultParallel, "files under way at once")
	chunk := fs.String("chunk", "512KiB", "data per message (`size`)")
	rate := fs.String("rate", "0", "cap on bytes sent per second, e.g. 20MB or 10MiB (`size`); 0: none")
	progress := fs.String("progress", "auto", "progress display: auto (a bar on a terminal, lines otherwise), bar, plain or none")
	stats := fs.Bool("stats", false, "print a line of counters at the end")
	timeout := fs.Duration("connect-timeout", 10*time.Second, "how long to keep trying to reach the receiver at first")
	window := fs.Duration("resume-window", 0, "how long to keep trying to resume a broken session (default 60s)")
	namingURL := fs.String("naming", "", "find the receiver through the naming service at `URL` (with -name, instead of -to)")
	name := fs.String("name", "", "the receiver's `name` at the naming service")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	cfg := sendConfig{To: *to, As: *as, Parallel: *parallel, Paths: fs.Args(), Out: stdout, Stats: *stats}
	switch {
	case (*namingURL == "") != (*name == ""):
		return fmt.Errorf("%w: -naming and -name go together", errUsage)
	case *namingURL != "" && *to != "":
		return fmt.Errorf("%w: -to, or -naming and -name, not both", errUsage)
	case *namingURL != "":
		// Every connection attempt asks the naming service where the receiver is now, and a
		// rebind wakes a sender waiting to reconnect.
		res, err := naming.NewResolver(&naming.Client{BaseURL: *namingURL}, naming.ResolverConfig{})
		if err != nil {
			return fmt.Errorf("%w: -naming: %w", errUsage, err)
		}
		defer res.Close()
		cfg.Resolver, cfg.To = res, *name
	}
	var err error
	if cfg.Progress, err = parseProgressMode(*progress); err != nil {
		return err
	}
	cfg.Progress = cfg.Progress.resolve(os.Stdout)
	n, err := parseSize(*chunk)
	if err != nil {
		return fmt.Errorf("%w: -chunk: %w", errUsage, err)
	}
	cfg.Chunk = int(min(n, 1<<30))
	if cfg.Rate, err = parseSize(*rate); err != nil {
		return fmt.Errorf("%w: -rate: %w", errUsage, err)
	}
	switch {
	case cfg.To == "":
		return fmt.Errorf("%w: send needs -to HOST:PORT (or -naming URL -name NAME)", errUsage)
	case len(cfg.Paths) == 0:
		return fmt.Errorf("%w: send needs at least one file or directory", errUsage)
	case *timeout <= 0:
		return fmt.Errorf("%w: -connect-timeout must be positive", errUsage)
	}
	cfg.Session.Core.ResumeWindow = *window
	cfg.ConnectTimeout = *timeout
	err = send(ctx, cfg)
	if err != nil && ctx.Err() != nil {
		return errors.New("interrupted; the receiver keeps what it got: run again to resume")
	}
	return err
}

func usageErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return fmt.Errorf("%w: %w", errUsage, err)
}

// parseSize reads a byte count with an optional unit: k, M, G (or kB, MB, GB) are powers of
// 1000, KiB, MiB, GiB powers of 1024.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mul    int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
		{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"B", 1},
	}
	mul := int64(1)
	num := strings.TrimSpace(s)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mul = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mul
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || v*float64(mul) > 1<<62 {
		return 0, fmt.Errorf("bad size %q (want a number and an optional unit: 512KiB, 20MB)", s)
	}
	return int64(v * float64(mul)), nil
}
