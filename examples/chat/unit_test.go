package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/testkit"
	"github.com/ftsl-go/ftsl/pubsub"
)

const testInstance = "0123456789abcdef"

func TestDecodeChat(t *testing.T) {
	for _, tc := range []struct {
		in       string
		seq      uint64
		text     string
		malformd bool
	}{
		{in: testInstance + " 1 hello", seq: 1, text: "hello"},
		{in: testInstance + " 42 two  spaces ", seq: 42, text: "two  spaces "},
		{in: testInstance + " 7 ", seq: 7, text: ""},
		{in: testInstance + " 0 zero", malformd: true},
		{in: testInstance + " -1 minus", malformd: true},
		{in: testInstance + " 1", malformd: true},
		{in: "0123456789ABCDEF 1 upper", malformd: true},
		{in: "0123 1 short", malformd: true},
		{in: testInstance + " 99999999999999999999 big", malformd: true},
		{in: "", malformd: true},
	} {
		instance, seq, text, err := decodeChat([]byte(tc.in))
		if tc.malformd {
			if !errors.Is(err, errBadPayload) {
				t.Errorf("decodeChat(%q) = %v, want errBadPayload", tc.in, err)
			}
			continue
		}
		if err != nil || instance != testInstance || seq != tc.seq || text != tc.text {
			t.Errorf("decodeChat(%q) = %q, %d, %q, %v", tc.in, instance, seq, text, err)
		}
		if got := string(encodeChat(instance, seq, text)); got != tc.in {
			t.Errorf("encodeChat gives %q back for %q", got, tc.in)
		}
	}
}

