package snapshot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/testkit"
	"github.com/ftsl-go/ftsl/oneway"
)

// tinySnapshot is FORMAT.md's example: an empty core state and two bytes of application data.
func tinySnapshot(t testing.TB) *Snapshot {
	var s Snapshot
	if err := PutCore(&s, &core.ListenerState{}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBytes("app", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	return &s
}

func encode(t testing.TB, s *Snapshot) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := s.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) || n != int64(s.Size()) {
		t.Fatalf("WriteTo wrote %d bytes, reported %d, Size says %d", buf.Len(), n, s.Size())
	}
	return buf.Bytes()
}

// frozen is a oneway server frozen with traffic in flight, and the client that will resume.
type frozen struct {
	snap   *Snapshot
	client *oneway.Session
	ticket *oneway.Ticket // the client's message the server had not processed
	addr   func(string)   // points the client's resolver elsewhere
}

// freezeOneway starts a oneway listener and a client, leaves messages in flight both ways,
// and freezes the listener. The old listener is closed; the client is aborted at the end.
func freezeOneway(t *testing.T) *frozen {
	t.Helper()
	ctx := testkit.Ctx(t)
	ln, err := oneway.Listen("127.0.0.1:0", oneway.Config{MaxInFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	var addr atomic.Value
	addr.Store(ln.Addr().String())
	resolve := func(context.Context, string) (string, error) { return addr.Load().(string), nil }
	ccfg := oneway.Config{Core: core.Config{Resolver: core.ResolverFunc(resolve), BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond}}
	c, err := oneway.Dial(ctx, "the server", ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Abort()
		<-c.Done()
	})
	s, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, []byte("first"), oneway.AckProcessed); err != nil {
		t.Fatal(err)
	}
	tk, err := c.Send(ctx, []byte("second"), oneway.AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(ctx, []byte("to the client"), oneway.AckDelivered); err != nil {
		t.Fatal(err)
	}
	d, err := s.Recv(ctx)
	if err != nil || string(d.Data) != "first" {
		t.Fatalf("server got %v %v", d, err)
	}
	if err := d.Confirm(); err != nil {
		t.Fatal(err)
	}
	snap, err := Freeze(ctx, ln)
	if err != nil {
		t.Fatal(err)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return &frozen{snap: snap, client: c, ticket: tk, addr: func(a string) { addr.Store(a) }}
}

func TestPutGet(t *testing.T) {
	var s Snapshot
	if err := s.PutBytes("app", []byte("one")); err != nil {
		t.Fatal(err)
	}
	st := core.ListenerState{Sessions: []core.SessionState{{ID: 3, Accepted: true}}}
	if err := PutCore(&s, &st); err != nil {
		t.Fatal(err)
	}
	in := []byte("two")
	if err := s.PutBytes("app", in); err != nil { // replaces, keeps its place
		t.Fatal(err)
	}
	in[0] = 'X' // PutBytes took a copy
	if got := s.Names(); !reflect.DeepEqual(got, []string{"app", "core"}) {
		t.Fatalf("names %v", got)
	}
	if b, err := s.Bytes("app"); err != nil || string(b) != "two" {
		t.Fatalf("app: %q %v", b, err)
	}
	got, err := Core(&s)
	if err != nil || !reflect.DeepEqual(got, st) {
		t.Fatalf("core: %+v %v", got, err)
	}
	if _, err := Oneway(&s); !errors.Is(err, ErrNoSection) || !strings.Contains(err.Error(), `"oneway"`) {
		t.Fatalf("oneway: %v", err)
	}
	if _, err := s.Bytes("nope"); !errors.Is(err, ErrNoSection) {
		t.Fatalf("Bytes of a missing section: %v", err)
	}
	if err := s.PutBytes("garbage", []byte{9, 9}); err != nil {
		t.Fatal(err)
	}
	if err := s.Get("garbage", &st); !errors.Is(err, core.ErrInvalidState) || !strings.Contains(err.Error(), `section "garbage"`) {
		t.Fatalf("Get of a bad section: %v", err)
	}
	for _, name := range []string{"", "App", "a b", "a/b", "é", strings.Repeat("x", 33)} {
		if err := s.PutBytes(name, nil); !errors.Is(err, ErrInvalidName) {
			t.Errorf("name %q: %v", name, err)
		}
		if err := s.Put(name, &st); !errors.Is(err, ErrInvalidName) {
			t.Errorf("name %q: %v", name, err)
		}
	}
	if err := s.PutBytes(strings.Repeat("z", 32)+"", nil); err != nil {
		t.Errorf("a 32-byte name: %v", err)
	}
	if err := s.Put("core", nil); err == nil {
		t.Error("Put of nil succeeded")
	}
	if err := s.Put("core", (*core.ListenerState)(nil)); err == nil {
		t.Error("Put of a nil pointer succeeded")
	}
	if err := s.Get("core", (*core.ListenerState)(nil)); err == nil {
		t.Error("Get into a nil pointer succeeded")
	}
	if err := PutOneway(&s, nil); err == nil {
		t.Error("PutOneway of nil succeeded")
	}
	// A state that does not encode changes nothing, even when its other part does.
	before := s.Names()
	bad := oneway.ListenerState{Sessions: []oneway.SessionState{{Attempts: []oneway.AttemptState{{Failed: -1}}}}}
	if err := PutOneway(&s, &bad); !errors.Is(err, core.ErrInvalidState) {
		t.Fatalf("PutOneway of a bad state: %v", err)
	}
	if !reflect.DeepEqual(s.Names(), before) {
		t.Fatal("a refused PutOneway put a section")
	}
}

func TestRoundTrip(t *testing.T) {
	f := freezeOneway(t)
	if got := f.snap.Names(); !reflect.DeepEqual(got, []string{"core", "oneway"}) {
		t.Fatalf("sections %v", got)
	}
	if err := f.snap.PutBytes("app", bytes.Repeat([]byte("app state "), 10000)); err != nil {
		t.Fatal(err)
	}
	b := encode(t, f.snap)
	got, err := Read(bytes.NewReader(b), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, f.snap) {
		t.Fatal("read back differently")
	}
	want, err := Oneway(f.snap)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Oneway(got)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, want) || len(st.Sessions) != 1 || len(st.Sessions[0].Tickets) != 1 {
		t.Fatalf("state %+v", st)
	}
	// An empty snapshot is a file too.
	e := encode(t, &Snapshot{})
	if s, err := Read(bytes.NewReader(e), int64(len(e))); err != nil || len(s.Names()) != 0 {
		t.Fatalf("empty snapshot: %v %v", s, err)
	}
}

// craft returns b with the bytes at off replaced, and the trailer recomputed if fix.
func craft(b []byte, off int, fix bool, repl ...byte) []byte {
	b = bytes.Clone(b)
	copy(b[off:], repl)
	if fix {
		binary.BigEndian.PutUint64(b[len(b)-trailerLen:], xxhash.Sum64(b[:len(b)-trailerLen]))
	}
	return b
}

func TestReadErrors(t *testing.T) {
	tiny := encode(t, tinySnapshot(t))
	// tiny: header 0-15, "core" section 16-38 (data 29-30, checksum 31-38), "app" 39-60
	// (name 40-42, length 43-50, data 51-52, checksum 53-60), trailer 61-68.
	if len(tiny) != 69 || string(tiny[17:21]) != "core" || string(tiny[40:43]) != "app" {
		t.Fatalf("tiny file changed: % x", tiny)
	}
	dup := encode(t, &Snapshot{sections: []section{{"app", []byte("a")}, {"app", []byte("b")}}})
	upper := encode(t, &Snapshot{sections: []section{{"App", []byte("a")}}})
	longName := encode(t, &Snapshot{sections: []section{{strings.Repeat("x", 32), nil}}})
	hugeData := craft(tiny, 43, true, 0, 0, 0, 0, 0x40, 0, 0, 0)
	for name, tc := range map[string]struct {
		in   []byte
		max  int64
		want error
		text string
	}{
		"text file":       {[]byte("hello, world\n"), 0, ErrNotSnapshot, `"hello, w"`},
		"wrong magic":     {craft(tiny, 7, false, 'X'), 0, ErrNotSnapshot, "FTSLSNAX"},
		"short non-magic": {[]byte("FX"), 0, ErrNotSnapshot, ""},
		"version 2":       {craft(tiny, 8, true, 0, 2), 0, ErrNewerVersion, "format version 2, this reader reads version 1"},
		"version 0":       {craft(tiny, 8, true, 0, 0), 0, ErrCorrupt, "format version 0"},
		"flags":           {craft(tiny, 10, true, 0, 1), 0, ErrCorrupt, "flags 0x0001"},
		"count huge":      {craft(tiny, 12, true, 0xff, 0xff, 0xff, 0xff), 0, ErrTooLarge, "4294967295 sections"},
		"count low":       {craft(tiny, 15, true, 1), 0, ErrCorrupt, "trailer at offset 39"},
		"count high":      {craft(tiny, 15, true, 3), 0, ErrCorrupt, "section 2"},
		"name length 0":   {craft(tiny, 39, true, 0), 0, ErrCorrupt, "section 1 at offset 39: name length 0"},
		"name length 33":  {craft(tiny, 39, true, 33), 0, ErrCorrupt, "name length 33"},
		"invalid name":    {upper, 0, ErrCorrupt, `section 0 "App" at offset 16`},
		"duplicate name":  {dup, 0, ErrCorrupt, `section 1 "app" at offset 37: a second section`},
		"data checksum":   {craft(tiny, 52, true, 'o'), 0, ErrCorrupt, `section 1 "app" at offset 39: checksum`},
		"name checksum":   {craft(tiny, 41, true, 'b'), 0, ErrCorrupt, `section 1 "abp"`},
		"trailer":         {craft(tiny, 68, false, tiny[68]^1), 0, ErrCorrupt, "trailer at offset 61"},
		"trailing byte":   {append(bytes.Clone(tiny), 0), 0, ErrCorrupt, "bytes follow the trailer at offset 69"},
		"data length":     {hugeData, 0, ErrTooLarge, `section 1 "app" at offset 39: 1073741824 bytes`},
		"past max":        {longName, 50, ErrTooLarge, "data length at offset 49: the file goes past 50 bytes"},
		"length past max": {tiny, 60, ErrTooLarge, `section 1 "app" at offset 39: 2 bytes of data`},
		"cut in data":     {tiny[:52], 0, ErrTruncated, `section 1 "app" at offset 39: the input ends after 1 of its 2 bytes`},
		"cut in header":   {tiny[:11], 0, ErrTruncated, "header at offset 0"},
		"cut in magic":    {tiny[:5], 0, ErrTruncated, "header at offset 0: the input ends after 5"},
		"cut at trailer":  {tiny[:61], 0, ErrTruncated, "trailer at offset 61"},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := Read(bytes.NewReader(tc.in), tc.max)
			if s != nil || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v about %q", err, tc.want, tc.text)
			}
		})
	}
	// A reader error is passed on, not taken for a short file.
	boom := errors.New("disk on fire")
	if _, err := Read(io.MultiReader(bytes.NewReader(tiny[:30]), &errReader{boom}), 0); !errors.Is(err, boom) {
		t.Fatalf("reader error: %v", err)
	}
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

