package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftsl-go/ftsl/pubsub"
)

// ui is what shows the conversation: plain lines for scripts, or the terminal's screen. Its
// methods are called from several goroutines; each must be safe for that.
type ui interface {
	line(l chatLine)                           // another member said l
	presence(kind, name string, sameName bool) // another member joined, was here, or left
	marked(l *sentLine)                        // a line of ours got a new mark
	reconnected(n int64)                       // a connection after the first
	notice(format string, args ...any)         // anything else worth saying
	commands() bool                            // whether "/..." lines are commands
	input() <-chan inputLine                   // what the user typed, closed at the end
	close()                                    // give the terminal back
}

// inputLine is one line of input, or why a line was refused.
type inputLine struct {
	text string
	err  error
}

// chat joins a room (on a hub of its own unless -hub says) and converses until the input ends.
func chat(o *options, stdin io.Reader, stdout, stderr io.Writer, sigs <-chan os.Signal) int {
	var u ui
	if t, err := newTTY(stdin, stdout, o.room, o.name); err == nil {
		u = t
	} else {
		u = newPlain(stdin, stdout, stderr, o.room)
	}
	defer u.close()

	addr := o.hub
	var hub *runningHub
	if addr == "" {
		var err error
		if hub, err = startHub(o.listen); err != nil {
			u.notice("cannot run a hub: %v", err)
			return exitFail
		}
		addr = hub.addr
		u.notice("a hub runs here; join with: go run ./examples/chat -hub %s -name NAME -room %s", addr, o.room)
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
			defer cancel()
			if err := hub.close(ctx); err != nil {
				u.notice("closing the hub: %v", err)
			}
		}()
	}

	c := &conversation{o: o, u: u, last: make(map[string]uint64)}
	// A hub that is not there is tried again for a while (it may be starting), not forever.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	m, err := join(ctx, memberConfig{
		Hub: addr, Name: o.name, Room: o.room,
		OnLine:      c.line,
		OnPresence:  c.presence,
		OnReconnect: u.reconnected,
		OnMark:      c.marked,
	})
	cancel()
	if err != nil {
		u.notice("%v", err)
		return exitFail
	}
	c.m = m
	if hub != nil {
		u.notice("joined room %s as %s; others' sessions end when you leave, with the hub", o.room, o.name)
	} else {
		u.notice("joined room %s as %s at %s", o.room, o.name, addr)
	}
	return c.run(sigs)
}

// conversation is one member's run: it sends what is typed, checks what comes, and tells at the
// end whether everything went through.
type conversation struct {
	o *options
	u ui
	m *member

	failed   atomic.Int64 // lines that failed, or could not be sent
	sent     atomic.Int64
	mu       sync.Mutex
	last     map[string]uint64 // instance -> the last seq got from it
	disorder int               // lines that came twice or out of order
}

// line checks that each sender's lines come once and in order (pubsub promises it; the demo and
// scripts count on it) before showing it.
func (c *conversation) line(l chatLine) {
	c.mu.Lock()
	prev := c.last[l.Instance]
	if l.Seq <= prev {
		c.disorder++
	} else {
		c.last[l.Instance] = l.Seq
	}
	c.mu.Unlock()
	if l.Seq <= prev {
		c.u.notice("line %d from %s came after line %d: duplicated or out of order", l.Seq, printable(l.From), prev)
	}
	c.u.line(l)
}

// presence forgets what a member that left said last: its lines are over (it waited for their
// outcomes before leaving), and the map must not grow with every member that ever came.
func (c *conversation) presence(kind, name, instance string, sameName bool) {
	if kind == presenceLeave {
		c.mu.Lock()
		delete(c.last, instance)
		c.mu.Unlock()
	}
	c.u.presence(kind, name, sameName)
}

func (c *conversation) marked(l *sentLine) {
	if k, _, _ := l.State(); k == markFailed {
		c.failed.Add(1)
	}
	c.u.marked(l)
}

func (c *conversation) run(sigs <-chan os.Signal) int {
	// The first signal ends the input, as Ctrl-D does; the second gives up waiting for outcomes.
	stopping, stop := context.WithCancel(context.Background())
	aborting, abort := context.WithCancel(context.Background())
	defer stop()
	defer abort()
	go func() {
		for _, cancel := range []context.CancelFunc{stop, abort} {
			select {
			case <-sigs:
				cancel()
			case <-aborting.Done():
				return
			}
		}
	}()

	if n := c.o.waitMembers; n > 0 {
		c.u.notice("waiting for %d other member(s) in room %s", n, c.o.room)
		ctx, cancel := context.WithTimeout(stopping, c.o.waitTimeout)
		err := c.m.WaitOthers(ctx, n)
		cancel()
		if err != nil {
			c.u.notice("%v", err)
			c.leave(aborting)
			return exitFail
		}
	}

	in := c.u.input()
loop:
	for {
		select {
		case l, ok := <-in:
			if !ok {
				break loop
			}
			if l.err != nil {
				c.u.notice("%v", l.err)
				c.failed.Add(1)
				continue
			}
			text := l.text
			if c.u.commands() && strings.HasPrefix(text, "/") && !strings.HasPrefix(text, "//") {
				if c.command(text) {
					break loop
				}
				continue
			}
			if c.u.commands() {
				text = strings.TrimPrefix(text, "/")
			}
			if strings.TrimSpace(text) == "" {
				continue
			}
			if _, err := c.m.Say(stopping, text); err != nil {
				if stopping.Err() != nil {
					break loop
				}
				c.u.notice("not sent: %v", err)
				c.failed.Add(1)
				if errors.Is(err, pubsub.ErrClosed) || c.m.Err() != nil {
					break loop
				}
				continue
			}
			c.sent.Add(1)
		case <-stopping.Done():
			break loop
		case <-c.m.Done():
			break loop
		}
	}
	return c.finish(aborting)
}