func TestDecodePresence(t *testing.T) {
	for _, kind := range []string{presenceJoin, presenceHere, presenceLeave} {
		k, id, err := decodePresence(encodePresence(kind, testInstance))
		if err != nil || k != kind || id != testInstance {
			t.Errorf("%s: %q %q %v", kind, k, id, err)
		}
	}
	for _, bad := range []string{"", "join", "wave " + testInstance, "join " + testInstance + " extra", "here 12"} {
		if _, _, err := decodePresence([]byte(bad)); !errors.Is(err, errBadPayload) {
			t.Errorf("decodePresence(%q) = %v, want errBadPayload", bad, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(testInstance + " 1 hello"))
	f.Add([]byte("join " + testInstance))
	f.Add([]byte("\xff\xfe 1 \x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if instance, seq, text, err := decodeChat(b); err == nil {
			if got := encodeChat(instance, seq, text); string(got) != string(b) && seq != 0 {
				// Only a number written differently (leading zeros, a plus) may come back otherwise.
				if _, seq2, text2, err := decodeChat(got); err != nil || seq2 != seq || text2 != text {
					t.Fatalf("%q decodes to %q %d %q, which encodes to %q", b, instance, seq, text, got)
				}
			}
		}
		_, _, _ = decodePresence(b)
		if p := printable(string(b)); strings.ContainsFunc(p, unsafeRune) {
			t.Fatalf("printable(%q) = %q", b, p)
		}
	})
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain words":            "plain words",
		"clear\x1b[2Jscreen":     "clear\uFFFD[2Jscreen",
		"tab\there":              "tab here",
		"bell\a\r\n":             "bell\uFFFD\uFFFD\uFFFD",
		"\u202eevil":             "\uFFFDevil",
		"bad \xff utf8":          "bad \uFFFD utf8",
		"c1 \u009b control":      "c1 \uFFFD control",
		"family 👨\u200d👩\u200d👧": "family 👨\u200d👩\u200d👧",
		"日本語":                    "日本語",
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"a", "bob", "Bob_2", "x-y", strings.Repeat("z", maxName)} {
		if err := checkName("name", ok); err != nil {
			t.Errorf("checkName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "a b", "*", ">", "é", strings.Repeat("z", maxName+1)} {
		if err := checkName("room", bad); err == nil || !strings.HasPrefix(err.Error(), "-room ") {
			t.Errorf("checkName(%q) = %v, want an error naming -room", bad, err)
		}
	}
}

func TestReadLines(t *testing.T) {
	long := strings.Repeat("x", maxText+1)
	fits := strings.Repeat("y", maxText)
	in := "one\r\ntwo\n\n" + long + "\n" + fits + "\r\nlast"
	out := make(chan inputLine)
	go readLines(strings.NewReader(in), out)
	var got []string
	for l := range out {
		if l.err != nil {
			got = append(got, "error: "+l.err.Error())
		} else {
			got = append(got, l.text)
		}
	}
	want := []string{"one", "two", "", "error: input line 4 is longer than 16384 bytes: not sent", fits, "last"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// testTTY is a tty drawing into nothing: enough to type into.
func testTTY() *tty {
	return &tty{name: "me", room: "r", lines: make(chan inputLine, 1), w: bufio.NewWriter(io.Discard), byLine: map[*sentLine]*entry{}}
}

func TestKeys(t *testing.T) {
	tt := testTTY()
	typeIn := func(s string) (sent []string, eof bool) {
		for _, b := range []byte(s) {
			line, send, end := tt.key(b)
			if send {
				sent = append(sent, line)
			}
			if end {
				return sent, true
			}
		}
		return sent, false
	}
	for _, tc := range []struct {
		keys string
		want []string
	}{
		{"hello\r", []string{"hello"}},
		{"héllo\x7f\x7f\x7fy\r", []string{"héy"}},               // backspace takes a rune, not a byte
		{"日本\x7fgo\r", []string{"日go"}},                         // three-byte runes
		{"up\x1b[Adown\x1bOB\x1b[1;5C!\r", []string{"updown!"}}, // arrows and keys with modifiers are skipped
		{"one two\x17three\r", []string{"one three"}},           // Ctrl-W: the last word
		{"gone\x15kept\r", []string{"kept"}},                    // Ctrl-U: the whole line
		{"a\x01\x02b\r", []string{"ab"}},                        // other control keys are ignored
		{"x\x04\r", []string{"x"}},                              // Ctrl-D ends nothing while a line is typed
	} {
		sent, eof := typeIn(tc.keys)
		if eof || !slices.Equal(sent, tc.want) {
			t.Errorf("keys %q sent %q (eof %v), want %q", tc.keys, sent, eof, tc.want)
		}
	}
	if _, eof := typeIn("\x04"); !eof {
		t.Error("Ctrl-D on an empty line does not end the input")
	}
}

func TestRows(t *testing.T) {
	for _, tc := range []struct {
		s     string
		width int
		rows  int
	}{
		{"", 80, 1},
		{strings.Repeat("a", 80), 80, 1},
		{strings.Repeat("a", 81), 80, 2},
		{strings.Repeat("日", 40), 80, 1},
		{strings.Repeat("日", 41), 80, 2},
		{"e\u0301" + strings.Repeat("a", 79), 80, 1}, // a combining accent takes no cell
	} {
		if got := rowsFor(tc.s, tc.width); got != tc.rows {
			t.Errorf("rowsFor(%q, %d) = %d, want %d", tc.s, tc.width, got, tc.rows)
		}
	}
}

// marks records the marks of a member's line in the order they came.
type marks struct {
	mu        sync.Mutex
	seen      []mark
	delivered chan struct{} // closed at the delivered mark
	done      chan struct{} // closed at the final mark
}

func newMarks() *marks { return &marks{delivered: make(chan struct{}), done: make(chan struct{})} }

func (r *marks) on(l *sentLine) {
	k, _, _ := l.State()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, k)
	switch k {
	case markDelivered:
		close(r.delivered)
	case markProcessed, markFailed:
		close(r.done)
	}
}

// TestMarks follows a line through its marks, with another member present, alone, and with a
// member that fails it.
func TestMarks(t *testing.T) {
	hub, err := startHub("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hub.close(ctx); err != nil {
			t.Error(err)
		}
	}()
	ctx := testkit.Ctx(t)
	await := func(t *testing.T, ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatal("no " + what)
		}
	}
	say := func(t *testing.T, m *member, r *marks, text string) *sentLine {
		t.Helper()
		l, err := m.Say(ctx, text)
		if err != nil {
			t.Fatal(err)
		}
		await(t, r.done, "outcome")
		return l
	}
	joinRoom := func(t *testing.T, name, room string, r *marks, lines chan<- chatLine) *member {
		t.Helper()
		cfg := memberConfig{Hub: hub.addr, Name: name, Room: room, OnMark: r.on}
		if lines != nil {
			cfg.OnLine = func(l chatLine) { lines <- l }
		}
		m, err := join(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Leave(ctx) })
		return m
	}

	t.Run("Processed", func(t *testing.T) {
		got := make(chan chatLine) // bob is handed the line, and reads it when the test takes it
		ra := newMarks()
		alice := joinRoom(t, "alice", "one", ra, nil)
		bob := joinRoom(t, "bob", "one", newMarks(), got)
		if err := alice.WaitOthers(ctx, 1); err != nil {
			t.Fatal(err)
		}
		l, err := alice.Say(ctx, "hi bob")
		if err != nil {
			t.Fatal(err)
		}
		await(t, ra.delivered, "delivered mark")
		if k, _, _ := l.State(); k != markDelivered {
			t.Errorf("mark %v once bob was handed the line, want delivered", k)
		}
		g := <-got
		await(t, ra.done, "outcome")
		if want := []mark{markSent, markDelivered, markProcessed}; !slices.Equal(ra.seen, want) {
			t.Errorf("marks %v, want %v", ra.seen, want)
		}
		if matched, processed := l.Others(); matched != 1 || processed != 1 {
			t.Errorf("processed by %d/%d, want 1/1 (alice counted out)", processed, matched)
		}
		if g.From != "alice" || g.Seq != 1 || g.Text != "hi bob" {
			t.Errorf("bob got %+v", g)
		}
		if names, _ := bob.Others(); !slices.Equal(names, []string{"alice"}) {
			t.Errorf("bob sees %q present", names)
		}
	})
	t.Run("Alone", func(t *testing.T) {
		r := newMarks()
		solo := joinRoom(t, "solo", "two", r, nil)
		l := say(t, solo, r, "anyone?")
		if k, _, err := l.State(); k != markProcessed || err != nil {
			t.Errorf("mark %v, %v; want processed", k, err)
		}
		if matched, processed := l.Others(); matched != 0 || processed != 0 {
			t.Errorf("processed by %d/%d, want 0/0", processed, matched)
		}
	})
	t.Run("Failed", func(t *testing.T) {
		grump, err := pubsub.Dial(ctx, hub.addr, pubsub.Config{Name: "grump"})
		if err != nil {
			t.Fatal(err)
		}
		defer grump.Abort()
		if _, err := grump.Subscribe("chat.three", func(context.Context, *pubsub.Msg) error {
			return errors.New("ftsl: not reading that")
		}); err != nil {
			t.Fatal(err)
		}
		r := newMarks()
		alice := joinRoom(t, "alice", "three", r, nil)
		l := say(t, alice, r, "read me")
		if k, _, _ := l.State(); k != markFailed {
			t.Fatalf("mark %v, want failed", k)
		}
		if got, want := l.Reason(), "failed at grump (not reading that)"; got != want {
			t.Errorf("reason %q, want %q", got, want)
		}
	})
}
