package testkit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// builds are the programs Build made, one per package, shared by every test of the binary.
var builds struct {
	mu   sync.Mutex
	dir  string // made by the first Build, removed by Main
	bins map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

// Build builds the program of package pkg (a directory or an import path; "." is the package
// under test) once per test binary, with -race if the test binary has it so that the program's
// own goroutines are checked too, and returns the path of the binary, named after the package's
// directory as a user's build would be. It skips t when there is no go command. A package whose
// tests call Build runs them through Main, which removes the binaries at the end.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	builds.mu.Lock()
	if builds.bins == nil {
		builds.bins = map[string]*build{}
	}
	b := builds.bins[pkg]
	if b == nil {
		b = &build{}
		builds.bins[pkg] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() { b.path, b.err = buildProgram(pkg) })
	if errors.Is(b.err, exec.ErrNotFound) {
		t.Skipf("no go command to build %s with", pkg)
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func buildProgram(pkg string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	name := filepath.Base(pkg)
	if abs, err := filepath.Abs(pkg); err == nil && (strings.HasPrefix(pkg, ".") || filepath.IsAbs(pkg)) {
		name = filepath.Base(abs)
	}
	builds.mu.Lock()
	if builds.dir == "" {
		builds.dir, err = os.MkdirTemp("", "testkit-build-")
	}
	dir := builds.dir
	builds.mu.Unlock()
	if err != nil {
		return "", err
	}
	// A directory of its own per package: two packages may end in the same name.
	if dir, err = os.MkdirTemp(dir, "pkg-"); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	args := []string{"build", "-o", path}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command(goBin, append(args, pkg)...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return path, nil
}

// Main runs the tests and benchmarks of m, removes what Build made, and returns the status for
// os.Exit: a package whose tests call Build has `func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }`.
func Main(m *testing.M) int {
	code := m.Run()
	builds.mu.Lock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	builds.mu.Unlock()
	return code
}

// ProcLimit is how long a Proc's waits last by default before they fail the test: a bound for a
// hung program, never a synchronisation.
const ProcLimit = 60 * time.Second

// Proc is a program running in a child process, its standard output and error collected line by
// line. Its waits fail the test, showing what it printed, when the program exits before what
// they wait for or when their limit passes.
type Proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	limit  time.Duration
	exited chan struct{} // closed once the process ended and its output was read
	status int           // its exit status, -1 if a signal ended it; set before exited closes

	mu      sync.Mutex
	out     []string      // stdout
	errs    []string      // stderr
	changed chan struct{} // closed, and replaced, whenever a line arrives
}

// Start runs bin with args, its standard input a pipe (Stdin); the process is killed when the
// test ends if it still runs, and what it printed is logged if the test failed.
func Start(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	return StartCmd(t, exec.Command(bin, args...))
}

// StartCmd is Start for a command the caller has set up further (its environment, its
// directory). Its standard input is a pipe unless cmd.Stdin is set; its standard output and
// error must be left to the Proc.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{cmd: cmd, limit: ProcLimit, exited: make(chan struct{}), changed: make(chan struct{})}
	dieWithTest(cmd)
	var err error
	if cmd.Stdin == nil {
		if p.stdin, err = cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	var readers sync.WaitGroup
	read := func(r io.Reader, lines *[]string) {
		defer readers.Done()
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			*lines = append(*lines, sc.Text())
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		// A line too long for the buffer: keep draining, so the program never blocks on us.
		_, _ = io.Copy(io.Discard, r)
	}
	readers.Add(2)
	go read(stdout, &p.out)
	go read(stderr, &p.errs)
	go func() {
		readers.Wait() // Wait closes the pipes: the reading must be over
		_ = cmd.Wait()
		p.status = cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s\nstdout:\n%s\nstderr:\n%s", p, p.Out(), p.Err())
		}
	})
	return p
}

// String is the command line.
func (p *Proc) String() string { return strings.Join(p.cmd.Args, " ") }

// SetLimit sets how long the waits of p last before they fail the test (ProcLimit by default).
func (p *Proc) SetLimit(d time.Duration) { p.limit = d }

// Stdin is the write end of the program's standard input; closing it ends that input. It is nil
// if the command came with its own Stdin.
func (p *Proc) Stdin() io.WriteCloser { return p.stdin }

// Stdout is the program's standard output so far, line by line.
func (p *Proc) Stdout() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.out...)
}

// Stderr is the program's standard error so far, line by line.
func (p *Proc) Stderr() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.errs...)
}

// Out is the program's standard output so far, its lines joined by newlines.
func (p *Proc) Out() string { return strings.Join(p.Stdout(), "\n") }

// Err is the program's standard error so far, its lines joined by newlines.
func (p *Proc) Err() string { return strings.Join(p.Stderr(), "\n") }

// Signal sends sig to the program.
func (p *Proc) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: signal %v: %v", p, sig, err)
	}
}

// Wait waits for the program to exit and returns its status, -1 if a signal ended it.
func (p *Proc) Wait(t testing.TB) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.status
	case <-time.After(p.limit):
		t.Fatalf("%s still runs %v later\nstdout:\n%s\nstderr:\n%s", p, p.limit, p.Out(), p.Err())
		return -1
	}
}

// Until waits until cond holds for what the program printed so far, stdout and stderr line by
// line; what names the wait in the failure.
func (p *Proc) Until(t testing.TB, what string, cond func(stdout, stderr []string) bool) {
	t.Helper()
	limit := time.NewTimer(p.limit)
	defer limit.Stop()
	for {
		p.mu.Lock()
		changed := p.changed
		p.mu.Unlock()
		if cond(p.Stdout(), p.Stderr()) {
			return
		}
		select {
		case <-changed:
		case <-p.exited:
			if !cond(p.Stdout(), p.Stderr()) {
				t.Fatalf("%s exited (status %d) before %s\nstdout:\n%s\nstderr:\n%s", p, p.status, what, p.Out(), p.Err())
			}
			return
		case <-limit.C:
			t.Fatalf("%s: not %s within %v\nstdout:\n%s\nstderr:\n%s", p, what, p.limit, p.Out(), p.Err())
		}
	}
}

// Line waits for a line of standard output matching re and returns its submatches.
func (p *Proc) Line(t testing.TB, re *regexp.Regexp) []string {
	t.Helper()
	_, m := p.LineFrom(t, 0, re, nil)
	return m
}

// LineFrom waits for the first line of standard output from line from on (0 is the first) that
// matches re and whose submatches satisfy ok (if ok is not nil), and returns its index and its
// submatches.
func (p *Proc) LineFrom(t testing.TB, from int, re *regexp.Regexp, ok func(m []string) bool) (int, []string) {
	t.Helper()
	i, m := from, []string(nil)
	p.Until(t, fmt.Sprintf("printing a line matching %q", re), func(out, _ []string) bool {
		for ; i < len(out); i++ {
			if m = re.FindStringSubmatch(out[i]); m != nil && (ok == nil || ok(m)) {
				return true
			}
		}
		return false
	})
	return i, m
}
