//go:build unix

package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/testkit"
	"github.com/ftsl-go/ftsl/naming"
)

// TestCommand builds ftsl-naming and runs it as a user would: flags, environment, data file,
// signals, exit status.
func TestCommand(t *testing.T) {
	bin := testkit.Build(t, ".")
	t.Run("ServeRestart", func(t *testing.T) { testServeRestart(t, bin) })
	t.Run("TokenFromEnv", func(t *testing.T) { testTokenFromEnv(t, bin) })
	t.Run("BadFlags", func(t *testing.T) { testBadFlags(t, bin) })
}

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

// proc is a running ftsl-naming.
type proc struct {
	*testkit.Proc
	addr string
}

// start runs the binary on a free loopback port with args and env (added to the test's) and
// returns once it printed its address. The process is killed when the test ends if it still runs.
func start(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-listen", "127.0.0.1:0", "-log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{Proc: testkit.StartCmd(t, cmd)}
	p.Until(t, "printing its address", func(out, _ []string) bool { return len(out) > 0 })
	line := p.Stdout()[0]
	addr, ok := strings.CutPrefix(line, "ftsl-naming listening on ")
	if !ok || !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		p.Wait(t)
		t.Fatalf("first line %q, want \"ftsl-naming listening on 127.0.0.1:PORT\"\nstderr: %s", line, p.Err())
	}
	p.addr = addr
	return p
}

// stop sends SIGTERM and returns the exit status.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	p.Signal(t, syscall.SIGTERM)
	return p.Wait(t)
}

func (p *proc) client(token string) *naming.Client {
	return &naming.Client{BaseURL: "http://" + p.addr, Token: token}
}

func testServeRestart(t *testing.T, bin string) {
	ctx := testkit.Ctx(t)
	data := filepath.Join(t.TempDir(), "names.json")
	p := start(t, bin, nil, "-data", data, "-token", "flag-token")
	c := p.client("flag-token")
	b1, err := c.Bind(ctx, "chat", "127.0.0.1:4300")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := c.Lookup(ctx, "chat"); err != nil || b != b1 {
		t.Fatalf("Lookup: %+v %v, want %+v", b, err, b1)
	}
	if _, err := p.client("").Rebind(ctx, "chat", "127.0.0.1:1"); !errors.Is(err, naming.ErrUnauthorized) {
		t.Errorf("Rebind without the token: %v", err)
	}
	// A watch from b1 returns b2, whether it waited when the rebind came or came after it.
	watched := make(chan naming.Binding, 1)
	go func() {
		b, err := c.Watch(ctx, "chat", b1.Version)
		if err != nil {
			t.Error(err)
		}
		watched <- b
	}()
	b2, err := c.Rebind(ctx, "chat", "127.0.0.1:4301")
	if err != nil {
		t.Fatal(err)
	}
	if b := <-watched; b != b2 {
		t.Errorf("watch: %+v, want %+v", b, b2)
	}
	if st, err := os.Stat(data); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("data file: %v %v", st.Mode(), err)
	}

	// SIGTERM while a watch waits: the watch is answered (503, or cut off), the exit is clean.
	waiting := make(chan error, 1)
	go func() { _, err := c.Watch(ctx, "chat", b2.Version); waiting <- err }()
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM\n%s", code, p.Err())
	}
	if err := <-waiting; err == nil {
		t.Error("a watch waiting at shutdown returned no error")
	}
	if out := p.Stdout(); len(out) != 1 {
		t.Errorf("more on stdout after the address line: %q", out[1:])
	}

	// Restarted on the same file, it has the binding at the same version.
	p = start(t, bin, nil, "-data", data, "-token", "flag-token")
	c = p.client("flag-token")
	if b, err := c.Lookup(ctx, "chat"); err != nil || b != b2 {
		t.Errorf("after restart: %+v %v, want %+v", b, err, b2)
	}
	if b, err := c.Bind(ctx, "other", "127.0.0.1:1"); err != nil || b.Version != b2.Version+1 {
		t.Errorf("first write after restart: %+v %v", b, err)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM\n%s", code, p.Err())
	}
}

func testTokenFromEnv(t *testing.T, bin string) {
	ctx := testkit.Ctx(t)
	p := start(t, bin, []string{TokenEnv + "=env-token"})
	if _, err := p.client("env-token").Bind(ctx, "a", "127.0.0.1:1"); err != nil {
		t.Errorf("with the environment's token: %v", err)
	}
	if _, err := p.client("other").Bind(ctx, "b", "127.0.0.1:1"); !errors.Is(err, naming.ErrUnauthorized) {
		t.Errorf("with another token: %v", err)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if !strings.Contains(p.Err(), "no -data file") {
		t.Errorf("no warning about memory only:\n%s", p.Err())
	}
	// The flag wins over the environment.
	p = start(t, bin, []string{TokenEnv + "=env-token"}, "-token", "flag-token")
	if _, err := p.client("env-token").Bind(ctx, "a", "127.0.0.1:1"); !errors.Is(err, naming.ErrUnauthorized) {
		t.Errorf("the environment's token with -token given: %v", err)
	}
	if _, err := p.client("flag-token").Bind(ctx, "a", "127.0.0.1:1"); err != nil {
		t.Errorf("the flag's token: %v", err)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if strings.Contains(p.Err(), "flag-token") || strings.Contains(p.Err(), "env-token") {
		t.Errorf("the token is in the log:\n%s", p.Err())
	}
	// No token at all: a warning.
	p = start(t, bin, []string{TokenEnv + "="})
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if !strings.Contains(p.Err(), "anyone who reaches the server") {
		t.Errorf("no warning about writes open to all:\n%s", p.Err())
	}
}

func testBadFlags(t *testing.T, bin string) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.json")
	if err := os.WriteFile(corrupt, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-bogus"}, "-bogus"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-listen", ""}, "-listen"},
		{[]string{"-token", ""}, "-token"},
		{[]string{"-max-watchers", "0"}, "-max-watchers"},
		{[]string{"-max-names", "1000000"}, "MaxNames"},
		{[]string{"-max-wait", "0s"}, "-max-wait"},
		{[]string{"-max-wait", "soon"}, "-max-wait"},
		{[]string{"-log", "loud"}, "-log"},
		{[]string{"-log-format", "xml"}, "-log-format"},
		{[]string{"-data", corrupt}, corrupt},
		{[]string{"-data", filepath.Join(dir, "missing", "names.json")}, "missing"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, bin, tc.args...).CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%q: %v, want exit status 2\n%s", tc.args, err, out)
			continue
		}
		if !strings.HasPrefix(string(out), "ftsl-naming: ") || !strings.Contains(string(out), tc.want) || strings.Count(string(out), "\n") != 1 {
			t.Errorf("%q: message %q, want one line naming %q", tc.args, out, tc.want)
		}
	}
	out, err := exec.Command(bin, "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-listen") || !strings.Contains(string(out), TokenEnv) {
		t.Errorf("-h: %v\n%s", err, out)
	}
}
