// Package layercodec is the binary codec the state layers (core, oneway, pubsub) share for their
// sections of a snapshot file (snapshot/FORMAT.md). Each layer keeps only its struct walk, its
// elements' minimum sizes and its error prefix; the rules that make an encoding trustworthy live
// here once:
//
//   - Canonical: an integer is an encoding/binary uvarint in its fewest bytes, a bool is 0 or 1,
//     a flags byte holds only the bits its field defines. One state has one encoding, so a fuzzer
//     can hold a decoder to its encoder, and one input has one meaning.
//   - Bounded: a count or a length is checked against the bytes left before the caller allocates
//     for it, so n bytes of input cost O(n) memory whatever they claim (and every count fits an
//     int, even a 32-bit one).
//   - One error: the first problem is kept, naming the field and its byte offset; after it every
//     read returns a zero value and consumes nothing, so a layer checks once, at the end.
package layercodec

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// Encoder appends an encoding to B. Its methods cannot fail: a layer checks the values that have
// no encoding (a negative int, a level out of range) itself, since only it knows their range.
type Encoder struct {
	B []byte
}

// Uvarint appends v as a uvarint; binary.AppendUvarint writes the fewest bytes, the only form a
// Decoder takes.
func (e *Encoder) Uvarint(v uint64) { e.B = binary.AppendUvarint(e.B, v) }

// Byte appends v as it is (a version or a flags byte).
func (e *Encoder) Byte(v uint8) { e.B = append(e.B, v) }

// Bool appends 1 for true, 0 for false.
func (e *Encoder) Bool(v bool) {
	var b uint8
	if v {
		b = 1
	}
	e.B = append(e.B, b)
}

// Bytes appends v's length and v.
func (e *Encoder) Bytes(v []byte) {
	e.Uvarint(uint64(len(v)))
	e.B = append(e.B, v...)
}

// String appends s's length and s.
func (e *Encoder) String(s string) {
	e.Uvarint(uint64(len(s)))
	e.B = append(e.B, s...)
}

// Strings appends the count of ss and each string.
func (e *Encoder) Strings(ss []string) {
	e.Uvarint(uint64(len(ss)))
	for _, s := range ss {
		e.String(s)
	}
}

// UvarintLen is the number of bytes Encoder.Uvarint writes for v, for sizing a buffer once.
func UvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// StringLen is the number of bytes Encoder.String writes for s.
func StringLen(s string) int { return UvarintLen(uint64(len(s))) + len(s) }

// Wording picks the text of a Decoder's complaints. The layers had their own decoders before
// they shared this one, and callers and tests match on their words, so each keeps them.
type Wording uint8

const (
	// Plain says what ran out and what would fit: "the input ends inside a varint", "count 5,
	// but the 3 bytes left hold at most 1" (core and oneway).
	Plain Wording = iota
	// Short is terser: "truncated", "5 elements in the 3 bytes left" (pubsub).
	Short
)

// ErrFunc makes the error a Decoder returns: where is the field's path (Sessions[2].Tickets[0].ID,
// or "" for the state as a whole), off the byte offset it begins at, msg the problem. It is where a
// layer puts its prefix and wraps its sentinel.
type ErrFunc func(where string, off int, msg string) error

// maxDepth is how many nested lists a path names; deeper ones still decode, unnamed in errors.
const maxDepth = 4

type step struct {
	name string
	idx  int // -1 until the list's first element
}

// Decoder reads an encoding from a byte slice. The first problem sets Err; from then on every
// read returns a zero value, every count 0, and nothing is consumed, so loops over counts end at
// once and a refused input costs no more than what was read before the problem.
type Decoder struct {
	b     []byte
	off   int
	start int // where the last value read began, for Reject
	err   error
	errf  ErrFunc
	words Wording
	// path is where the decoder is (Members[3].Subscriptions[1]), kept unformatted until
	// something fails, since formatting it for every field would cost more than the decoding.
	path  [maxDepth]step
	depth int
}

