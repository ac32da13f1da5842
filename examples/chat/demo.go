package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/faultnet"
)

// The demo: a hub and three users in one process, each user's connection through a proxy of
// its own that cuts it on command (internal/faultnet). They talk, the connections are cut
// between lines and while lines are in flight, one user's network goes down for a while, then
// all three send as fast as they can while the connections are cut again and again. Each user
// records what it got by sender and number; the summary counts what was lost, duplicated or
// out of order, and the exit status is 0 only if that is nothing.

// Demo settings.
const (
	demoRoom      = "demo"
	demoReadTime  = 100 * time.Millisecond  // how long a user takes to read a line of the conversation
	demoOutage    = 1500 * time.Millisecond // how long carol's network is down
	demoBurst     = 100                     // lines each user sends in the burst
	demoCutEvery  = 20                      // in the burst, the connections are cut every this many of alice's lines
	demoStepLimit = 15 * time.Second        // the longest wait for anything, before the demo gives up
	demoTextWidth = 40                      // the conversation's lines are padded to it, so the marks line up
)

// demoScript is the conversation. A line with cut set has every connection cut while it is in
// flight; one with outage is said while that user's network is down; a cut alone cuts every
// connection between two lines.
var demoScript = []demoStep{
	{who: "alice", text: "morning! is the release build green?"},
	{who: "bob", text: "green since 9:14, all 1,204 tests"},
	{cut: true},
	{who: "carol", text: "then I'll tag v1.4.0"},
	{who: "alice", text: "wait: did the migration tests run too?", cut: true},
	{who: "bob", text: "they did, on both databases"},
	{cut: true},
	{who: "carol", text: "tagging..."},
	{who: "alice", text: "carol, ping me when it's out", outage: "carol"},
	{who: "carol", text: "back, my wifi dropped. v1.4.0 is out"},
	{who: "bob", text: "nice, thanks both", cut: true},
}

type demoStep struct {
	who, text string
	cut       bool   // with a speaker: cut every connection while the line is in flight; alone: between lines
	outage    string // the user whose network is down (for demoOutage) while the line is said
}

// demoUser is one of the three users.
type demoUser struct {
	name  string
	m     *member
	px    *faultnet.Proxy
	color string

	processed, failed atomic.Int64 // outcomes of its lines

	mu  sync.Mutex
	got map[string][]uint64 // sender instance -> the numbers of the lines got from it, in order
}

// count is a user's OnMark: it counts the outcomes of its lines.
func (u *demoUser) count(l *sentLine) {
	switch k, _, _ := l.State(); k {
	case markProcessed:
		u.processed.Add(1)
	case markFailed:
		u.failed.Add(1)
	}
}

type demoRun struct {
	out      io.Writer
	progress bool // update lines in place: stdout is a terminal wide enough
	color    bool
	pace     time.Duration
	users    []*demoUser
	byName   map[string]*demoUser
	reading  atomic.Int64 // the time a user takes to read a line (0 in the burst)
	kick     chan struct{}
	cuts     int
	started  time.Time
}

func demo(o *options, stdout, stderr io.Writer) int {
	d := &demoRun{out: stdout, pace: o.pace, byName: map[string]*demoUser{}, kick: make(chan struct{}, 1), started: time.Now()}
	if f, ok := stdout.(*os.File); ok && isTerminal(f) {
		if w, _, err := termSize(f); err == nil && w >= 80 {
			d.progress = true
		}
		d.color = os.Getenv("NO_COLOR") == ""
	}
	if err := d.run(); err != nil {
		fmt.Fprintln(stderr, "chat: demo:", err)
		return exitFail
	}
	return exitOK
}

