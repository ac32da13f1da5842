//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/faultnet"
	"github.com/ftsl-go/ftsl/internal/testkit"
	"github.com/ftsl-go/ftsl/pubsub"
)

// TestCommand builds chat and runs it as a user would: the demo, scripts talking through a hub
// while their connections are cut, bad flags, and a hub stopped by signals.
func TestCommand(t *testing.T) {
	bin := testkit.Build(t, ".")
	t.Run("Demo", func(t *testing.T) { testDemo(t, bin) })
	t.Run("ScriptsThroughCuts", func(t *testing.T) { testScriptsThroughCuts(t, bin) })
	t.Run("EmbeddedHub", func(t *testing.T) { testEmbeddedHub(t, bin) })
	t.Run("FailedLine", func(t *testing.T) { testFailedLine(t, bin) })
	t.Run("WaitMembersTimeout", func(t *testing.T) { testWaitMembersTimeout(t, bin) })
	t.Run("BadFlags", func(t *testing.T) { testBadFlags(t, bin) })
	t.Run("ServeSignals", func(t *testing.T) { testServeSignals(t, bin) })
}

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

// proc is a running chat process, named for the participant it plays.
type proc struct {
	*testkit.Proc
	name string
}

// start runs bin with args; the process is killed when the test ends, if it still runs.
func start(t *testing.T, bin, name string, args ...string) *proc {
	t.Helper()
	return &proc{testkit.Start(t, bin, args...), name}
}

func (p *proc) say(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.Stdin(), line+"\n"); err != nil {
		t.Fatalf("%s: writing its input: %v", p.name, err)
	}
}

// startServe runs a hub alone and returns it with its address.
func startServe(t *testing.T, bin string) (*proc, string) {
	t.Helper()
	h := start(t, bin, "hub", "-serve", "-listen", "127.0.0.1:0")
	var addr string
	h.Until(t, "listening", func(out, _ []string) bool {
		if len(out) == 0 {
			return false
		}
		a, ok := strings.CutPrefix(out[0], "chat hub listening on ")
		if !ok {
			t.Fatalf("hub's first line %q, want \"chat hub listening on ADDR\"", out[0])
		}
		addr = a
		return true
	})
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("hub address %q", addr)
	}
	return h, addr
}