// NewDecoder reads b from off on, with w's words; errf makes the errors (it must not be nil).
func NewDecoder(b []byte, off int, w Wording, errf ErrFunc) *Decoder {
	return &Decoder{b: b, off: off, start: off, errf: errf, words: w}
}

// Push enters a list called name: its elements' fields are named name[i].field once At(i) is
// called. Decode the list's count before, so that a bad count is named after the list itself.
func (d *Decoder) Push(name string) {
	if d.depth < maxDepth {
		d.path[d.depth] = step{name: name, idx: -1}
	}
	d.depth++
}

// At says the element being decoded is the i-th of the innermost list.
func (d *Decoder) At(i int) {
	if d.depth > 0 && d.depth <= maxDepth {
		d.path[d.depth-1].idx = i
	}
}

// Pop leaves the innermost list.
func (d *Decoder) Pop() {
	if d.depth > 0 {
		d.depth--
	}
}

// where names field within the current path.
func (d *Decoder) where(field string) string {
	var w strings.Builder
	for _, s := range d.path[:min(d.depth, maxDepth)] {
		if w.Len() > 0 {
			w.WriteByte('.')
		}
		w.WriteString(s.name)
		if s.idx >= 0 {
			w.WriteString("[" + strconv.Itoa(s.idx) + "]")
		}
	}
	if field != "" {
		if w.Len() > 0 {
			w.WriteByte('.')
		}
		w.WriteString(field)
	}
	return w.String()
}

// Fail records a problem with field at the current offset, unless one is recorded already.
func (d *Decoder) Fail(field, format string, args ...any) {
	if d.err != nil {
		return
	}
	d.err = d.errf(d.where(field), d.off, fmt.Sprintf(format, args...))
}

// Reject refuses the value just read (it is in range for its encoding but not for its field),
// naming the offset where the value began.
func (d *Decoder) Reject(field, format string, args ...any) {
	if d.err != nil {
		return
	}
	d.off = d.start
	d.Fail(field, format, args...)
}

// Err is the first problem, or nil.
func (d *Decoder) Err() error { return d.err }

// Left is the number of bytes not read yet.
func (d *Decoder) Left() int { return len(d.b) - d.off }

// End is Err, or, if the input goes on, an error counting the trailing bytes: "N bytes after the
// <what>". Trailing bytes are refused, since ignoring them would give one state many encodings.
func (d *Decoder) End(what string) error {
	if d.err == nil && d.off != len(d.b) {
		d.Fail("", "%d bytes after the %s", len(d.b)-d.off, what)
	}
	return d.err
}

// Uvarint reads an unsigned varint in its shortest form.
func (d *Decoder) Uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	d.start = d.off
	v, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		d.Fail(field, "%s", d.pick("the input ends inside a varint", "truncated"))
		return 0
	case n < 0:
		d.Fail(field, "%s", d.pick("varint overflows 64 bits", "integer overflows 64 bits"))
		return 0
	case n > 1 && d.b[d.off+n-1] == 0:
		// A last byte of 0 adds nothing: the same value fits in fewer bytes, and padded varints
		// would give one value many encodings.
		if d.words == Short {
			d.Fail(field, "integer in %d bytes, more than it needs", n)
		} else {
			d.Fail(field, "varint not in its shortest form")
		}
		return 0
	}
	d.off += n
	return v
}

func (d *Decoder) pick(plain, short string) string {
	if d.words == Short {
		return short
	}
	return plain
}

// Byte reads one byte, refusing bits outside allowed (0xff allows any byte).
func (d *Decoder) Byte(field string, allowed uint8) uint8 {
	v, ok := d.byte(field)
	if ok && v&^allowed != 0 {
		d.Fail(field, "flags %#x, only %#x are defined", v, allowed)
		return 0
	}
	d.advance(ok)
	return v
}

// Bool reads a byte that must be 0 or 1.
func (d *Decoder) Bool(field string) bool {
	v, ok := d.byte(field)
	if ok && v > 1 {
		d.Fail(field, "bool %d, not 0 or 1", v)
		return false
	}
	d.advance(ok)
	return v == 1
}

