package core

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"
)

// This file is the binary encoding of ListenerState: the "core" section of a snapshot file
// (snapshot/FORMAT.md describes it field by field). The encoding is canonical: a byte string
// decodes to at most one state, and encoding that state gives the same bytes back, so a fuzzer
// can check the decoder against the encoder, and one input has one meaning.
//
// The decoder trusts nothing: a file may be damaged, or forged by whoever can write it. It never
// allocates for a count or a length before checking it against the bytes left, so an input of n
// bytes costs O(n) memory whatever it claims. It checks the encoding and plain range limits
// only; whether the sessions make sense is NewListenerFrom's business (importSession).

// stateFormat is the version byte the encoding starts with; a decoder refuses the others, so a
// later layout can be told apart and converted.
const stateFormat = 1

// Flags of a session.
const (
	ssAccepted       = 1 << 0
	ssCloseRequested = 1 << 1
	ssPeerClosing    = 1 << 2
	ssPartial        = 1 << 3 // Recv.Partial follows the messages
	ssFlags          = ssAccepted | ssCloseRequested | ssPeerClosing | ssPartial
)

// Flags of a received message; the level is in the low two bits.
const (
	rmResent    = 1 << 2
	rmCancelled = 1 << 3
	rmDelivered = 1 << 4
	rmSettled   = 1 << 5
	rmFlags     = 3 | rmResent | rmCancelled | rmDelivered | rmSettled
	pmFlags     = 3 | rmResent // a partial message's
)

// The fewest bytes an element encodes into: a count is checked against them before anything is
// allocated for it (TestStateCodecMinSizes pins them).
const (
	minSessionLen = 53 // every integer one byte, no frames, messages or fails
	minMessageLen = 4  // ID, flags, cost, data length
	minFailLen    = 3  // seq, MID, reason length
)

// MarshalLayer encodes the state (every field of every session) for the "core" section of a
// snapshot file. It fails with ErrInvalidState on a value no encoding holds: a negative int or
// duration, a level above AckProcessed. The result is the caller's.
func (st *ListenerState) MarshalLayer() ([]byte, error) {
	if st == nil {
		return nil, fmt.Errorf("ftsl: core state: %w: nil", ErrInvalidState)
	}
	size := 1 + binary.MaxVarintLen64
	for i := range st.Sessions {
		size += st.Sessions[i].sizeHint()
	}
	e := stateEncoder{b: make([]byte, 0, size)}
	e.b = append(e.b, stateFormat)
	e.uvarint(uint64(len(st.Sessions)))
	for i := range st.Sessions {
		e.session(&st.Sessions[i])
		if e.err != nil {
			return nil, fmt.Errorf("ftsl: core state: %w: Sessions[%d] (ID %d): %v", ErrInvalidState, i, st.Sessions[i].ID, e.err)
		}
	}
	return e.b, nil
}

// UnmarshalLayer decodes what MarshalLayer encoded into st, replacing its sessions. Input that is
// not such an encoding (another version, truncated, with bytes left over, a count beyond what the
// input could hold, a value out of range) is refused with an error matching ErrInvalidState that
// names the field and its byte offset, and st is left unchanged. Byte strings that are empty come
// back nil; the others do not share memory with b.
func (st *ListenerState) UnmarshalLayer(b []byte) error {
	if st == nil {
		return fmt.Errorf("ftsl: core state: %w: decoding into nil", ErrInvalidState)
	}
	if len(b) == 0 {
		return fmt.Errorf("ftsl: core state: %w: empty input", ErrInvalidState)
	}
	if b[0] != stateFormat {
		return fmt.Errorf("ftsl: core state: %w: format version %d, this side reads %d", ErrInvalidState, b[0], stateFormat)
	}
	d := stateDecoder{b: b, off: 1, session: -1}
	n := d.count("Sessions", minSessionLen)
	var out ListenerState
	if n > 0 {
		out.Sessions = make([]SessionState, n)
	}
	for i := range out.Sessions {
		d.session, d.elem = i, -1
		d.decodeSession(&out.Sessions[i])
	}
	d.session = -1
	if d.err == nil && d.off != len(d.b) {
		d.fail("", "%d bytes after the last session", len(d.b)-d.off)
	}
	if d.err != nil {
		return d.err
	}
	*st = out
	return nil
}

