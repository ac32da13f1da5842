package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"
)

// The game's binary, built once by TestMain as a user would build it (with -race when the
// tests run with it, so the children check for races too).
var gameBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "game-test-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gameBin = filepath.Join(dir, "game")
	args := []string{"build", "-o", gameBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitLimit bounds every wait for a child: a failure, never a synchronisation.
const waitLimit = 30 * time.Second

// child is the game running in a child process, its output collected line by line.
type child struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd

	mu    sync.Mutex
	lines []string
	kick  chan struct{} // capacity 1: a line came, or the output ended
	eof   bool
	done  chan struct{} // closed once the process has exited
	err   error         // Wait's, once done
}

func startChild(t *testing.T, name string, args ...string) *child {
	t.Helper()
	c := &child{t: t, name: name, cmd: exec.Command(gameBin, args...), kick: make(chan struct{}, 1), done: make(chan struct{})}
	pr, pw := io.Pipe()
	c.cmd.Stdout, c.cmd.Stderr = pw, pw
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, sc.Text())
			c.mu.Unlock()
			c.poke()
		}
		c.mu.Lock()
		c.eof = true
		c.mu.Unlock()
		c.poke()
	}()
	go func() {
		c.err = c.cmd.Wait()
		pw.Close()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = c.cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", c.name, c.output())
		}
	})
	return c
}

func (c *child) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *child) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ""
	for _, l := range c.lines {
		s += l + "\n"
	}
	return s
}

// waitLine waits for the first line from line from on that matches re, and returns its index
// and submatches.
func (c *child) waitLine(from int, re *regexp.Regexp) (int, []string) {
	c.t.Helper()
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	for i := from; ; {
		c.mu.Lock()
		for ; i < len(c.lines); i++ {
			if m := re.FindStringSubmatch(c.lines[i]); m != nil {
				c.mu.Unlock()
				return i, m
			}
		}
		eof := c.eof
		c.mu.Unlock()
		if eof {
			c.t.Fatalf("%s ended without a line matching %q", c.name, re)
		}
		select {
		case <-c.kick:
		case <-limit.C:
			c.t.Fatalf("%s: no line matching %q in %v", c.name, re, waitLimit)
		}
	}
}

// exit waits for the child to exit and returns its status.
func (c *child) exit() int {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitLimit):
		c.t.Fatalf("%s did not exit in %v", c.name, waitLimit)
	}
	if c.err == nil {
		return 0
	}
	if ee, ok := c.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	c.t.Fatalf("%s: %v", c.name, c.err)
	return -1
}

func (c *child) signal(sig os.Signal) {
	c.t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("%s: signal %v: %v", c.name, sig, err)
	}
}

// TestDemo runs the demo as a user would and checks its verdict: nothing lost, nothing
// duplicated, the server moved and every player resumed.
func TestDemo(t *testing.T) {
	c := startChild(t, "demo", "-demo", "-players", "8", "-duration", "2s", "-migrate-after", "1s")
	if code := c.exit(); code != 0 {
		t.Fatalf("the demo exited %d:\n%s", code, c.output())
	}
	c.waitLine(0, regexp.MustCompile(`^important events: sent [1-9]\d*, processed \d+, lost 0, duplicated 0$`))
	c.waitLine(0, regexp.MustCompile(`^migration: 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+, pause [\d.]+ ms, snapshot [\d.]+ KiB$`))
	_, m := c.waitLine(0, regexp.MustCompile(`^players 8, ticks \d+, inputs sent (\d+), received (\d+), scores \d+$`))
	if m[1] != m[2] || m[1] == "0" {
		t.Errorf("inputs sent %s, received %s", m[1], m[2])
	}
	_, m = c.waitLine(0, regexp.MustCompile(`^resume times \(ms\): (.*)$`))
	if n := len(regexp.MustCompile(`p\d+ [\d.]+`).FindAllString(m[1], -1)); n != 8 {
		t.Errorf("%d resume times for 8 players: %q", n, m[1])
	}
	c.waitLine(0, regexp.MustCompile(`^ok$`))
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
		c := startChild(t, fmt.Sprint(args), args...)
		if code := c.exit(); code != 2 {
			t.Errorf("%q: exit %d, want 2:\n%s", args, code, c.output())
		}
	}
}