// command runs a /command; it reports whether it ends the conversation.
func (c *conversation) command(text string) bool {
	switch cmd, _, _ := strings.Cut(text, " "); cmd {
	case "/quit", "/exit":
		return true
	case "/who":
		names, _ := c.m.Others()
		for i, n := range names {
			names[i] = printable(n)
		}
		slices.Sort(names)
		if len(names) == 0 {
			c.u.notice("no one else is in room %s", c.o.room)
		} else {
			c.u.notice("in room %s with you: %s", c.o.room, strings.Join(names, ", "))
		}
	case "/help":
		c.u.notice("type a line and Enter to send it; /who lists the room, /quit leaves; //text sends /text")
	default:
		c.u.notice("unknown command %s (/help)", cmd)
	}
	return false
}

// finish waits for the outcomes of the lines sent, leaves, and returns the exit status.
func (c *conversation) finish(aborting context.Context) int {
	if err := c.m.Err(); err != nil {
		c.u.notice("the session with the hub ended: %v", err)
	}
	ctx, cancel := context.WithTimeout(aborting, c.o.timeout)
	waiting := c.m.Flush(ctx)
	cancel()
	for _, l := range waiting {
		c.u.notice("line %d %q: no outcome within %v", l.Seq, clip(l.Text, 40), c.o.timeout)
	}
	c.leave(aborting)
	c.mu.Lock()
	disorder := c.disorder
	c.mu.Unlock()
	failed := c.failed.Load() + int64(len(waiting))
	if failed > 0 {
		c.u.notice("%d of %d line(s) did not reach every member", failed, c.sent.Load()+c.failed.Load())
	}
	if disorder > 0 {
		c.u.notice("%d line(s) from others came twice or out of order", disorder)
	}
	if failed > 0 || disorder > 0 || c.m.Err() != nil {
		return exitFail
	}
	return exitOK
}

func (c *conversation) leave(aborting context.Context) {
	ctx, cancel := context.WithTimeout(aborting, 5*time.Second)
	defer cancel()
	if err := c.m.Leave(ctx); err != nil && c.m.Err() == nil {
		c.u.notice("leaving: %v", err)
	}
}

// clip shortens s to n runes for a notice.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// plain is the ui for scripts: others' lines on standard output as "[ROOM] NAME: TEXT", the
// rest on standard error.
type plain struct {
	room   string
	mu     sync.Mutex // one line at a time on each stream
	stdout io.Writer
	stderr io.Writer
	in     chan inputLine
}

func newPlain(stdin io.Reader, stdout, stderr io.Writer, room string) *plain {
	p := &plain{room: room, stdout: stdout, stderr: stderr, in: make(chan inputLine)}
	go readLines(stdin, p.in)
	return p
}

func (p *plain) line(l chatLine) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.stdout, "[%s] %s: %s\n", p.room, printable(l.From), printable(l.Text))
}

func (p *plain) presence(kind, name string, sameName bool) {
	switch kind {
	case presenceJoin:
		p.notice("%s joined", printable(name))
	case presenceHere:
		p.notice("%s is here", printable(name))
	case presenceLeave:
		p.notice("%s left", printable(name))
	}
	if sameName && kind != presenceLeave {
		p.notice("two members are called %s", printable(name))
	}
}

func (p *plain) marked(l *sentLine) {
	if k, _, _ := l.State(); k == markFailed {
		p.notice("line %d %q failed: %s", l.Seq, clip(l.Text, 40), l.Reason())
	}
}

func (p *plain) reconnected(n int64) {
	p.notice("reconnected to the hub (connection %d); the session goes on", n)
}

func (p *plain) notice(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.stderr, "chat: "+format+"\n", args...)
}

func (p *plain) commands() bool          { return false }
func (p *plain) input() <-chan inputLine { return p.in }
func (p *plain) close()                  {}

// readLines sends the lines of r to out, without their line ends, and closes out at the end of
// r. A line longer than maxText is refused whole (an error in its place).
func readLines(r io.Reader, out chan<- inputLine) {
	defer close(out)
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		var line []byte
		long := false
		for {
			chunk, err := br.ReadSlice('\n')
			if !long {
				if len(line)+len(chunk) > maxText+2 { // (+2: the line end)
					long, line = true, nil
				} else {
					line = append(line, chunk...)
				}
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil && len(line) == 0 && !long {
				if err != io.EOF {
					out <- inputLine{err: fmt.Errorf("reading input: %w", err)}
				}
				return
			}
			break
		}
		if long {
			out <- inputLine{err: fmt.Errorf("input line %d is longer than %d bytes: not sent", n, maxText)}
			continue
		}
		text := strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r")
		if len(text) > maxText {
			out <- inputLine{err: fmt.Errorf("input line %d is longer than %d bytes: not sent", n, maxText)}
			continue
		}
		out <- inputLine{text: text}
	}
}
