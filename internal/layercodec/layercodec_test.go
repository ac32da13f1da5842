package layercodec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

var errBad = errors.New("ftsl: test: bad")

func testErr(where string, off int, msg string) error {
	return fmt.Errorf("%w: %s at byte %d: %s", errBad, where, off, msg)
}

// wantErr fails the test unless err is errBad and contains want.
func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if !errors.Is(err, errBad) || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error about %q", err, want)
	}
}

// TestRoundTrip: what the Encoder writes, the Decoder reads back, to the last byte, and the
// sizes UvarintLen and StringLen predict are the ones written.
func TestRoundTrip(t *testing.T) {
	var e Encoder
	for _, v := range []uint64{0, 1, 127, 128, 1 << 35, math.MaxUint64} {
		n := len(e.B)
		e.Uvarint(v)
		if got := len(e.B) - n; got != UvarintLen(v) {
			t.Errorf("UvarintLen(%d) = %d, wrote %d", v, UvarintLen(v), got)
		}
	}
	e.Byte(0x05)
	e.Bool(true)
	e.Bool(false)
	e.Bytes([]byte("data"))
	e.Bytes(nil)
	n := len(e.B)
	e.String("str")
	if got := len(e.B) - n; got != StringLen("str") {
		t.Errorf("StringLen = %d, wrote %d", StringLen("str"), got)
	}
	e.Strings([]string{"a", ""})
	e.Uvarint(math.MaxInt)

	in := bytes.Clone(e.B)
	d := NewDecoder(in, 0, Plain, testErr)
	for _, want := range []uint64{0, 1, 127, 128, 1 << 35, math.MaxUint64} {
		if got := d.Uvarint("u"); got != want {
			t.Errorf("Uvarint = %d, want %d", got, want)
		}
	}
	if got := d.Byte("flags", 0x07); got != 0x05 {
		t.Errorf("Byte = %#x", got)
	}
	if !d.Bool("t") || d.Bool("f") {
		t.Error("Bool did not read true, false")
	}
	data := d.Bytes("data")
	if string(data) != "data" {
		t.Errorf("Bytes = %q", data)
	}
	if got := d.Bytes("empty"); got != nil {
		t.Errorf("empty Bytes = %q, want nil", got)
	}
	if got := d.String("s"); got != "str" {
		t.Errorf("String = %q", got)
	}
	if got := d.Strings("ss"); len(got) != 2 || got[0] != "a" || got[1] != "" {
		t.Errorf("Strings = %q", got)
	}
	if got := d.Int("i"); got != math.MaxInt {
		t.Errorf("Int = %d", got)
	}
	if err := d.End("end"); err != nil {
		t.Fatal(err)
	}
	in[bytes.Index(in, []byte("data"))] = 'X'
	if string(data) != "data" {
		t.Error("Bytes shares memory with its input")
	}
}

// TestCanonicalVarint: a varint longer than it needs is refused, in either wording, since it
// would give one value two encodings; so are a cut one and one past 64 bits.
func TestCanonicalVarint(t *testing.T) {
	for name, tc := range map[string]struct {
		in           []byte
		plain, terse string
	}{
		"padded 0":  {[]byte{0x80, 0x00}, "varint not in its shortest form", "integer in 2 bytes, more than it needs"},
		"padded 5":  {[]byte{0x85, 0x80, 0x00}, "varint not in its shortest form", "integer in 3 bytes, more than it needs"},
		"cut":       {[]byte{0x80}, "the input ends inside a varint", "truncated"},
		"empty":     {nil, "the input ends inside a varint", "truncated"},
		"overflows": {append(bytes.Repeat([]byte{0xff}, 9), 0x02), "varint overflows 64 bits", "integer overflows 64 bits"},
	} {
		for w, want := range map[Wording]string{Plain: tc.plain, Short: tc.terse} {
			d := NewDecoder(tc.in, 0, w, testErr)
			if v := d.Uvarint("v"); v != 0 {
				t.Errorf("%s: read %d", name, v)
			}
			wantErr(t, d.Err(), "v at byte 0: "+want)
		}
	}
	// The shortest form of the same values is taken.
	d := NewDecoder([]byte{0x00, 0x05}, 0, Plain, testErr)
	if d.Uvarint("a") != 0 || d.Uvarint("b") != 5 || d.End("end") != nil {
		t.Fatalf("shortest forms refused: %v", d.Err())
	}
}

