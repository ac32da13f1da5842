package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ftsl-go/ftsl/internal/testkit"
	"github.com/ftsl-go/ftsl/oneway"
)

// syncBuffer collects a program's output lines for several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testReceiver is a receiver serving in this process on a loopback port.
type testReceiver struct {
	addr string
	dir  string
	root *os.Root
	r    *receiver
	out  *syncBuffer
	log  *syncBuffer
}

// startReceiver serves a fresh directory until the test ends, and then checks that the receiver
// and its sessions left no goroutine behind.
func startReceiver(t *testing.T) *testReceiver {
	t.Helper()
	base := runtime.NumGoroutine()
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := oneway.Listen("127.0.0.1:0", receiverSessionConfig(oneway.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	tr := &testReceiver{addr: ln.Addr().String(), dir: dir, root: root, out: &syncBuffer{}, log: &syncBuffer{}}
	tr.r = newReceiver(root, true, tr.out, tr.log)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- tr.r.serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		root.Close()
		testkit.CheckGoroutines(t, base)
	})
	return tr
}

// dialRaw opens a session with the receiver to speak the protocol by hand.
func dialRaw(t *testing.T, addr string) *oneway.Session {
	t.Helper()
	ctx := testkit.Ctx(t)
	s, err := oneway.Dial(ctx, addr, oneway.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Abort()
		<-s.Done()
	})
	return s
}

// recvError waits for the receiver's ERROR message about transfer xfer, and returns its reason.
func recvError(t *testing.T, s *oneway.Session, xfer uint32) string {
	t.Helper()
	d, err := s.Recv(testkit.Ctx(t))
	if err != nil {
		t.Fatalf("waiting for ERROR: %v", err)
	}
	x, why, err := parseError(d.Data)
	if err != nil || x != xfer {
		t.Fatalf("got %x, want ERROR for transfer %d (%v)", d.Data, xfer, err)
	}
	_ = d.Confirm()
	return why
}

// TestReceiverRefusesBadNames: a sender that skips its own check still cannot write outside the
// directory; the OFFER's ticket fails with the reason and an ERROR says it too.
func TestReceiverRefusesBadNames(t *testing.T) {
	tr := startReceiver(t)
	s := dialRaw(t, tr.addr)
	ctx := testkit.Ctx(t)
	for i, name := range []string{"../evil", "/tmp/evil", "a/../../evil", "", "a\x00b", strings.Repeat("x", maxNameLen+1), partialPrefix + "x"} {
		x := uint32(i + 1)
		tk, err := s.Send(ctx, offer{xfer: x, size: 3, name: name}.encode(), oneway.AckProcessed)
		if err != nil {
			t.Fatal(err)
		}
		st, err := tk.Wait(ctx)
		var rej *oneway.RejectedError
		if st != oneway.StatusFailed || !errors.As(err, &rej) || !strings.Contains(rej.Reason, errBadName.Error()) {
			t.Errorf("OFFER %q: %v, %v; want failed, rejected as a bad name", name, st, err)
		}
		if why := recvError(t, s, x); !strings.Contains(why, errBadName.Error()) {
			t.Errorf("OFFER %q: ERROR says %q", name, why)
		}
	}
	// Nothing was created, in the directory or beside it.
	entries, err := os.ReadDir(tr.dir)
	if err != nil || len(entries) != 0 {
		t.Errorf("directory holds %v (%v), want nothing", entries, err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(tr.dir), "evil")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file escaped the directory: %v", err)
	}
}