func (d *demoRun) run() error {
	hub, err := startHub("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.close(ctx)
	}()
	for i, name := range []string{"alice", "bob", "carol"} {
		u := &demoUser{name: name, color: []string{"35", "32", "33"}[i], got: map[string][]uint64{}}
		if u.px, err = faultnet.NewProxy(hub.addr); err != nil {
			return err
		}
		defer u.px.Close()
		ctx, cancel := context.WithTimeout(context.Background(), demoStepLimit)
		u.m, err = join(ctx, memberConfig{
			Hub: u.px.Addr(), Name: name, Room: demoRoom,
			// Reconnect quickly after the outage, to keep the demo short (the default waits
			// up to 2 s between attempts).
			Session:     core.Config{BackoffMax: 100 * time.Millisecond},
			OnLine:      u.record(d),
			OnReconnect: func(int64) { d.wake() },
			OnMark:      u.count,
		})
		cancel()
		if err != nil {
			return err
		}
		defer u.m.Abort() // (after Leave, a no-op)
		d.users = append(d.users, u)
		d.byName[name] = u
	}
	ctx, cancel := context.WithTimeout(context.Background(), demoStepLimit)
	defer cancel()
	for _, u := range d.users {
		if err := u.m.WaitOthers(ctx, len(d.users)-1); err != nil {
			return err
		}
	}
	d.intro(hub.addr)

	d.reading.Store(int64(demoReadTime))
	for _, s := range demoScript {
		switch {
		case s.outage != "":
			err = d.outage(d.byName[s.outage], d.byName[s.who], s.text)
		case s.who == "":
			err = d.cutBetween()
		default:
			err = d.say(d.byName[s.who], s.text, s.cut)
			time.Sleep(d.pace) // (pacing for the reader, not synchronisation: say waited for the outcome)
		}
		if err != nil {
			return err
		}
	}
	d.reading.Store(0)
	if err := d.burst(); err != nil {
		return err
	}
	for _, u := range d.users {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := u.m.Leave(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s leaving: %w", u.name, err)
		}
	}
	return d.summary()
}

// record is a user's OnLine: it notes the line and takes a moment to read it.
func (u *demoUser) record(d *demoRun) func(chatLine) {
	return func(l chatLine) {
		u.mu.Lock()
		u.got[l.Instance] = append(u.got[l.Instance], l.Seq)
		u.mu.Unlock()
		if t := time.Duration(d.reading.Load()); t > 0 {
			time.Sleep(t) // reading: what makes "processed" come after "delivered"
		}
	}
}

func (d *demoRun) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func (d *demoRun) intro(addr string) {
	d.printf("%s: %s, %s and %s in room %s, on a hub at %s.\n",
		d.paint("1", "FTSL chat demo"), d.name(d.users[0]), d.name(d.users[1]), d.name(d.users[2]), demoRoom, addr)
	d.printf("Each user's connection goes through a proxy that cuts it (%s) on command.\n", d.paint("31", "✂"))
	d.printf("The marks of a line, as they come:\n")
	d.printf("  %s             sent: in the sender's session, which gets it to the hub\n", d.paint("2", "✓"))
	d.printf("  %s        delivered: both other users have it, 3 ms after it was sent\n", d.paint("2", "✓✓ 3ms"))
	d.printf("  %s  processed: 2 of the 2 other users read it (reading takes %v)\n\n",
		d.paint("94", "✓✓ 2/2 105ms"), demoReadTime)
}

// say has u say text and shows its marks as they come; with cut, every connection is cut while
// the line is in flight.
func (d *demoRun) say(u *demoUser, text string, cut bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), demoStepLimit)
	defer cancel()
	l, err := u.m.Say(ctx, text)
	if err != nil {
		return fmt.Errorf("%s: %w", u.name, err)
	}
	start := time.Now()
	head := fmt.Sprintf("  %s  %s", d.paint("1;"+u.color, padTo(u.name, 5)), padTo(text, demoTextWidth))
	marks := []string{d.paint("2", "✓")}
	show := func() {
		if d.progress {
			d.printf("\r\x1b[2K%s  %s", head, strings.Join(marks, " "))
		}
	}
	show()
	if cut {
		d.cutAll()
		marks = append(marks, d.paint("31", "✂"))
		show()
	}
	select {
	case <-l.tk.Delivered():
	case <-ctx.Done():
		return fmt.Errorf("%s's line %q: not delivered within %v", u.name, text, demoStepLimit)
	}
	select {
	case <-l.tk.Done():
	default:
		marks = append(marks, d.paint("2", "✓✓ "+ms(time.Since(start))))
		show()
	}
	out, err := l.tk.Wait(ctx)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s's line %q: no outcome within %v", u.name, text, demoStepLimit)
	case err != nil:
		marks = append(marks, d.paint("1;31", "✗ "+reasonOf(err)))
	default:
		others, processed := othersOf(out, nil)
		marks = append(marks, d.paint("94", fmt.Sprintf("✓✓ %d/%d %s", processed, others, ms(time.Since(start)))))
	}
	if d.progress {
		show()
		d.printf("\n")
	} else {
		d.printf("%s  %s\n", head, strings.Join(marks, " "))
	}
	return nil
}