// number reads the count on the summary row of the demo named label.
func number(t *testing.T, out, label string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + label + `\s+(\d+)\b`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the demo's summary has no %q row", label)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func testDemo(t *testing.T, bin string) {
	start := time.Now()
	cmd := exec.Command(bin, "-demo")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := stdout.String()
	if err != nil {
		t.Fatalf("chat -demo: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	t.Logf("chat -demo took %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	for _, label := range []string{"lost", "duplicated", "out of order", "failed"} {
		if n := number(t, out, label); n != 0 {
			t.Errorf("%s = %d, want 0", label, n)
		}
	}
	sent, received := number(t, out, "sent"), number(t, out, "received")
	if sent == 0 || received != 2*sent {
		t.Errorf("sent %d, received %d: want every line received by both other users", sent, received)
	}
	// A demo where no connection broke would prove nothing.
	if cuts, reconnects := number(t, out, "cuts"), number(t, out, "reconnects"); cuts < 5 || reconnects < 3 {
		t.Errorf("cuts %d, reconnects %d: the connections were not cut", cuts, reconnects)
	}
	if !strings.Contains(out, "OK: nothing lost, nothing duplicated") {
		t.Error("the demo does not end with its verdict")
	}
}

// testScriptsThroughCuts: three scripts talk through a hub, each through a proxy that the test
// cuts while they talk; each must print every other's lines exactly once, in order, and exit 0.
func testScriptsThroughCuts(t *testing.T, bin string) {
	const rounds = 12
	hub, hubAddr := startServe(t, bin)
	px, err := faultnet.NewProxy(hubAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	names := []string{"alice", "bob", "carol"}
	procs := make([]*proc, len(names))
	for i, name := range names {
		procs[i] = start(t, bin, name, "-hub", px.Addr(), "-name", name, "-room", "ops", "-wait-members", "2")
	}
	text := func(name string, r int) string { return fmt.Sprintf("line %02d from %s", r, name) }
	// hasRound reports whether p printed round r of every other participant.
	hasRound := func(p *proc, r int) func(out, _ []string) bool {
		return func(out, _ []string) bool {
			for _, name := range names {
				if name != p.name && !slices.Contains(out, "[ops] "+name+": "+text(name, r)) {
					return false
				}
			}
			return true
		}
	}
	cuts := 0
	for r := 1; r <= rounds; r++ {
		for _, p := range procs {
			p.say(t, text(p.name, r))
		}
		if r%3 == 0 { // round r is on its way: cut every connection under it
			if px.KillAll() > 0 {
				cuts++
			}
		}
		if r > 1 { // one round in flight at a time, so the cuts fall while they talk
			for _, p := range procs {
				p.Until(t, fmt.Sprintf("showing round %d", r-1), hasRound(p, r-1))
			}
		}
	}
	for _, p := range procs {
		p.Until(t, "showing the last round", hasRound(p, rounds))
	}
	for _, p := range procs {
		_ = p.Stdin().Close()
	}
	line := regexp.MustCompile(`^\[ops\] (alice|bob|carol): line (\d\d) from (alice|bob|carol)$`)
	for _, p := range procs {
		if st := p.Wait(t); st != 0 {
			t.Errorf("%s exited %d, want 0", p.name, st)
		}
		last := map[string]int{}
		for _, l := range p.Stdout() {
			m := line.FindStringSubmatch(l)
			if m == nil || m[1] != m[3] || m[1] == p.name {
				t.Errorf("%s printed %q: want [ops] NAME: TEXT, from another participant", p.name, l)
				continue
			}
			r, _ := strconv.Atoi(m[2])
			if r != last[m[1]]+1 {
				t.Errorf("%s printed %s's round %d after round %d", p.name, m[1], r, last[m[1]])
			}
			last[m[1]] = r
		}
		if n := len(p.Stdout()); n != 2*rounds {
			t.Errorf("%s printed %d lines, want %d", p.name, n, 2*rounds)
		}
	}
	if cuts < 3 {
		t.Errorf("%d cuts: the connections were not cut while they talked", cuts)
	}
	if st := px.Stats(); st.Killed < int64(len(procs)) {
		t.Errorf("proxy killed %d connections, want at least %d", st.Killed, len(procs))
	}
	reconnected := false
	for _, p := range procs {
		for _, l := range p.Stderr() {
			reconnected = reconnected || strings.Contains(l, "reconnected")
		}
	}
	if !reconnected {
		t.Error("no participant said it reconnected")
	}
	hub.Signal(t, syscall.SIGTERM)
	if st := hub.Wait(t); st != 0 {
		t.Errorf("hub exited %d after SIGTERM, want 0", st)
	}
}

// testEmbeddedHub: chat without -hub runs a hub and says how to join it; another joins so.
func testEmbeddedHub(t *testing.T, bin string) {
	alice := start(t, bin, "alice", "-name", "alice", "-room", "tea", "-wait-members", "1")
	var addr string
	join := regexp.MustCompile(`join with: go run \./examples/chat -hub (127\.0\.0\.1:\d+) -name NAME -room tea$`)
	alice.Until(t, "printing how to join", func(_, errs []string) bool {
		for _, l := range errs {
			if m := join.FindStringSubmatch(l); m != nil {
				addr = m[1]
				return true
			}
		}
		return false
	})
	if len(alice.Stdout()) != 0 {
		t.Errorf("alice printed %q on stdout before anyone spoke", alice.Stdout())
	}
	bob := start(t, bin, "bob", "-hub", addr, "-name", "bob", "-room", "tea", "-wait-members", "1")
	alice.say(t, "milk?")
	bob.say(t, "no, lemon")
	alice.Until(t, "showing bob's line", func(out, _ []string) bool { return slices.Contains(out, "[tea] bob: no, lemon") })
	bob.Until(t, "showing alice's line", func(out, _ []string) bool { return slices.Contains(out, "[tea] alice: milk?") })
	_ = bob.Stdin().Close()
	if st := bob.Wait(t); st != 0 {
		t.Errorf("bob exited %d, want 0", st)
	}
	alice.Until(t, "hearing bob leave", func(_, errs []string) bool { return slices.Contains(errs, "chat: bob left") })
	_ = alice.Stdin().Close()
	if st := alice.Wait(t); st != 0 {
		t.Errorf("alice exited %d, want 0", st)
	}
	if got := alice.Stdout(); len(got) != 1 {
		t.Errorf("alice printed %q, want bob's line alone", got)
	}
}

// testFailedLine: a member that fails every line makes the sender's line fail, and the sender
// say so and exit 1.
func testFailedLine(t *testing.T, bin string) {
	hub, addr := startServe(t, bin)
	ctx := testkit.Ctx(t)
	grump, err := pubsub.Dial(ctx, addr, pubsub.Config{Name: "grump"})
	if err != nil {
		t.Fatal(err)
	}
	defer grump.Abort()
	if _, err := grump.Subscribe("chat.den", func(context.Context, *pubsub.Msg) error {
		return errors.New("not reading that")
	}); err != nil {
		t.Fatal(err)
	}
	p := start(t, bin, "alice", "-hub", addr, "-name", "alice", "-room", "den")
	p.say(t, "hello?")
	_ = p.Stdin().Close()
	if st := p.Wait(t); st != 1 {
		t.Errorf("exited %d, want 1", st)
	}
	errs := strings.Join(p.Stderr(), "\n")
	if !strings.Contains(errs, `line 1 "hello?" failed: failed at grump (not reading that)`) {
		t.Errorf("stderr does not say which line failed where and why:\n%s", errs)
	}
	if len(p.Stdout()) != 0 {
		t.Errorf("stdout %q, want nothing", p.Stdout())
	}
	hub.Signal(t, os.Interrupt)
	if st := hub.Wait(t); st != 0 {
		t.Errorf("hub exited %d after SIGINT, want 0", st)
	}
}

func testWaitMembersTimeout(t *testing.T, bin string) {
	p := start(t, bin, "alone", "-name", "alone", "-wait-members", "1", "-wait-timeout", "300ms")
	if st := p.Wait(t); st != 1 {
		t.Errorf("exited %d, want 1", st)
	}
	if errs := strings.Join(p.Stderr(), "\n"); !strings.Contains(errs, "0 other member(s) present, waiting for 1") {
		t.Errorf("stderr does not say whom it waited for:\n%s", errs)
	}
}

func testBadFlags(t *testing.T, bin string) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-room", "a.b"}, `-room "a.b": '.' is not allowed`},
		{[]string{"-room", "*"}, `-room "*": '*' is not allowed`},
		{[]string{"-room", ""}, `-room "": want 1 to 32 characters`},
		{[]string{"-name", "bob smith"}, `-name "bob smith": ' ' is not allowed`},
		{[]string{"-name", strings.Repeat("x", 33)}, "want 1 to 32 characters"},
		{[]string{"-wait-members", "-1"}, "-wait-members -1: want 0 or more"},
		{[]string{"-wait-members", "two"}, `invalid value "two" for flag -wait-members`},
		{[]string{"-serve", "-hub", "127.0.0.1:1"}, "-hub does not go with -serve"},
		{[]string{"-demo", "-name", "x"}, "-name does not go with -demo"},
		{[]string{"-hub", "127.0.0.1:1", "-listen", "127.0.0.1:0"}, "-listen is the address of the hub chat runs"},
		{[]string{"-hub", ""}, "-hub: empty address"},
		{[]string{"-timeout", "0s"}, "-timeout 0s: want a positive duration"},
		{[]string{"-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"lobby"}, `unexpected argument "lobby"`},
	} {
		cmd := exec.Command(bin, tc.args...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("chat %q: %v, want exit status 2", tc.args, err)
			continue
		}
		if !strings.HasPrefix(stderr.String(), "chat: ") || !strings.Contains(stderr.String(), tc.want) ||
			strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("chat %q said %q, want one line with %q", tc.args, stderr.String(), tc.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("chat %q printed %q on stdout", tc.args, stdout.String())
		}
	}
}

func testServeSignals(t *testing.T, bin string) {
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		hub, addr := startServe(t, bin)
		// A member present: the hub closes its session on the way out.
		p := start(t, bin, "alice", "-hub", addr, "-name", "alice")
		p.Until(t, "joining", func(_, errs []string) bool {
			return len(errs) > 0 && strings.Contains(errs[0], "joined room lobby as alice")
		})
		hub.Signal(t, sig)
		if st := hub.Wait(t); st != 0 {
			t.Errorf("hub exited %d after %v, want 0", st, sig)
		}
		if st := p.Wait(t); st != 1 {
			t.Errorf("alice exited %d once the hub was gone, want 1", st)
		}
		if errs := strings.Join(p.Stderr(), "\n"); !strings.Contains(errs, "the session with the hub ended") {
			t.Errorf("alice does not say the hub went:\n%s", errs)
		}
	}
}