// TestReceiverRefusesChecksumMismatch: the verifying step deletes a file whose bytes do not hash
// to what the sender announced, and creates nothing under its name; the right hash renames it.
func TestReceiverRefusesChecksumMismatch(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	r := newReceiver(root, true, io.Discard, io.Discard)
	data := []byte("the bytes that arrived")
	for _, tc := range []struct {
		name string
		sum  [sha256.Size]byte
		ok   bool
	}{
		{"wrong/sum.txt", sha256.Sum256([]byte("the bytes that were sent")), false},
		{"right/sum.txt", sha256.Sum256(data), true},
	} {
		o := offer{xfer: 1, size: uint64(len(data)), fp: sha256.Sum256(data), name: tc.name}
		tf, _, err := r.offer(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := tf.write(0, data); err != nil {
			t.Fatal(err)
		}
		err = r.finish(tf, tc.sum)
		_, statErr := root.Stat(tc.name)
		_, partialErr := root.Stat(tf.partial)
		switch {
		case !tc.ok && !errors.Is(err, errChecksum):
			t.Errorf("%s: finish = %v, want errChecksum", tc.name, err)
		case !tc.ok && (!errors.Is(statErr, fs.ErrNotExist) || !errors.Is(partialErr, fs.ErrNotExist)):
			t.Errorf("%s: after a mismatch the file (%v) or its partial (%v) is still there", tc.name, statErr, partialErr)
		case tc.ok && err != nil:
			t.Errorf("%s: finish = %v", tc.name, err)
		case tc.ok:
			if got, _ := root.ReadFile(tc.name); !bytes.Equal(got, data) || !errors.Is(partialErr, fs.ErrNotExist) {
				t.Errorf("%s: holds %q (partial: %v), want %q and no partial", tc.name, got, partialErr, data)
			}
		}
		// A transfer is finished once, whatever the outcome.
		if err := tf.write(uint64(len(data)), nil); err == nil {
			t.Errorf("%s: a finished transfer still takes chunks", tc.name)
		}
	}
}

// TestChecksumMismatchOverSession: a DONE whose hash differs fails the sender's ticket with the
// receiver's reason, and the receiver keeps nothing.
func TestChecksumMismatchOverSession(t *testing.T) {
	tr := startReceiver(t)
	s := dialRaw(t, tr.addr)
	ctx := testkit.Ctx(t)
	data := []byte("hello")
	if _, err := s.Send(ctx, offer{xfer: 1, size: 5, fp: sha256.Sum256(data), name: "f"}.encode(), oneway.AckProcessed); err != nil {
		t.Fatal(err)
	}
	d, err := s.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if x, off, err := parseOffset(d.Data); err != nil || x != 1 || off != 0 {
		t.Fatalf("want OFFSET 1 0, got %x", d.Data)
	}
	_ = d.Confirm()
	var hdr [chunkHdrLen]byte
	putChunkHeader(hdr[:], 1, 0)
	if _, err := s.SendParts(ctx, hdr[:], data, oneway.AckNone); err != nil {
		t.Fatal(err)
	}
	tk, err := s.Send(ctx, encodeDone(1, sha256.Sum256([]byte("world"))), oneway.AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	st, err := tk.Wait(ctx)
	var rej *oneway.RejectedError
	if st != oneway.StatusFailed || !errors.As(err, &rej) || !strings.Contains(rej.Reason, errChecksum.Error()) {
		t.Fatalf("DONE with the wrong hash: %v, %v; want failed with a sha256 mismatch", st, err)
	}
	if why := recvError(t, s, 1); !strings.Contains(why, errChecksum.Error()) {
		t.Errorf("ERROR says %q", why)
	}
	if entries, _ := os.ReadDir(tr.dir); len(entries) != 0 {
		t.Errorf("the directory holds %v after a mismatch", entries)
	}
	if strings.Contains(tr.out.String(), "received") {
		t.Errorf("the receiver reported %q", tr.out.String())
	}
}

// sendOutput runs send in this process and returns its output and error.
func sendOutput(t *testing.T, to string, paths ...string) (string, error) {
	t.Helper()
	var out syncBuffer
	err := send(testkit.Ctx(t), sendConfig{To: to, Paths: paths, Progress: progressNone, Out: &out, Stats: true})
	return out.String(), err
}

var statsLine = regexp.MustCompile(`(?m)^stats: files=(\d+) bytes=(\d+) resumed=(\d+) sent=(\d+) `)

// stats reads the counters of a -stats line.
func stats(t *testing.T, out string) (bytes, resumed, sent int64) {
	t.Helper()
	m := statsLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no stats line in %q", out)
	}
	n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	return n(m[2]), n(m[3]), n(m[4])
}

// TestResumeFromPartialFile: a receiver that has the start of a file (from a run that died, even
// a receiver restarted since) gets only the rest; a different file of the same name and size
// starts from zero; a partial file whose bytes are wrong is caught by the hash and discarded, and
// the next run sends the whole file.
func TestResumeFromPartialFile(t *testing.T) {
	tr := startReceiver(t)
	src := t.TempDir()
	const size = 3<<20 + 12345
	path := filepath.Join(src, "data.bin")
	if err := writeRandomFile(path, size, 7); err != nil {
		t.Fatal(err)
	}
	content, _ := os.ReadFile(path)
	fp := sha256.Sum256(content[:fingerprintLen])
	partial := partialName("data.bin", size, fp)
	const have = 1<<20 + 777

	t.Run("Resume", func(t *testing.T) {
		if err := tr.root.WriteFile(partial, content[:have], 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := sendOutput(t, tr.addr, path)
		if err != nil {
			t.Fatalf("send: %v\n%s", err, out)
		}
		if !strings.Contains(out, fmt.Sprintf("resuming data.bin at %d\n", have)) {
			t.Errorf("no resuming line in %q", out)
		}
		if _, resumed, sent := stats(t, out); resumed != have || sent != size-have {
			t.Errorf("resumed %d and sent %d bytes, want %d and %d", resumed, sent, have, size-have)
		}
		checkReceived(t, tr, "data.bin", content)
	})
	t.Run("OtherFileSameName", func(t *testing.T) {
		other := bytes.Clone(content)
		other[10] ^= 1 // in the first MiB: another fingerprint
		otherFP := sha256.Sum256(other[:fingerprintLen])
		otherPartial := partialName("data.bin", size, otherFP)
		if err := tr.root.WriteFile(otherPartial, other[:have], 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := sendOutput(t, tr.addr, path)
		if err != nil {
			t.Fatalf("send: %v\n%s", err, out)
		}
		if strings.Contains(out, "resuming") {
			t.Errorf("resumed onto another file's bytes: %q", out)
		}
		if _, resumed, sent := stats(t, out); resumed != 0 || sent != size {
			t.Errorf("resumed %d and sent %d bytes, want 0 and %d", resumed, sent, size)
		}
		// The other file's partial copy is left alone, for its own sender to resume.
		if got, err := tr.root.ReadFile(otherPartial); err != nil || !bytes.Equal(got, other[:have]) {
			t.Errorf("the other file's partial copy changed: %d bytes, %v", len(got), err)
		}
		tr.root.Remove(otherPartial)
		checkReceived(t, tr, "data.bin", content)
	})
	t.Run("CorruptPartial", func(t *testing.T) {
		bad := bytes.Clone(content[:have])
		bad[have-1] ^= 1 // past the fingerprint: only the whole hash can tell
		if err := tr.root.WriteFile(partial, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := sendOutput(t, tr.addr, path)
		if err == nil || !strings.Contains(err.Error(), errChecksum.Error()) {
			t.Fatalf("send onto a corrupt partial file: %v, want a sha256 mismatch\n%s", err, out)
		}
		if _, err := tr.root.Stat(partial); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the corrupt partial file is still there: %v", err)
		}
		out, err = sendOutput(t, tr.addr, path)
		if err != nil {
			t.Fatalf("second send: %v\n%s", err, out)
		}
		if _, resumed, _ := stats(t, out); resumed != 0 {
			t.Errorf("the second send resumed at %d", resumed)
		}
		checkReceived(t, tr, "data.bin", content)
	})
}

// checkReceived checks that the receiver holds name with content, and no partial file.
func checkReceived(t *testing.T, tr *testReceiver, name string, content []byte) {
	t.Helper()
	got, err := tr.root.ReadFile(name)
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("%s: %d bytes (%v), want %d bytes equal to the sent file", name, len(got), err, len(content))
	}
	want := fmt.Sprintf("received %s %d sha256=%x\n", name, len(content), sha256.Sum256(content))
	if !strings.Contains(tr.out.String(), want) {
		t.Errorf("the receiver did not print %q; it printed %q", want, tr.out.String())
	}
	entries, _ := os.ReadDir(tr.dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), partialPrefix) {
			t.Errorf("partial file %s left behind", e.Name())
		}
	}
}