// sizeHint is about the bytes the session encodes into, for the encoder's buffer.
func (ss *SessionState) sizeHint() int {
	n := 128 + len(ss.Send.Frames)
	for i := range ss.Recv.Messages {
		n += 24 + len(ss.Recv.Messages[i].Data)
	}
	if p := ss.Recv.Partial; p != nil {
		n += 24 + len(p.Data)
	}
	for i := range ss.Recv.Fails {
		n += 24 + len(ss.Recv.Fails[i].Reason)
	}
	return n
}

// stateEncoder appends the encoding to b. The first value it cannot encode sets err; later
// calls still append, and the caller drops the result.
type stateEncoder struct {
	b   []byte
	err error
}

func (e *stateEncoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }

func (e *stateEncoder) int(field string, v int) {
	if v < 0 && e.err == nil {
		e.err = fmt.Errorf("%s %d is negative", field, v)
	}
	e.uvarint(uint64(v))
}

func (e *stateEncoder) duration(field string, v time.Duration) {
	if v < 0 && e.err == nil {
		e.err = fmt.Errorf("%s %v is negative", field, v)
	}
	e.uvarint(uint64(v))
}

func (e *stateEncoder) bytes(v []byte) {
	e.uvarint(uint64(len(v)))
	e.b = append(e.b, v...)
}

func (e *stateEncoder) level(field string, l AckLevel) uint8 {
	if l > AckProcessed && e.err == nil {
		e.err = fmt.Errorf("%s: level %d", field, l)
	}
	return uint8(l) & 3
}

func (e *stateEncoder) session(ss *SessionState) {
	e.uvarint(ss.ID)
	e.b = append(e.b, ss.Token[:]...)
	var flags uint8
	if ss.Accepted {
		flags |= ssAccepted
	}
	if ss.CloseRequested {
		flags |= ssCloseRequested
	}
	if ss.PeerClosing {
		flags |= ssPeerClosing
	}
	if ss.Recv.Partial != nil {
		flags |= ssPartial
	}
	e.b = append(e.b, flags)

	p := &ss.Params
	e.b = append(e.b, p.Version)
	e.int("Params.MaxMessageSize", p.MaxMessageSize)
	e.int("Params.ReceiveBufferBytes", p.ReceiveBufferBytes)
	e.int("Params.SendBufferBytes", p.SendBufferBytes)
	e.duration("Params.DeadPeerTimeout", p.DeadPeerTimeout)
	e.uvarint(uint64(p.PeerMaxMessageSize))
	e.uvarint(uint64(p.PeerReceiveBufferBytes))
	e.uvarint(uint64(p.PeerSendBufferBytes))
	e.duration("Params.PeerDeadPeerTimeout", p.PeerDeadPeerTimeout)

	s := &ss.Send
	e.bytes(s.Frames)
	e.uvarint(s.FirstPID)
	e.uvarint(s.FirstOffset)
	e.uvarint(s.NextPID)
	e.uvarint(s.NextMID)
	e.ack(s.PeerAck)
	e.uvarint(s.AckedMID)

	r := &ss.Recv
	e.uvarint(r.RPID)
	e.uvarint(r.Cost)
	e.uvarint(r.ReleasedCost)
	e.uvarint(r.Released)
	e.uvarint(uint64(len(r.Messages)))
	for i := range r.Messages {
		m := &r.Messages[i]
		e.uvarint(m.ID)
		f := e.level("Recv.Messages", m.Level)
		if m.Resent {
			f |= rmResent
		}
		if m.Cancelled {
			f |= rmCancelled
		}
		if m.Delivered {
			f |= rmDelivered
		}
		if m.Settled {
			f |= rmSettled
		}
		e.b = append(e.b, f)
		e.uvarint(m.Cost)
		e.bytes(m.Data)
	}
	if pm := r.Partial; pm != nil {
		e.uvarint(pm.ID)
		f := e.level("Recv.Partial", pm.Level)
		if pm.Resent {
			f |= rmResent
		}
		e.b = append(e.b, f)
		e.uvarint(pm.Cost)
		e.bytes(pm.Data)
	}
	e.uvarint(uint64(len(r.Fails)))
	for _, f := range r.Fails {
		e.uvarint(f.Seq)
		e.uvarint(f.MID)
		e.uvarint(uint64(len(f.Reason)))
		e.b = append(e.b, f.Reason...)
	}
	e.uvarint(r.NextFailSeq)
	e.uvarint(r.PeerFailSeq)
	e.int("Recv.MaxInFlight", r.MaxInFlight)

	t := &ss.Stats
	for _, v := range [...]uint64{t.MessagesSent, t.MessagesReceived, t.BytesSent, t.BytesReceived, t.FramesResent, t.Reconnects} {
		e.uvarint(v)
	}
}

