package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"unicode/utf8"
)

// tty is the ui on a terminal: the line being typed stays at the bottom, what is said appears
// above it as it comes, and the mark of each line sent is updated in place.
//
// It draws with a handful of ANSI sequences that every terminal in use knows: erase the line
// (CSI 2K), cursor up (CSI nA), save and restore the cursor (ESC 7, ESC 8). To update a mark it
// moves up as many rows as were printed since that line, which it counts (lines that wrap take
// several); a line scrolled off the screen keeps the mark it had, and a failure is said again
// below.
type tty struct {
	out     *os.File
	restore func()
	room    string
	name    string
	color   bool
	lines   chan inputLine
	once    sync.Once

	mu      sync.Mutex // the screen and the line being typed
	w       *bufio.Writer
	shown   []*entry // the last lines printed, oldest first: at most maxShown
	byLine  map[*sentLine]*entry
	typed   []rune
	ended   bool // the input ended: nothing more is typed
	closed  bool // the terminal was given back: marks stay as they are
	pending []byte
	esc     int // 0, or where an escape sequence being skipped is: 1 after ESC, 2 inside CSI or SS3
}

// entry is a line on the screen.
type entry struct {
	from string // "" for a notice
	text string
	own  *sentLine
	rows int // the screen rows it took when printed
}

// maxShown bounds the lines tty remembers; no screen is that tall.
const maxShown = 256

// newTTY takes the terminal if stdin and stdout are both one and raw mode works; otherwise it
// returns an error and chat falls back to plain lines.
func newTTY(stdin io.Reader, stdout io.Writer, room, name string) (*tty, error) {
	in, ok1 := stdin.(*os.File)
	out, ok2 := stdout.(*os.File)
	if !ok1 || !ok2 || !isTerminal(in) || !isTerminal(out) {
		return nil, errors.New("not a terminal")
	}
	if _, _, err := termSize(out); err != nil {
		return nil, err
	}
	restore, err := makeRaw(in)
	if err != nil {
		return nil, err
	}
	t := &tty{
		out: out, restore: restore, room: room, name: name,
		color:  os.Getenv("NO_COLOR") == "",
		lines:  make(chan inputLine),
		w:      bufio.NewWriterSize(out, 16<<10),
		byLine: make(map[*sentLine]*entry),
	}
	go t.readKeys(in)
	t.notice("✓ sent, ✓✓ delivered to all, %s processed by all, ✗ failed. /who, /help, /quit",
		strings.TrimSpace(t.markText(markProcessed)))
	return t, nil
}

func (t *tty) commands() bool          { return true }
func (t *tty) input() <-chan inputLine { return t.lines }

func (t *tty) close() {
	t.once.Do(func() {
		t.mu.Lock()
		t.ended, t.closed = true, true
		t.w.WriteString("\r\x1b[2K")
		_ = t.w.Flush()
		t.mu.Unlock()
		t.restore()
	})
}

func (t *tty) line(l chatLine) {
	t.add(&entry{from: printable(l.From), text: printable(l.Text)})
}

func (t *tty) presence(kind, name string, sameName bool) {
	name = printable(name)
	switch kind {
	case presenceJoin:
		t.notice("%s joined", name)
	case presenceHere:
		t.notice("%s is here", name)
	case presenceLeave:
		t.notice("%s left", name)
	}
	if sameName && kind != presenceLeave {
		t.notice("two members are called %s", name)
	}
}

func (t *tty) reconnected(n int64) {
	t.notice("the connection broke and came back (connection %d): the session goes on, nothing lost", n)
}

func (t *tty) notice(format string, args ...any) {
	t.add(&entry{text: fmt.Sprintf(format, args...)})
}

func (t *tty) marked(l *sentLine) {
	k, _, _ := l.State()
	if k == markSent {
		e := &entry{from: t.name, text: printable(l.Text), own: l}
		t.mu.Lock()
		t.byLine[l] = e
		t.mu.Unlock()
		t.add(e)
		return
	}
	t.mu.Lock()
	e := t.byLine[l]
	if e != nil && k >= markProcessed {
		delete(t.byLine, l)
	}
	if e != nil {
		t.redrawLocked(e)
	}
	t.mu.Unlock()
	if k == markFailed {
		t.notice("✗ %q %s", clip(l.Text, 30), l.Reason())
	}
}

// add prints e above the line being typed.
func (t *tty) add(e *entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	width := t.width()
	e.rows = rowsFor(t.plainText(e), width)
	t.shown = append(t.shown, e)
	if len(t.shown) > maxShown {
		if old := t.shown[0]; old.own != nil {
			delete(t.byLine, old.own)
		}
		t.shown = t.shown[1:]
	}
	t.w.WriteString("\r\x1b[2K")
	t.w.WriteString(t.styled(e))
	t.w.WriteString("\r\n")
	t.drawTypedLocked(width)
	_ = t.w.Flush()
}

// redrawLocked prints e again where it is, if it is still on the screen.
func (t *tty) redrawLocked(e *entry) {
	up := 0
	found := false
	for i := len(t.shown) - 1; i >= 0; i-- {
		up += t.shown[i].rows
		if t.shown[i] == e {
			found = true
			break
		}
	}
	_, height, err := termSize(t.out)
	if !found || err != nil || up >= height || t.closed {
		return
	}
	fmt.Fprintf(t.w, "\x1b7\x1b[%dA\r%s\x1b8", up, t.styled(e))
	_ = t.w.Flush()
}

