package oneway

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/ftsl-go/ftsl/core"
)

// This file is the binary encoding of this layer's part of ListenerState (Sessions, not Core,
// which core encodes): the "oneway" section of a snapshot file (snapshot/FORMAT.md). Like
// core's, the encoding is canonical, and the decoder checks every count against the bytes left
// before allocating for it; whether the state fits its core sessions is NewListenerFrom's
// business (SessionState.check).

// stateFormat is the version byte the encoding starts with.
const stateFormat = 1

// A ticket's flags byte: the level in the low two bits, then Delivered.
const (
	tsDelivered = 1 << 2
	tsFlags     = 3 | tsDelivered
)

// The fewest bytes an element encodes into (TestStateCodecMinSizes pins them).
const (
	minSessionLen = 6 // ID, three marks, two counts
	minTicketLen  = 2 // ID, flags
	minAttemptLen = 2 // ID, Failed
)

// MarshalLayer encodes this layer's part of the state, st.Sessions, for the "oneway" section of
// a snapshot file; st.Core goes in its own section (core.ListenerState.MarshalLayer). It fails
// with core.ErrInvalidState on a value no encoding holds: a negative Failed, a level above
// AckProcessed. The result is the caller's.
func (st *ListenerState) MarshalLayer() ([]byte, error) {
	if st == nil {
		return nil, fmt.Errorf("ftsl: oneway state: %w: nil", core.ErrInvalidState)
	}
	size := 1 + binary.MaxVarintLen64
	for i := range st.Sessions {
		ss := &st.Sessions[i]
		size += 24 + 6*len(ss.Tickets) + 8*len(ss.Attempts)
	}
	b := make([]byte, 0, size)
	b = append(b, stateFormat)
	b = binary.AppendUvarint(b, uint64(len(st.Sessions)))
	bad := func(i int, format string, args ...any) error {
		return fmt.Errorf("ftsl: oneway state: %w: Sessions[%d] (ID %d): "+format,
			append([]any{core.ErrInvalidState, i, st.Sessions[i].ID}, args...)...)
	}
	for i := range st.Sessions {
		ss := &st.Sessions[i]
		for _, v := range [...]uint64{ss.ID, ss.AckDone, ss.DelDone, ss.ProcDone, uint64(len(ss.Tickets))} {
			b = binary.AppendUvarint(b, v)
		}
		for k, t := range ss.Tickets {
			if t.Level > AckProcessed {
				return nil, bad(i, "Tickets[%d]: level %d", k, t.Level)
			}
			f := uint8(t.Level)
			if t.Delivered {
				f |= tsDelivered
			}
			b = append(binary.AppendUvarint(b, t.ID), f)
		}
		b = binary.AppendUvarint(b, uint64(len(ss.Attempts)))
		for k, a := range ss.Attempts {
			if a.Failed < 0 {
				return nil, bad(i, "Attempts[%d].Failed %d is negative", k, a.Failed)
			}
			b = binary.AppendUvarint(binary.AppendUvarint(b, a.ID), uint64(a.Failed))
		}
	}
	return b, nil
}