func (e *stateEncoder) ack(a AckState) {
	for _, v := range [...]uint64{a.RPID, a.DMID, a.PMID, a.FAck, a.Credit} {
		e.uvarint(v)
	}
}

// stateDecoder reads the encoding from b at off. The first problem sets err; from then on every
// read returns zero values and consumes nothing, so the caller checks err once at the end and
// loops over counts end at once.
type stateDecoder struct {
	b       []byte
	off     int
	start   int // where the last value read began
	err     error
	session int // the session being decoded, -1 outside one
	elem    int // the element of a list being decoded, for a field named with "[]"
}

// fail records the first problem, naming the field (a "[]" in it gets the element's index).
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
	d.err = fmt.Errorf("ftsl: core state: %w: %sat byte %d: %s", ErrInvalidState, where, d.off, fmt.Sprintf(format, args...))
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
		// Padded varints would give one value many encodings.
		d.fail(field, "varint not in its shortest form")
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

// int reads an int; it must fit in this platform's int (32 bits on some).
func (d *stateDecoder) int(field string) int {
	v := d.uvarint(field)
	if v > math.MaxInt {
		d.reject(field, "%d does not fit in an int", v)
		return 0
	}
	return int(v)
}

func (d *stateDecoder) uint32(field string) uint32 {
	v := d.uvarint(field)
	if v > math.MaxUint32 {
		d.reject(field, "%d does not fit in 32 bits", v)
		return 0
	}
	return uint32(v)
}

func (d *stateDecoder) duration(field string) time.Duration {
	v := d.uvarint(field)
	if v > math.MaxInt64 {
		d.reject(field, "%d ns is out of range", v)
		return 0
	}
	return time.Duration(v)
}