func (t *tty) width() int {
	w, _, err := termSize(t.out)
	if err != nil || w < 20 {
		return 80
	}
	return w
}

// plainText is e as printed, without colours: what its width is measured on. An own line ends
// with three cells for its mark, whatever the mark, so a new mark never changes its rows.
func (t *tty) plainText(e *entry) string {
	if e.from == "" {
		return "-- " + e.text
	}
	s := "[" + t.room + "] " + e.from + ": " + e.text
	if e.own != nil {
		s += "    "
	}
	return s
}

func (t *tty) styled(e *entry) string {
	if e.from == "" {
		return t.paint("2", "-- "+e.text)
	}
	s := t.paint("2", "["+t.room+"] ") + t.paint("1", e.from) + ": " + e.text
	if e.own != nil {
		k, _, _ := e.own.State()
		s += " " + t.markText(k)
	}
	return s
}

// markText is a mark in three cells.
func (t *tty) markText(k mark) string {
	switch k {
	case markSent:
		return t.paint("2", "✓  ")
	case markDelivered:
		return t.paint("2", "✓✓ ")
	case markProcessed:
		if t.color {
			return t.paint("1;94", "✓✓") + " "
		}
		return "✓✓✓" // without colour, processed needs a shape of its own
	case markFailed:
		return t.paint("1;31", "✗  ")
	}
	return "   "
}

func (t *tty) paint(sgr, s string) string {
	if !t.color {
		return s
	}
	return "\x1b[" + sgr + "m" + s + "\x1b[0m"
}

// drawTypedLocked draws the line being typed; one that does not fit shows its end.
func (t *tty) drawTypedLocked(width int) {
	if t.ended {
		return
	}
	prompt := t.name + "> "
	room := width - 1 - len(prompt)
	typed := t.typed
	for cells(string(typed)) > room && len(typed) > 0 {
		typed = typed[1:]
	}
	t.w.WriteString("\r\x1b[2K")
	t.w.WriteString(t.paint("2", prompt))
	t.w.WriteString(string(typed))
}

// readKeys edits the line being typed, key by key, and sends it at Enter.
func (t *tty) readKeys(in io.Reader) {
	defer close(t.lines)
	buf := make([]byte, 256)
	for {
		n, err := in.Read(buf)
		for _, b := range buf[:n] {
			line, send, eof := t.key(b)
			if eof {
				return
			}
			if send {
				t.lines <- inputLine{text: line}
			}
		}
		if err != nil {
			return
		}
	}
}

// key takes one byte typed. It returns a line to send, or eof at Ctrl-D on an empty line.
func (t *tty) key(b byte) (line string, send, eof bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch t.esc {
	case 1: // after ESC: CSI and SS3 go on, anything else ends it
		t.esc = 0
		if b == '[' || b == 'O' {
			t.esc = 2
		}
		return "", false, false
	case 2: // arrows, function keys...: skipped up to their final byte
		if b >= 0x40 && b <= 0x7e {
			t.esc = 0
		}
		return "", false, false
	}
	switch {
	case b == '\r' || b == '\n':
		line = string(t.typed)
		t.typed = t.typed[:0]
		send = true
	case b == 0x7f || b == 0x08: // backspace
		if len(t.typed) > 0 {
			t.typed = t.typed[:len(t.typed)-1]
		}
	case b == 0x15: // Ctrl-U: the whole line
		t.typed = t.typed[:0]
	case b == 0x17: // Ctrl-W: the last word
		s := strings.TrimRight(string(t.typed), " ")
		s = s[:strings.LastIndex(s, " ")+1]
		t.typed = []rune(s)
	case b == 0x04: // Ctrl-D
		if len(t.typed) == 0 {
			t.ended = true
			t.w.WriteString("\r\x1b[2K")
			_ = t.w.Flush()
			return "", false, true
		}
	case b == 0x1b:
		t.esc = 1
	case b < 0x20:
		// other control keys mean nothing here
	default:
		t.pending = append(t.pending, b)
		if !utf8.FullRune(t.pending) {
			return "", false, false
		}
		r, _ := utf8.DecodeRune(t.pending)
		t.pending = t.pending[:0]
		if r != utf8.RuneError && !unsafeRune(r) && len(string(t.typed))+utf8.RuneLen(r) <= maxText {
			t.typed = append(t.typed, r)
		}
	}
	t.drawTypedLocked(t.width())
	_ = t.w.Flush()
	return line, send, false
}

// rowsFor is how many rows s takes on a terminal width cells wide.
func rowsFor(s string, width int) int {
	return max(1, (cells(s)+width-1)/width)
}

// cells estimates the width of s on a terminal: East Asian wide characters and most emoji take
// two cells, combining marks none. (An estimate: terminals disagree at the edges.)
func cells(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case r < 0x300:
			n++
		case r >= 0x300 && r < 0x370, r == 0x200d, r >= 0xfe00 && r <= 0xfe0f:
			// combining marks, zero-width joiner, variation selectors
		case r >= 0x1100 && r <= 0x115f, r >= 0x2e80 && r <= 0xa4cf, r >= 0xac00 && r <= 0xd7a3,
			r >= 0xf900 && r <= 0xfaff, r >= 0xfe30 && r <= 0xfe4f, r >= 0xff00 && r <= 0xff60,
			r >= 0xffe0 && r <= 0xffe6, r >= 0x1f300 && r <= 0x1faff, r >= 0x20000 && r <= 0x3fffd:
			n += 2
		default:
			n++
		}
	}
	return n
}