// cutAll cuts every user's connection; it returns how many there were.
func (d *demoRun) cutAll() int {
	n := 0
	for _, u := range d.users {
		n += u.px.KillAll()
	}
	d.cuts++
	return n
}

// cutBetween cuts every connection between two lines and waits until all are back.
func (d *demoRun) cutBetween() error {
	before := d.reconnects()
	start := time.Now()
	n := d.cutAll()
	if err := d.waitReconnected(before, d.users); err != nil {
		return err
	}
	d.printf("  %s all %d connections cut; all users reconnected, sessions resumed, in %s\n",
		d.paint("31", "✂"), n, ms(time.Since(start)))
	return nil
}

func (d *demoRun) reconnects() map[*demoUser]int64 {
	r := make(map[*demoUser]int64, len(d.users))
	for _, u := range d.users {
		r[u] = u.m.Reconnects()
	}
	return r
}

// waitReconnected waits until each of users connected again since before.
func (d *demoRun) waitReconnected(before map[*demoUser]int64, users []*demoUser) error {
	limit := time.After(demoStepLimit)
	for {
		back := true
		for _, u := range users {
			back = back && u.m.Reconnects() > before[u]
		}
		if back {
			return nil
		}
		select {
		case <-d.kick:
		case <-limit:
			return fmt.Errorf("the users did not reconnect within %v", demoStepLimit)
		}
	}
}

// outage takes u's network down for demoOutage: its connection is cut and its proxy refuses it
// meanwhile. who says text while it is down: its delivered mark waits for u.
func (d *demoRun) outage(u, who *demoUser, text string) error {
	before := d.reconnects()
	u.px.Refuse(true)
	u.px.KillAll()
	d.cuts++
	down := time.Now()
	d.printf("  %s %s's network goes down for %v: connection cut, reconnections refused\n",
		d.paint("31", "✂"), d.name(u), demoOutage)
	back := time.AfterFunc(demoOutage, func() { u.px.Refuse(false) })
	defer back.Stop()
	if err := d.say(who, text, false); err != nil {
		return err
	}
	if err := d.waitReconnected(before, []*demoUser{u}); err != nil {
		return err
	}
	d.printf("  %s %s is back after %s: her session resumed; she got %s's line, once\n",
		d.paint("32", "↻"), d.name(u), ms(time.Since(down)), who.name)
	return nil
}