// TestEveryPrefixTruncated: a file cut anywhere reads as truncated.
func TestEveryPrefixTruncated(t *testing.T) {
	for _, b := range [][]byte{encode(t, tinySnapshot(t)), encode(t, freezeOneway(t).snap)} {
		for n := range len(b) {
			if _, err := Read(bytes.NewReader(b[:n]), 0); !errors.Is(err, ErrTruncated) {
				t.Fatalf("%d bytes of %d: got %v, want ErrTruncated", n, len(b), err)
			}
		}
	}
}

// TestEveryByteFlipRefused: no single damaged byte reads as a snapshot.
func TestEveryByteFlipRefused(t *testing.T) {
	check := func(b []byte, xors []byte) {
		for i := range b {
			for _, x := range xors {
				c := bytes.Clone(b)
				c[i] ^= x
				_, err := Read(bytes.NewReader(c), 0)
				if err == nil {
					t.Fatalf("byte %d of %d flipped by %#02x: read without error", i, len(b), x)
				}
				if !errors.Is(err, ErrNotSnapshot) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) &&
					!errors.Is(err, ErrNewerVersion) && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("byte %d flipped by %#02x: %v matches no sentinel", i, x, err)
				}
			}
		}
	}
	all := make([]byte, 255)
	for i := range all {
		all[i] = byte(i + 1)
	}
	check(encode(t, tinySnapshot(t)), all)
	check(encode(t, freezeOneway(t).snap), []byte{0x01, 0x80, 0xff})
}

