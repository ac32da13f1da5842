package main

import (
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

// waitLimit bounds every wait for a child: a failure, never a synchronisation.
const waitLimit = 30 * time.Second

// startChild runs the game, built as a user would build it, with args.
func startChild(t *testing.T, args ...string) *testkit.Proc {
	t.Helper()
	p := testkit.Start(t, testkit.Build(t, "."), args...)
	p.SetLimit(waitLimit)
	return p
}

// TestDemo runs the demo as a user would and checks its verdict: nothing lost, nothing
// duplicated, the server moved and every player resumed.
func TestDemo(t *testing.T) {
	c := startChild(t, "-demo", "-players", "8", "-duration", "2s", "-migrate-after", "1s")
	if code := c.Wait(t); code != 0 {
		t.Fatalf("the demo exited %d:\n%s", code, c.Out()+"\n"+c.Err())
	}
	c.Line(t, regexp.MustCompile(`^important events: sent [1-9]\d*, processed \d+, lost 0, duplicated 0$`))
	c.Line(t, regexp.MustCompile(`^migration: 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+, pause [\d.]+ ms, snapshot [\d.]+ KiB$`))
	m := c.Line(t, regexp.MustCompile(`^players 8, ticks \d+, inputs sent (\d+), received (\d+), scores \d+$`))
	if m[1] != m[2] || m[1] == "0" {
		t.Errorf("inputs sent %s, received %s", m[1], m[2])
	}
	m = c.Line(t, regexp.MustCompile(`^resume times \(ms\): (.*)$`))
	if n := len(regexp.MustCompile(`p\d+ [\d.]+`).FindAllString(m[1], -1)); n != 8 {
		t.Errorf("%d resume times for 8 players: %q", n, m[1])
	}
	c.Line(t, regexp.MustCompile(`^ok$`))
}

// TestDemoRefusesBadFlags checks that the command explains a bad command line.
func TestDemoRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-demo", "-serve"},
		{"-play", "-naming", "http://127.0.0.1:1"},
		{"-demo", "-players", "0"},
		{"-demo", "-migrate-after", "5s", "-duration", "3s"},
		{"-play", "-naming", "http://127.0.0.1:1", "-name", "two words"},
	} {
		c := startChild(t, args...)
		if code := c.Wait(t); code != 2 {
			t.Errorf("%q: exit %d, want 2:\n%s", args, code, c.Out()+"\n"+c.Err())
		}
	}
}