// burst has every user send demoBurst lines at once while the connections are cut every
// demoCutEvery of alice's lines.
func (d *demoRun) burst() error {
	d.printf("\n  Burst: each user sends %d lines at full speed; cut every %d lines:\n",
		demoBurst, demoCutEvery)
	start := time.Now()
	cuts0 := d.cuts
	var processed0, failed0 int64
	for _, u := range d.users {
		processed0 += u.processed.Load()
		failed0 += u.failed.Load()
	}
	var cutMu sync.Mutex
	errs := make(chan error, len(d.users))
	for _, u := range d.users {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), demoStepLimit)
			defer cancel()
			for i := 1; i <= demoBurst; i++ {
				if _, err := u.m.Say(ctx, fmt.Sprintf("burst line %d", i)); err != nil {
					errs <- fmt.Errorf("%s: %w", u.name, err)
					return
				}
				if u == d.users[0] && i%demoCutEvery == 0 {
					cutMu.Lock()
					d.cutAll()
					cutMu.Unlock()
				}
			}
			if left := u.m.Flush(ctx); len(left) > 0 {
				errs <- fmt.Errorf("%s: %d lines without an outcome after %v", u.name, len(left), demoStepLimit)
				return
			}
			errs <- nil
		}()
	}
	for range d.users {
		if err := <-errs; err != nil {
			return err
		}
	}
	took := time.Since(start)
	cutMu.Lock()
	cuts := d.cuts - cuts0
	cutMu.Unlock()
	var processed, failed int64
	for _, u := range d.users {
		processed += u.processed.Load()
		failed += u.failed.Load()
	}
	processed, failed = processed-processed0, failed-failed0
	if failed > 0 {
		d.printf("  %s %d lines sent, %d processed by both other users, %d failed, %d cuts, in %s\n\n",
			d.paint("1;31", "✗"), demoBurst*len(d.users), processed, failed, cuts, ms(took))
		return nil // the summary counts what was lost
	}
	d.printf("  %s %d lines sent, %d processed by both other users, %d cuts, in %s\n\n",
		d.paint("94", "✓✓"), demoBurst*len(d.users), processed, cuts, ms(took))
	return nil
}

// summary counts, for every user, what it got from each other user against what that one sent.
func (d *demoRun) summary() error {
	var sent, received, lost, dup, disorder int
	var reconnects, killed, failed int64
	resumed := "(every one resumed its session)"
	for _, u := range d.users {
		failed += u.failed.Load()
		if u.m.Err() != nil {
			resumed = fmt.Sprintf("(%s's session ended: %v)", u.name, u.m.Err())
		}
		sent += int(u.m.Said())
		reconnects += u.m.Reconnects()
		killed += u.px.Stats().Killed
		u.mu.Lock()
		for _, from := range d.users {
			if from == u {
				continue
			}
			seqs := u.got[from.m.instance]
			received += len(seqs)
			seen := make(map[uint64]bool, len(seqs))
			for i, s := range seqs {
				if seen[s] {
					dup++
				}
				seen[s] = true
				if i > 0 && s <= seqs[i-1] {
					disorder++
				}
			}
			for s := uint64(1); s <= from.m.Said(); s++ {
				if !seen[s] {
					lost++
				}
			}
		}
		u.mu.Unlock()
	}
	row := func(label string, n any, note string) {
		if note != "" {
			note = "  " + d.paint("2", note)
		}
		d.printf("  %-14s %6v%s\n", label, n, note)
	}
	d.printf("%s (each user counted what it got, by sender and line number)\n", d.paint("1", "Summary"))
	row("sent", sent, fmt.Sprintf("(%d per user)", sent/len(d.users)))
	row("received", received, "(every line by both other users)")
	row("lost", lost, "")
	row("duplicated", dup, "")
	row("out of order", disorder, "")
	row("cuts", d.cuts, fmt.Sprintf("(%d connections reset)", killed))
	row("reconnects", reconnects, resumed)
	row("failed", failed, "(lines some user did not process)")
	row("time", ms(time.Since(d.started)), "")
	if lost != 0 || dup != 0 || disorder != 0 || failed != 0 || received != sent*(len(d.users)-1) {
		d.printf("%s\n", d.paint("1;31", "FAILED: lines were lost, duplicated or out of order"))
		return errors.New("lines were lost, duplicated or out of order")
	}
	d.printf("%s\n", d.paint("1;32", fmt.Sprintf("OK: nothing lost, nothing duplicated, everything in order, across %d cuts.", d.cuts)))
	return nil
}

func (d *demoRun) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *demoRun) paint(sgr, s string) string {
	if !d.color {
		return s
	}
	return "\x1b[" + sgr + "m" + s + "\x1b[0m"
}

func (d *demoRun) name(u *demoUser) string { return d.paint("1;"+u.color, u.name) }

// padTo pads s with spaces to n cells.
func padTo(s string, n int) string {
	if c := cells(s); c < n {
		return s + strings.Repeat(" ", n-c)
	}
	return s
}

// ms prints a duration for people: 0.4ms, 3ms, 105ms, 1.6s.
func ms(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}