// bytes returns a copy of the next byte string (the caller may reuse its input), or nil if
// empty. Copying each string as it comes, rather than the whole input first, keeps what a
// refused input costs to what was read before the problem.
func (d *stateDecoder) bytes(field string) []byte {
	n := d.uvarint(field)
	if d.err != nil {
		return nil
	}
	if left := len(d.b) - d.off; n > uint64(left) {
		d.reject(field, "length %d, but %d bytes are left", n, left)
		return nil
	}
	if n == 0 {
		return nil
	}
	v := bytes.Clone(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	return v
}

func (d *stateDecoder) string(field string) string {
	n := d.uvarint(field)
	if d.err != nil {
		return ""
	}
	if left := len(d.b) - d.off; n > uint64(left) {
		d.reject(field, "length %d, but %d bytes are left", n, left)
		return ""
	}
	v := string(d.b[d.off : d.off+int(n)])
	d.off += int(n)
	return v
}

// count reads a number of elements of at least minLen bytes each, and refuses one that the
// bytes left could not hold: the caller may allocate for it.
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

func (d *stateDecoder) decodeSession(ss *SessionState) {
	ss.ID = d.uvarint("ID")
	if d.err == nil {
		if len(d.b)-d.off < tokenLen {
			d.fail("Token", "%d bytes left, the token takes %d", len(d.b)-d.off, tokenLen)
		} else {
			copy(ss.Token[:], d.b[d.off:])
			d.off += tokenLen
		}
	}
	flags := d.byte("flags", ssFlags)
	ss.Accepted = flags&ssAccepted != 0
	ss.CloseRequested = flags&ssCloseRequested != 0
	ss.PeerClosing = flags&ssPeerClosing != 0

	p := &ss.Params
	p.Version = d.byte("Params.Version", 0xff)
	p.MaxMessageSize = d.int("Params.MaxMessageSize")
	p.ReceiveBufferBytes = d.int("Params.ReceiveBufferBytes")
	p.SendBufferBytes = d.int("Params.SendBufferBytes")
	p.DeadPeerTimeout = d.duration("Params.DeadPeerTimeout")
	p.PeerMaxMessageSize = d.uint32("Params.PeerMaxMessageSize")
	p.PeerReceiveBufferBytes = d.uint32("Params.PeerReceiveBufferBytes")
	p.PeerSendBufferBytes = d.uint32("Params.PeerSendBufferBytes")
	p.PeerDeadPeerTimeout = d.duration("Params.PeerDeadPeerTimeout")

	s := &ss.Send
	s.Frames = d.bytes("Send.Frames")
	s.FirstPID = d.uvarint("Send.FirstPID")
	s.FirstOffset = d.uvarint("Send.FirstOffset")
	s.NextPID = d.uvarint("Send.NextPID")
	s.NextMID = d.uvarint("Send.NextMID")
	a := &s.PeerAck
	a.RPID = d.uvarint("Send.PeerAck.RPID")
	a.DMID = d.uvarint("Send.PeerAck.DMID")
	a.PMID = d.uvarint("Send.PeerAck.PMID")
	a.FAck = d.uvarint("Send.PeerAck.FAck")
	a.Credit = d.uvarint("Send.PeerAck.Credit")
	s.AckedMID = d.uvarint("Send.AckedMID")

	r := &ss.Recv
	r.RPID = d.uvarint("Recv.RPID")
	r.Cost = d.uvarint("Recv.Cost")
	r.ReleasedCost = d.uvarint("Recv.ReleasedCost")
	r.Released = d.uvarint("Recv.Released")
	if n := d.count("Recv.Messages", minMessageLen); n > 0 {
		r.Messages = make([]ReceivedMessage, n)
	}
	for i := range r.Messages {
		d.elem = i
		m := &r.Messages[i]
		m.ID = d.uvarint("Recv.Messages[].ID")
		f := d.level("Recv.Messages[].flags", rmFlags)
		m.Level = AckLevel(f & 3)
		m.Resent = f&rmResent != 0
		m.Cancelled = f&rmCancelled != 0
		m.Delivered = f&rmDelivered != 0
		m.Settled = f&rmSettled != 0
		m.Cost = d.uvarint("Recv.Messages[].Cost")
		m.Data = d.bytes("Recv.Messages[].Data")
	}
	d.elem = -1
	if flags&ssPartial != 0 {
		pm := &PartialMessage{}
		pm.ID = d.uvarint("Recv.Partial.ID")
		f := d.level("Recv.Partial.flags", pmFlags)
		pm.Level = AckLevel(f & 3)
		pm.Resent = f&rmResent != 0
		pm.Cost = d.uvarint("Recv.Partial.Cost")
		pm.Data = d.bytes("Recv.Partial.Data")
		r.Partial = pm
	}
	if n := d.count("Recv.Fails", minFailLen); n > 0 {
		r.Fails = make([]FailReport, n)
	}
	for i := range r.Fails {
		d.elem = i
		f := &r.Fails[i]
		f.Seq = d.uvarint("Recv.Fails[].Seq")
		f.MID = d.uvarint("Recv.Fails[].MID")
		f.Reason = d.string("Recv.Fails[].Reason")
	}
	d.elem = -1
	r.NextFailSeq = d.uvarint("Recv.NextFailSeq")
	r.PeerFailSeq = d.uvarint("Recv.PeerFailSeq")
	r.MaxInFlight = d.int("Recv.MaxInFlight")

	t := &ss.Stats
	t.MessagesSent = d.uvarint("Stats.MessagesSent")
	t.MessagesReceived = d.uvarint("Stats.MessagesReceived")
	t.BytesSent = d.uvarint("Stats.BytesSent")
	t.BytesReceived = d.uvarint("Stats.BytesReceived")
	t.FramesResent = d.uvarint("Stats.FramesResent")
	t.Reconnects = d.uvarint("Stats.Reconnects")
}

// level reads a flags byte whose low two bits are an AckLevel.
func (d *stateDecoder) level(field string, allowed uint8) uint8 {
	f := d.byte(field, allowed)
	if f&3 > uint8(AckProcessed) {
		d.reject(field, "level %d", f&3)
		return 0
	}
	return f
}