// TestReadAllocation: a file that declares a huge section but holds a few bytes costs a few
// bytes, not what it declares.
func TestReadAllocation(t *testing.T) {
	b := craft(encode(t, tinySnapshot(t)), 43, false, 0, 0, 0, 0, 0x3f, 0, 0, 0) // "app": ~1 GB
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Read(bytes.NewReader(b), 0)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("got %v", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("reading %d bytes allocated %d", len(b), n)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.snap")
	f := freezeOneway(t)
	if err := f.snap.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode())
	}
	got, err := ReadFile(path)
	if err != nil || !reflect.DeepEqual(got, f.snap) {
		t.Fatalf("read back: %v", err)
	}
	// Overwriting leaves one file, the new one, and nothing beside it.
	tiny := tinySnapshot(t)
	if err := tiny.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadFile(path); err != nil || !reflect.DeepEqual(got, tiny) {
		t.Fatalf("read back the second: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("directory holds %d files", len(ents))
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if err := tiny.WriteFile(filepath.Join(dir, "no such dir", "x.snap")); err == nil {
		t.Fatal("wrote into a directory that does not exist")
	}
	chunk := make([]byte, 64<<20)
	big := &Snapshot{}
	for i := range DefaultMaxBytes / len(chunk) {
		big.sections = append(big.sections, section{fmt.Sprint(i), chunk}) // the bytes are never written
	}
	if err := big.WriteFile(path); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a snapshot ReadFile would refuse: %v", err)
	}
}