// recvOffset waits for the receiver's OFFSET for transfer xfer and returns it.
func recvOffset(t *testing.T, s *oneway.Session, xfer uint32) uint64 {
	t.Helper()
	d, err := s.Recv(testkit.Ctx(t))
	if err != nil {
		t.Fatalf("waiting for OFFSET: %v", err)
	}
	x, off, err := parseOffset(d.Data)
	if err != nil || x != xfer {
		t.Fatalf("got %x, want OFFSET for transfer %d (%v)", d.Data, xfer, err)
	}
	_ = d.Confirm()
	return off
}

// TestTakeover: a second sender offering a file another session is writing takes it over where
// it is (a sender run again while its dead session still waits to be resumed); the first
// sender's transfer fails with a reason, and the file is completed by the second, correct.
func TestTakeover(t *testing.T) {
	tr := startReceiver(t)
	ctx := testkit.Ctx(t)
	data := bytes.Repeat([]byte("0123456789"), 1000)
	o := offer{xfer: 1, size: uint64(len(data)), fp: sha256.Sum256(data), name: "shared.bin"}
	chunk := func(s *oneway.Session, x uint32, off, end int, level oneway.AckLevel) *oneway.Ticket {
		t.Helper()
		var hdr [chunkHdrLen]byte
		putChunkHeader(hdr[:], x, uint64(off))
		tk, err := s.SendParts(ctx, hdr[:], data[off:end], level)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}

	first := dialRaw(t, tr.addr)
	if _, err := first.Send(ctx, o.encode(), oneway.AckProcessed); err != nil {
		t.Fatal(err)
	}
	if off := recvOffset(t, first, 1); off != 0 {
		t.Fatalf("first OFFSET %d, want 0", off)
	}
	if _, err := chunk(first, 1, 0, 4000, oneway.AckProcessed).Wait(ctx); err != nil {
		t.Fatal(err)
	}

	second := dialRaw(t, tr.addr)
	o.xfer = 9
	if _, err := second.Send(ctx, o.encode(), oneway.AckProcessed); err != nil {
		t.Fatal(err)
	}
	if off := recvOffset(t, second, 9); off != 4000 {
		t.Fatalf("second OFFSET %d, want 4000: the first sender's bytes", off)
	}

	// The first sender is out: its next chunk is refused, and it hears why.
	st, err := chunk(first, 1, 4000, 5000, oneway.AckProcessed).Wait(ctx)
	if st != oneway.StatusFailed || !strings.Contains(fmt.Sprint(err), errSuperseded.Error()) {
		t.Errorf("the first sender's chunk after the takeover: %v, %v; want failed, superseded", st, err)
	}
	if why := recvError(t, first, 1); !strings.Contains(why, errSuperseded.Error()) {
		t.Errorf("the first sender's ERROR says %q", why)
	}

	chunk(second, 9, 4000, len(data), oneway.AckNone)
	tk, err := second.Send(ctx, encodeDone(9, sha256.Sum256(data)), oneway.AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := tk.Wait(ctx); st != oneway.StatusProcessed {
		t.Fatalf("DONE: %v, %v", st, err)
	}
	checkReceived(t, tr, "shared.bin", data)
}