// byte peeks at the next byte; ok is false if there is none (recorded) or an earlier problem.
func (d *Decoder) byte(field string) (v uint8, ok bool) {
	if d.err != nil {
		return 0, false
	}
	d.start = d.off
	if d.off >= len(d.b) {
		d.Fail(field, "%s", d.pick("the input ends", "truncated"))
		return 0, false
	}
	return d.b[d.off], true
}

func (d *Decoder) advance(ok bool) {
	if ok && d.err == nil {
		d.off++
	}
}

// Int reads a uvarint that must fit in this platform's int (32 bits on some).
func (d *Decoder) Int(field string) int {
	v := d.Uvarint(field)
	if v > math.MaxInt {
		d.Reject(field, "%d does not fit in an int", v)
		return 0
	}
	return int(v)
}

// Count reads a number of elements of at least minLen bytes each (below 1 counts as 1), and
// refuses one the bytes left could not hold: the caller may allocate for the result at once.
func (d *Decoder) Count(field string, minLen int) int {
	minLen = max(minLen, 1)
	n := d.Uvarint(field)
	if d.err != nil {
		return 0
	}
	if left := d.Left(); n > uint64(left/minLen) {
		if d.words == Short {
			d.Reject(field, "%d elements in the %d bytes left", n, left)
		} else {
			d.Reject(field, "count %d, but the %d bytes left hold at most %d", n, left, left/minLen)
		}
		return 0
	}
	return int(n)
}

// raw reads a length and returns that many bytes of the input (shared with it), or nil if empty.
func (d *Decoder) raw(field string) []byte {
	n := d.Uvarint(field)
	if d.err != nil {
		return nil
	}
	if left := d.Left(); n > uint64(left) {
		if d.words == Short {
			d.Reject(field, "%d bytes in the %d bytes left", n, left)
		} else {
			d.Reject(field, "length %d, but %d bytes are left", n, left)
		}
		return nil
	}
	if n == 0 {
		return nil
	}
	v := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return v
}

// Bytes reads a byte string and returns a copy (the caller may reuse its input), or nil if it is
// empty. Copying each string as it comes, rather than the whole input first, keeps what a refused
// input costs to what was read before the problem.
func (d *Decoder) Bytes(field string) []byte {
	if v := d.raw(field); v != nil {
		return append([]byte(nil), v...)
	}
	return nil
}

// String reads a string (a copy, like Bytes).
func (d *Decoder) String(field string) string { return string(d.raw(field)) }

// Strings reads a list of strings, or nil if it is empty; an element's errors name it field[i].
func (d *Decoder) Strings(field string) []string {
	return List(d, field, 1, func(d *Decoder, s *string) { *s = d.String("") })
}

// List reads a list: its count (elements of at least minLen bytes, see Count), then each element
// with decode, whose errors name it field[i]. An empty list is nil.
func List[T any](d *Decoder, field string, minLen int, decode func(d *Decoder, e *T)) []T {
	n := d.Count(field, minLen)
	if n == 0 {
		return nil
	}
	list := make([]T, n)
	d.Push(field)
	for i := range list {
		d.At(i)
		decode(d, &list[i])
	}
	d.Pop()
	return list
}

// Fill reads len(dst) bytes into dst (a fixed-size field such as a token, named what in the
// error).
func (d *Decoder) Fill(field, what string, dst []byte) {
	if d.err != nil {
		return
	}
	if left := d.Left(); left < len(dst) {
		d.Fail(field, "%d bytes left, the %s takes %d", left, what, len(dst))
		return
	}
	d.off += copy(dst, d.b[d.off:])
}

// CheckVersion says what is wrong with b's first byte, the format version a layer's encoding
// starts with, or "" if it is want. A later layout gets another version, so it can be told apart
// and converted rather than misread.
func CheckVersion(b []byte, want uint8) string {
	switch {
	case len(b) == 0:
		return "empty input"
	case b[0] != want:
		return fmt.Sprintf("format version %d, this side reads %d", b[0], want)
	}
	return ""
}