// TestWriteFileCrash: a crash between writing the temporary file and renaming it leaves the old
// file whole and readable, and does not stop the next WriteFile.
func TestWriteFileCrash(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.snap")
	old := tinySnapshot(t)
	if err := old.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	// What the crashed WriteFile left: its temporary file, written in part.
	f := freezeOneway(t)
	b := encode(t, f.snap)
	tmp, err := os.CreateTemp(dir, ".server.snap.tmp*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.Write(b[:len(b)/2]); err != nil {
		t.Fatal(err)
	}
	_ = tmp.Close()
	got, err := ReadFile(path)
	if err != nil || !reflect.DeepEqual(got, old) {
		t.Fatalf("the old file after a crash: %v", err)
	}
	if _, err := ReadFile(tmp.Name()); !errors.Is(err, ErrTruncated) {
		t.Fatalf("the crashed write's file: %v", err)
	}
	if err := f.snap.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadFile(path); err != nil || !reflect.DeepEqual(got, f.snap) {
		t.Fatalf("after the next write: %v", err)
	}
}

// server is an Exporter of any state, recording whether it was paused.
type server[S any] struct {
	st     S
	paused bool
	err    error
}

func (s *server[S]) Pause(context.Context) error { s.paused = true; return s.err }
func (s *server[S]) Export() (S, error)          { return s.st, nil }

// hubState stands for a layer above oneway: its oneway part and its own.
type hubState struct {
	Oneway oneway.ListenerState
	Topics string
}

func (h *hubState) SaveTo(s *Snapshot) error {
	if err := PutOneway(s, &h.Oneway); err != nil {
		return err
	}
	return s.PutBytes("pubsub", []byte(h.Topics))
}

// valueSaver implements Saver on its value.
type valueSaver struct{ n byte }

func (v valueSaver) SaveTo(s *Snapshot) error { return s.PutBytes("v", []byte{v.n}) }

