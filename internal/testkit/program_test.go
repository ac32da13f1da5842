package testkit

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"testing"
)

// The test binary plays the child program when FTSL_TESTKIT_CHILD is set: it echoes each line of
// its standard input to standard output, numbered, says so on standard error, and exits with
// the status that the line "exit N" asks for.
func init() {
	if os.Getenv("FTSL_TESTKIT_CHILD") != "1" {
		return
	}
	sc := bufio.NewScanner(os.Stdin)
	for n := 1; sc.Scan(); n++ {
		if code, ok := cutExit(sc.Text()); ok {
			os.Exit(code)
		}
		fmt.Printf("%d %s\n", n, sc.Text())
		fmt.Fprintf(os.Stderr, "echoed %d\n", n)
	}
	os.Exit(0)
}

func cutExit(line string) (int, bool) {
	var code int
	if _, err := fmt.Sscanf(line, "exit %d", &code); err != nil {
		return 0, false
	}
	return code, true
}

func startChild(t *testing.T) *Proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FTSL_TESTKIT_CHILD=1")
	return StartCmd(t, cmd)
}

func say(t *testing.T, p *Proc, line string) {
	t.Helper()
	if _, err := io.WriteString(p.Stdin(), line+"\n"); err != nil {
		t.Fatal(err)
	}
}

func TestProcLinesAndStatus(t *testing.T) {
	p := startChild(t)
	for _, l := range []string{"a", "b", "a"} {
		say(t, p, l)
	}
	line := regexp.MustCompile(`^(\d+) a$`)
	if m := p.Line(t, line); m[1] != "1" {
		t.Errorf("Line: %q, want the first line", m)
	}
	// From the line after the first a on, the next a.
	if i, m := p.LineFrom(t, 1, line, nil); i != 2 || m[1] != "3" {
		t.Errorf("LineFrom 1: line %d %q, want line 2, the second a", i, m)
	}
	if i, m := p.LineFrom(t, 0, line, func(m []string) bool { return m[1] != "1" }); i != 2 || m[1] != "3" {
		t.Errorf("LineFrom with ok: line %d %q, want line 2, the second a", i, m)
	}
	p.Until(t, "saying it echoed three lines", func(_, errs []string) bool { return slices.Contains(errs, "echoed 3") })
	say(t, p, "exit 3")
	if st := p.Wait(t); st != 3 {
		t.Errorf("Wait: %d, want 3", st)
	}
	if got, want := p.Out(), "1 a\n2 b\n3 a"; got != want {
		t.Errorf("Out: %q, want %q", got, want)
	}
	if got := p.Stderr(); len(got) != 3 || got[2] != "echoed 3" {
		t.Errorf("Stderr: %q", got)
	}
}

func TestProcKilled(t *testing.T) {
	p := startChild(t)
	say(t, p, "x")
	p.Line(t, regexp.MustCompile(`^1 x$`))
	p.Signal(t, os.Kill)
	if st := p.Wait(t); st != -1 {
		t.Errorf("Wait after a kill: %d, want -1", st)
	}
}

func TestProcInputClosed(t *testing.T) {
	p := startChild(t)
	if err := p.Stdin().Close(); err != nil {
		t.Fatal(err)
	}
	if st := p.Wait(t); st != 0 {
		t.Errorf("Wait: %d, want 0 at the end of its input", st)
	}
	if out := p.Stdout(); len(out) != 0 {
		t.Errorf("Stdout: %q, want nothing", out)
	}
}