// TestCountBound: a count is refused when the bytes left cannot hold that many elements of the
// minimum size (so the caller never allocates for more than the input holds), and accepted at
// exactly the bound.
func TestCountBound(t *testing.T) {
	in := append([]byte{3}, make([]byte, 12)...) // 3 elements of 4 bytes fit, not of 5
	if n := NewDecoder(in, 0, Plain, testErr).Count("List", 4); n != 3 {
		t.Errorf("count at the bound: %d, want 3", n)
	}
	d := NewDecoder(in, 0, Plain, testErr)
	if n := d.Count("List", 5); n != 0 {
		t.Errorf("count past the bound: %d", n)
	}
	wantErr(t, d.Err(), "List at byte 0: count 3, but the 12 bytes left hold at most 2")
	d = NewDecoder(in, 0, Short, testErr)
	d.Count("List", 5)
	wantErr(t, d.Err(), "List at byte 0: 3 elements in the 12 bytes left")

	// A count past 32 bits, even with a minimum size below 1, is refused without overflowing.
	huge := binary.AppendUvarint(nil, 1<<60)
	d = NewDecoder(append(huge, 0, 0), 0, Plain, testErr)
	if n := d.Count("List", 0); n != 0 {
		t.Errorf("huge count: %d", n)
	}
	wantErr(t, d.Err(), "count 1152921504606846976")

	// A length is a count of bytes.
	d = NewDecoder([]byte{9, 'a', 'b'}, 0, Short, testErr)
	if v := d.Bytes("B"); v != nil {
		t.Errorf("Bytes past the end: %q", v)
	}
	wantErr(t, d.Err(), "B at byte 0: 9 bytes in the 2 bytes left")
}

// TestTrailingBytes: bytes after the last value are refused, naming how many and where.
func TestTrailingBytes(t *testing.T) {
	d := NewDecoder([]byte{1, 7, 0, 0}, 1, Plain, testErr)
	d.Uvarint("v")
	wantErr(t, d.End("end"), " at byte 2: 2 bytes after the end")
}

// TestIntRange: Int refuses a value past this platform's int (2^31-1 on 32-bit platforms),
// naming the offset where the value began.
func TestIntRange(t *testing.T) {
	in := binary.AppendUvarint([]byte{0}, math.MaxInt)
	in = binary.AppendUvarint(in, uint64(math.MaxInt)+1)
	d := NewDecoder(in, 1, Plain, testErr)
	if v := d.Int("a"); v != math.MaxInt {
		t.Errorf("Int = %d, want %d", v, math.MaxInt)
	}
	at := len(binary.AppendUvarint([]byte{0}, math.MaxInt))
	if v := d.Int("b"); v != 0 {
		t.Errorf("Int past the range = %d", v)
	}
	wantErr(t, d.Err(), fmt.Sprintf("b at byte %d: %d does not fit in an int", at, uint64(math.MaxInt)+1))
}

// TestBytesAndFlags: a bool is 0 or 1, a flags byte holds only its defined bits, and a refusal
// consumes nothing and ends the decoding: later reads are zero.
func TestBytesAndFlags(t *testing.T) {
	d := NewDecoder([]byte{2}, 0, Short, testErr)
	d.Bool("b")
	wantErr(t, d.Err(), "b at byte 0: bool 2, not 0 or 1")
	d = NewDecoder([]byte{0x09, 1}, 0, Plain, testErr)
	if f := d.Byte("f", 0x07); f != 0 {
		t.Errorf("Byte = %#x", f)
	}
	wantErr(t, d.Err(), "f at byte 0: flags 0x9, only 0x7 are defined")
	if d.Bool("later") || d.Left() != 2 {
		t.Error("a read after a refusal consumed input")
	}
	d = NewDecoder(nil, 0, Plain, testErr)
	d.Byte("f", 0xff)
	wantErr(t, d.Err(), "f at byte 0: the input ends")
	d = NewDecoder([]byte{1, 2}, 0, Plain, testErr)
	var tok [4]byte
	d.Fill("Token", "token", tok[:])
	wantErr(t, d.Err(), "Token at byte 0: 2 bytes left, the token takes 4")
}

// TestPath: an error names the field within the lists being decoded, and only the first
// problem is kept.
func TestPath(t *testing.T) {
	d := NewDecoder([]byte{1, 1, 2}, 0, Plain, testErr)
	d.Push("Sessions")
	d.At(0)
	d.Uvarint("ID")
	d.Push("Recv.Messages")
	d.At(3)
	d.Byte("flags", 0)
	d.Pop()
	d.Pop()
	d.Fail("other", "a second problem")
	wantErr(t, d.Err(), "Sessions[0].Recv.Messages[3].flags at byte 1: flags 0x1, only 0x0 are defined")
	if got, want := CheckVersion(nil, 1), "empty input"; got != want {
		t.Errorf("CheckVersion(nil) = %q, want %q", got, want)
	}
	if got, want := CheckVersion([]byte{2}, 1), "format version 2, this side reads 1"; got != want {
		t.Errorf("CheckVersion(2) = %q, want %q", got, want)
	}
	if got := CheckVersion([]byte{1}, 1); got != "" {
		t.Errorf("CheckVersion(1) = %q", got)
	}
}