func TestFreeze(t *testing.T) {
	ctx := testkit.Ctx(t)
	// Real listeners: Freeze infers the state type from the listener.
	cln, err := core.Listen("127.0.0.1:0", core.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cln.Close()
	s, err := Freeze(ctx, cln)
	if err != nil || !reflect.DeepEqual(s.Names(), []string{"core"}) {
		t.Fatalf("core listener: %v %v", s, err)
	}
	if _, err := Freeze(ctx, cln); !errors.Is(err, core.ErrSessionMoved) {
		t.Fatalf("second freeze: %v", err)
	}
	f := freezeOneway(t) // *oneway.Listener
	if !reflect.DeepEqual(f.snap.Names(), []string{"core", "oneway"}) {
		t.Fatalf("oneway listener: %v", f.snap.Names())
	}

	hub := &server[hubState]{st: hubState{Topics: "a.b"}}
	s, err = Freeze(ctx, hub)
	if err != nil || !reflect.DeepEqual(s.Names(), []string{"core", "oneway", "pubsub"}) {
		t.Fatalf("a Saver: %v %v", s, err)
	}
	s, err = Freeze(ctx, &server[valueSaver]{st: valueSaver{7}})
	if b, _ := s.Bytes("v"); err != nil || !bytes.Equal(b, []byte{7}) {
		t.Fatalf("a Saver by value: %v", err)
	}
	unknown := &server[int]{st: 3}
	if _, err := Freeze(ctx, unknown); err == nil || !strings.Contains(err.Error(), "type int") || unknown.paused {
		t.Fatalf("a state of no known type: %v (paused %v)", err, unknown.paused)
	}
	boom := errors.New("no")
	if _, err := Freeze(ctx, &server[core.ListenerState]{err: boom}); !errors.Is(err, boom) {
		t.Fatalf("pause error: %v", err)
	}
	bad := &server[oneway.ListenerState]{st: oneway.ListenerState{Sessions: []oneway.SessionState{{Tickets: []oneway.TicketState{{Level: 3}}}}}}
	if _, err := Freeze(ctx, bad); !errors.Is(err, core.ErrInvalidState) {
		t.Fatalf("a state that does not encode: %v", err)
	}
}

// TestRestore moves a oneway server through a file: the client resumes at the new address,
// the server's ticket carries over and the client's unprocessed message arrives.
func TestRestore(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() { testkit.CheckGoroutines(t, base) }) // after the client's abort
	ctx := testkit.Ctx(t)
	f := freezeOneway(t)
	path := filepath.Join(t.TempDir(), "server.snap")
	if err := f.snap.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	snap, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Oneway(snap)
	if err != nil {
		t.Fatal(err)
	}
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, sessions, err := oneway.NewListenerFrom(nl, oneway.Config{MaxInFlight: 2}, st)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if len(sessions) != 1 || len(sessions[0].Tickets()) != 1 {
		t.Fatalf("imported %d sessions", len(sessions))
	}
	srv, tk := sessions[0], sessions[0].Tickets()[0]
	f.addr(ln.Addr().String())
	if err := ln.Continue(); err != nil {
		t.Fatal(err)
	}
	d, err := srv.Recv(ctx)
	if err != nil || string(d.Data) != "second" {
		t.Fatalf("server got %v %v", d, err)
	}
	if err := d.Confirm(); err != nil {
		t.Fatal(err)
	}
	if st, err := f.ticket.Wait(ctx); st != oneway.StatusProcessed || err != nil {
		t.Fatalf("client's ticket: %v %v", st, err)
	}
	m, err := f.client.Recv(ctx)
	if err != nil || string(m.Data) != "to the client" {
		t.Fatalf("client got %v %v", m, err)
	}
	if st, err := tk.Wait(ctx); st != oneway.StatusDelivered || err != nil {
		t.Fatalf("server's imported ticket: %v %v", st, err)
	}
}

// TestFormatDump: FORMAT.md's example dump is what the code writes.
func TestFormatDump(t *testing.T) {
	doc, err := os.ReadFile("FORMAT.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- dump -->\n```\n", "```\n<!-- /dump -->"
	i, j := bytes.Index(doc, []byte(begin)), bytes.Index(doc, []byte(end))
	if i < 0 || j < i {
		t.Fatal("FORMAT.md has no dump between <!-- dump --> and <!-- /dump -->")
	}
	got := string(doc[i+len(begin) : j])
	want := hexDump(encode(t, tinySnapshot(t)))
	if got != want {
		t.Fatalf("FORMAT.md's dump:\n%s\nthe code writes:\n%s", got, want)
	}
}

// hexDump is `hexdump -C` without its last line.
func hexDump(b []byte) string {
	var sb strings.Builder
	for off := 0; off < len(b); off += 16 {
		line := b[off:min(off+16, len(b))]
		fmt.Fprintf(&sb, "%08x ", off)
		for k := range 16 {
			if k == 8 {
				sb.WriteByte(' ')
			}
			if k < len(line) {
				fmt.Fprintf(&sb, " %02x", line[k])
			} else {
				sb.WriteString("   ")
			}
		}
		sb.WriteString("  |")
		for _, c := range line {
			if c < 0x20 || c > 0x7e {
				c = '.'
			}
			sb.WriteByte(c)
		}
		sb.WriteString("|\n")
	}
	return sb.String()
}

func FuzzRead(f *testing.F) {
	f.Add(encode(f, tinySnapshot(f)))
	f.Add(encode(f, &Snapshot{}))
	f.Add(encode(f, &Snapshot{sections: []section{{"a", nil}, {"b.c-d_e", []byte{0}}}}))
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Read(bytes.NewReader(b), 1<<20)
		if err != nil {
			if s != nil {
				t.Fatal("a snapshot with an error")
			}
			for _, e := range []error{ErrNotSnapshot, ErrTruncated, ErrCorrupt, ErrNewerVersion, ErrTooLarge} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("%v matches no sentinel", err)
		}
		// Whatever reads is exactly what writing it gives.
		var out bytes.Buffer
		if _, err := s.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("read %x, written back as %x", b, out.Bytes())
		}
		for _, name := range s.Names() {
			if checkName(name) != nil {
				t.Fatalf("read an invalid name %q", name)
			}
		}
	})
}
