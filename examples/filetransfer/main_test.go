//go:build unix

package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/faultnet"
	"github.com/ftsl-go/ftsl/internal/testkit"
	"github.com/ftsl-go/ftsl/naming"
)

// start runs the program with args; it is killed when the test ends, if it still runs.
func start(t *testing.T, args ...string) *testkit.Proc {
	t.Helper()
	return testkit.Start(t, testkit.Build(t, "."), args...)
}

var listeningLine = regexp.MustCompile(`^listening on (\S+)$`)

// serveDir runs a receiver on a free loopback port; it returns the process, its address and its
// directory.
func serveDir(t *testing.T) (*testkit.Proc, string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "received")
	p := start(t, "serve", "-listen", "127.0.0.1:0", "-dir", dir)
	return p, p.Line(t, listeningLine)[1], dir
}

// randomFile writes size random bytes to dir/name and returns its path and SHA-256.
func randomFile(t *testing.T, dir, name string, size int64, seed uint64) (string, string) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeRandomFile(path, size, seed); err != nil {
		t.Fatal(err)
	}
	return path, fileHash(t, path)
}

func fileHash(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// sentLine matches the sender's report for a file: name, size, hash.
func sentLine(name string) *regexp.Regexp {
	return regexp.MustCompile(`^sent ` + regexp.QuoteMeta(name) + ` (\d+) sha256=([0-9a-f]{64}) in [0-9.]+ s \([0-9.]+ MB/s\)$`)
}

func receivedLine(name string) *regexp.Regexp {
	return regexp.MustCompile(`^received ` + regexp.QuoteMeta(name) + ` (\d+) sha256=([0-9a-f]{64})$`)
}

var statsRE = regexp.MustCompile(`^stats: files=(\d+) bytes=(\d+) resumed=(\d+) sent=(\d+) reconnects=(\d+) resent_frames=(\d+)$`)

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkFile checks one file's transfer end to end: the sender's and the receiver's reports, and
// the received bytes.
func checkFile(t *testing.T, sender, receiver *testkit.Proc, dir, name string, size int64, sum string) {
	t.Helper()
	m := sender.Line(t, sentLine(name))
	if atoi(t, m[1]) != size || m[2] != sum {
		t.Errorf("sender reported %s %s sha256=%s, want %d sha256=%s", name, m[1], m[2], size, sum)
	}
	m = receiver.Line(t, receivedLine(name))
	if atoi(t, m[1]) != size || m[2] != sum {
		t.Errorf("receiver reported %s %s sha256=%s, want %d sha256=%s", name, m[1], m[2], size, sum)
	}
	if got := fileHash(t, filepath.Join(dir, filepath.FromSlash(name))); got != sum {
		t.Errorf("received %s hashes to %s, want %s", name, got, sum)
	}
}

// TestCutConnections: a 50 MiB file goes through a proxy that resets the connection every
// 300 ms; the session rides through every cut, and the file arrives whole and unchanged. The
// sender is held to 25 MB/s so that the transfer meets several cuts however fast the machine is.
func TestCutConnections(t *testing.T) {
	receiver, addr, dir := serveDir(t)
	proxy, err := faultnet.NewProxy(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	const size = 50 << 20
	path, sum := randomFile(t, t.TempDir(), "big.bin", size, 1)

	stopCuts := cutEvery(proxy, 300*time.Millisecond)
	sender := start(t, "send", "-to", proxy.Addr(), "-rate", "25MB", "-stats", "-progress", "plain", path)
	code := sender.Wait(t)
	cuts := stopCuts()
	if code != 0 {
		t.Fatalf("sender exited %d\nstdout:\n%s\nstderr:\n%s", code, sender.Out(), sender.Err())
	}
	checkFile(t, sender, receiver, dir, "big.bin", size, sum)
	st := sender.Line(t, statsRE)
	if reconnects := atoi(t, st[5]); cuts < 3 || reconnects < 3 {
		t.Errorf("%d connections cut, %d reconnections: want at least 3 of each", cuts, reconnects)
	}
	if sent := atoi(t, st[4]); sent != size {
		t.Errorf("the application sent %d bytes, want %d: the session, not the program, resends", sent, size)
	}
	t.Logf("%d cuts, %s reconnections, %s frames resent", cuts, st[5], st[6])
}

var progressLine = regexp.MustCompile(`^progress (\d+)% `)

// TestResumeAfterSenderKilled: a sender killed in the middle of a file, and run again, sends only
// what the receiver lacks.
func TestResumeAfterSenderKilled(t *testing.T) {
	receiver, addr, dir := serveDir(t)
	const size = 16 << 20
	path, sum := randomFile(t, t.TempDir(), "data.bin", size, 2)

	first := start(t, "send", "-to", addr, "-rate", "8MB", "-progress", "plain", path)
	first.LineFrom(t, 0, progressLine, func(m []string) bool { return atoi(t, m[1]) >= 40 })
	first.Signal(t, syscall.SIGKILL)
	if code := first.Wait(t); code != -1 {
		t.Fatalf("the first sender exited %d before it was killed\n%s", code, first.Out())
	}

	second := start(t, "send", "-to", addr, "-stats", "-progress", "plain", path)
	if code := second.Wait(t); code != 0 {
		t.Fatalf("second sender exited %d\nstdout:\n%s\nstderr:\n%s", code, second.Out(), second.Err())
	}
	checkFile(t, second, receiver, dir, "data.bin", size, sum)
	off := atoi(t, second.Line(t, regexp.MustCompile(`^resuming data\.bin at (\d+)$`))[1])
	st := second.Line(t, statsRE)
	resumed, sent := atoi(t, st[3]), atoi(t, st[4])
	if resumed != off || sent != size-off {
		t.Errorf("stats say resumed %d, sent %d; want %d and %d", resumed, sent, off, size-off)
	}
	if sent > size*3/4 {
		t.Errorf("the second run sent %d bytes of %d: it should have resumed past 40%%", sent, size)
	}
	t.Logf("resumed at %d of %d; the second run sent %d bytes", off, size, sent)
}

// TestSeveralFiles: one run sends files and a directory tree over one session while a second
// sender sends to the same receiver.
func TestSeveralFiles(t *testing.T) {
	receiver, addr, dir := serveDir(t)
	src := t.TempDir()
	type file struct {
		name string
		size int64
		sum  string
	}
	var files []file
	add := func(rel, name string, size int64) string {
		path, sum := randomFile(t, src, rel, size, uint64(len(files)+10))
		files = append(files, file{name, size, sum})
		return path
	}
	a := add("a.bin", "a.bin", 3<<20+1)
	b := add("b.txt", "b.txt", 0)
	add("tree/one.bin", "tree/one.bin", 1<<20)
	add("tree/sub/two.bin", "tree/sub/two.bin", 700<<10)
	add("tree/sub/deeper/three.bin", "tree/sub/deeper/three.bin", 5)
	other := add("other/c.bin", "c.bin", 2<<20)

	s1 := start(t, "send", "-to", addr, "-chunk", "64KiB", "-progress", "plain", "-stats", a, b, filepath.Join(src, "tree"))
	s2 := start(t, "send", "-to", addr, "-progress", "none", other)
	for _, s := range []*testkit.Proc{s1, s2} {
		if code := s.Wait(t); code != 0 {
			t.Fatalf("%v exited %d\nstdout:\n%s\nstderr:\n%s", s, code, s.Out(), s.Err())
		}
	}
	for _, f := range files {
		s := s1
		if f.name == "c.bin" {
			s = s2
		}
		checkFile(t, s, receiver, dir, f.name, f.size, f.sum)
	}
	if st := s1.Line(t, statsRE); st[1] != "5" {
		t.Errorf("the first sender counted %s files, want 5", st[1])
	}
}

// TestBadNamesRefused: names that would leave the receiver's directory are refused by the sender
// before it connects, with one clear line and exit status 2.
func TestBadNamesRefused(t *testing.T) {
	receiver, addr, dir := serveDir(t)
	path, _ := randomFile(t, t.TempDir(), "f.bin", 100, 3)
	for _, tc := range []struct{ as, why string }{
		{"../escape.bin", "escapes the directory"},
		{"a/../../escape.bin", "escapes the directory"},
		{"/tmp/escape.bin", "absolute path"},
		{"x\\..\\escape.bin", "backslash"},
		{strings.Repeat("n", 300), "path element of 300 bytes"},
		{partialPrefix + "x", "partial"},
	} {
		s := start(t, "send", "-to", addr, "-as", tc.as, path)
		code := s.Wait(t)
		errOut := s.Err()
		if code != 2 || strings.Count(errOut, "\n") != 0 || !strings.HasPrefix(errOut, "filetransfer: ") || !strings.Contains(errOut, tc.why) {
			t.Errorf("-as %q: exit %d, stderr %q; want 2 and one line about %q", tc.as, code, errOut, tc.why)
		}
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("the receiver's directory holds %v (%v)", entries, err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file escaped: %v", err)
	}
	if out := receiver.Out(); strings.Contains(out, "received") {
		t.Errorf("the receiver received something: %q", out)
	}
}

// TestSendFailures: what goes wrong is said in one line, with exit status 1 for a failed
// transfer and 2 for a mistake in the command.
func TestSendFailures(t *testing.T) {
	path, _ := randomFile(t, t.TempDir(), "f.bin", 100, 4)
	// A port nobody listens on: taken, then freed.
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		args []string
		code int
		why  string
	}{
		{[]string{"send", "-to", dead, "-connect-timeout", "300ms", path}, 1, "connect to " + dead},
		{[]string{"send", path}, 2, "needs -to"},
		{[]string{"send", "-to", dead}, 2, "at least one file"},
		{[]string{"send", "-to", dead, filepath.Join(t.TempDir(), "missing")}, 2, "no such file"},
		{[]string{"send", "-to", dead, "-as", "x", path, path}, 2, "-as names one file"},
		{[]string{"send", "-to", dead, path, path}, 2, "would both be"},
		{[]string{"send", "-to", dead, "-chunk", "4MiB", path}, 2, "-chunk"},
		{[]string{"send", "-to", dead, t.TempDir()}, 2, "nothing to send"},
		{[]string{"serve"}, 2, "needs -dir"},
		{[]string{"frobnicate"}, 2, "unknown command"},
	} {
		s := start(t, tc.args...)
		code := s.Wait(t)
		errOut := s.Err()
		lines := strings.Split(errOut, "\n")
		if code != tc.code || !strings.Contains(errOut, tc.why) || (tc.code == 1 && len(lines) != 1) {
			t.Errorf("%q: exit %d, stderr %q; want %d and a line about %q", tc.args, code, errOut, tc.code, tc.why)
		}
	}
}

// TestReceiverRestarted: a receiver killed in the middle of a file loses the session; its sender
// says so in one line and exits 1; run again against the restarted receiver, it resumes from the
// partial file the first receiver left.
func TestReceiverRestarted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "received")
	first := start(t, "serve", "-listen", "127.0.0.1:0", "-dir", dir)
	addr := first.Line(t, listeningLine)[1]
	const size = 16 << 20
	path, sum := randomFile(t, t.TempDir(), "data.bin", size, 5)

	sender := start(t, "send", "-to", addr, "-rate", "8MB", "-progress", "plain", "-resume-window", "500ms", path)
	sender.LineFrom(t, 0, progressLine, func(m []string) bool { return atoi(t, m[1]) >= 30 })
	first.Signal(t, syscall.SIGKILL)
	first.Wait(t)
	if code := sender.Wait(t); code != 1 {
		t.Fatalf("the sender exited %d, want 1\nstdout:\n%s\nstderr:\n%s", code, sender.Out(), sender.Err())
	}
	if errOut := sender.Err(); strings.Count(errOut, "\n") != 0 || !strings.Contains(errOut, "send data.bin: the session with the receiver was lost (run again to resume)") {
		t.Errorf("the sender said %q", errOut)
	}

	second := start(t, "serve", "-listen", addr, "-dir", dir)
	second.Line(t, listeningLine)
	again := start(t, "send", "-to", addr, "-stats", "-progress", "none", path)
	if code := again.Wait(t); code != 0 {
		t.Fatalf("the second sender exited %d\nstdout:\n%s\nstderr:\n%s", code, again.Out(), again.Err())
	}
	checkFile(t, again, second, dir, "data.bin", size, sum)
	st := again.Line(t, statsRE)
	if resumed := atoi(t, st[3]); resumed < size/5 {
		t.Errorf("resumed at %d of %d: the partial file was not used", resumed, size)
	}
}

// TestThroughNaming: the receiver binds its name at a naming service, and the sender finds it
// there (-naming URL -name NAME) instead of by address.
func TestThroughNaming(t *testing.T) {
	ns, err := naming.NewServer(naming.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(ns)
	defer hs.Close()
	defer ns.Close()
	dir := filepath.Join(t.TempDir(), "received")
	receiver := start(t, "serve", "-listen", "127.0.0.1:0", "-dir", dir, "-naming", hs.URL, "-name", "files")
	receiver.Line(t, listeningLine)
	const size = 3 << 20
	path, sum := randomFile(t, t.TempDir(), "named.bin", size, 7)
	sender := start(t, "send", "-naming", hs.URL, "-name", "files", "-progress", "none", path)
	if code := sender.Wait(t); code != 0 {
		t.Fatalf("sender exited %d\nstdout:\n%s\nstderr:\n%s", code, sender.Out(), sender.Err())
	}
	checkFile(t, sender, receiver, dir, "named.bin", size, sum)
	bad := start(t, "send", "-naming", hs.URL, "-to", "127.0.0.1:1", "-name", "files", path)
	if code := bad.Wait(t); code != 2 {
		t.Fatalf("-to with -naming exited %d, want 2", code)
	}
}