// UnmarshalLayer decodes what MarshalLayer encoded into st.Sessions, leaving st.Core alone.
// Input that is not such an encoding is refused with an error matching core.ErrInvalidState
// that names the field and its byte offset, and st is left unchanged. Empty lists come back nil.
func (st *ListenerState) UnmarshalLayer(b []byte) error {
	if st == nil {
		return fmt.Errorf("ftsl: oneway state: %w: decoding into nil", core.ErrInvalidState)
	}
	if len(b) == 0 {
		return fmt.Errorf("ftsl: oneway state: %w: empty input", core.ErrInvalidState)
	}
	if b[0] != stateFormat {
		return fmt.Errorf("ftsl: oneway state: %w: format version %d, this side reads %d", core.ErrInvalidState, b[0], stateFormat)
	}
	d := stateDecoder{b: b, off: 1, session: -1, elem: -1}
	var sessions []SessionState
	if n := d.count("Sessions", minSessionLen); n > 0 {
		sessions = make([]SessionState, n)
	}
	for i := range sessions {
		d.session = i
		ss := &sessions[i]
		ss.ID = d.uvarint("ID")
		ss.AckDone = d.uvarint("AckDone")
		ss.DelDone = d.uvarint("DelDone")
		ss.ProcDone = d.uvarint("ProcDone")
		if n := d.count("Tickets", minTicketLen); n > 0 {
			ss.Tickets = make([]TicketState, n)
		}
		for k := range ss.Tickets {
			d.elem = k
			t := &ss.Tickets[k]
			t.ID = d.uvarint("Tickets[].ID")
			f := d.byte("Tickets[].flags", tsFlags)
			if f&3 > uint8(AckProcessed) {
				d.reject("Tickets[].flags", "level %d", f&3)
			}
			t.Level, t.Delivered = AckLevel(f&3), f&tsDelivered != 0
		}
		d.elem = -1
		if n := d.count("Attempts", minAttemptLen); n > 0 {
			ss.Attempts = make([]AttemptState, n)
		}
		for k := range ss.Attempts {
			d.elem = k
			a := &ss.Attempts[k]
			a.ID = d.uvarint("Attempts[].ID")
			failed := d.uvarint("Attempts[].Failed")
			if failed > math.MaxInt {
				d.reject("Attempts[].Failed", "%d does not fit in an int", failed)
			}
			a.Failed = int(failed)
		}
		d.elem = -1
	}
	d.session = -1
	if d.err == nil && d.off != len(b) {
		d.fail("", "%d bytes after the last session", len(b)-d.off)
	}
	if d.err != nil {
		return d.err
	}
	st.Sessions = sessions
	return nil
}

// stateDecoder reads the encoding from b at off; the first problem sets err, and from then on
// every read returns zero and consumes nothing.
type stateDecoder struct {
	b       []byte
	off     int
	start   int // where the last value read began
	err     error
	session int // the session being decoded, -1 outside one
	elem    int // the list element being decoded, for a field named with "[]"
}

func (d *stateDecoder) fail(field, format string, args ...any) {
	if d.err != nil {
		return
	}
	where := field
	if d.elem >= 0 {
		where = strings.Replace(where, "[]", fmt.Sprintf("[%d]", d.elem), 1)
	}
	if d.session >= 0 {
		where = fmt.Sprintf("Sessions[%d].%s", d.session, where)
	}
	if where != "" {
		where += " "
	}
	d.err = fmt.Errorf("ftsl: oneway state: %w: %sat byte %d: %s", core.ErrInvalidState, where, d.off, fmt.Sprintf(format, args...))
}

// reject refuses the value just read, naming the offset where it began.
func (d *stateDecoder) reject(field, format string, args ...any) {
	d.off = d.start
	d.fail(field, format, args...)
}

func (d *stateDecoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	d.start = d.off
	v, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		d.fail(field, "the input ends inside a varint")
		return 0
	case n < 0:
		d.fail(field, "varint overflows 64 bits")
		return 0
	case n > 1 && d.b[d.off+n-1] == 0:
		d.fail(field, "varint not in its shortest form") // one value, one encoding
		return 0
	}
	d.off += n
	return v
}

func (d *stateDecoder) byte(field string, allowed uint8) uint8 {
	if d.err != nil {
		return 0
	}
	d.start = d.off
	if d.off >= len(d.b) {
		d.fail(field, "the input ends")
		return 0
	}
	v := d.b[d.off]
	if v&^allowed != 0 {
		d.fail(field, "flags %#x, only %#x are defined", v, allowed)
		return 0
	}
	d.off++
	return v
}

// count reads a number of elements of at least minLen bytes each and refuses one the bytes
// left could not hold: the caller allocates for it.
func (d *stateDecoder) count(field string, minLen int) int {
	n := d.uvarint(field)
	if d.err != nil {
		return 0
	}
	if left := len(d.b) - d.off; n > uint64(left/minLen) {
		d.reject(field, "count %d, but the %d bytes left hold at most %d", n, left, left/minLen)
		return 0
	}
	return int(n)
}
