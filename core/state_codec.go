package core

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/ftsl-go/ftsl/internal/layercodec"
)

// This file is the binary encoding of ListenerState: the "core" section of a snapshot file
// (snapshot/FORMAT.md describes it field by field). The encoding is canonical: a byte string
// decodes to at most one state, and encoding that state gives the same bytes back, so a fuzzer
// can check the decoder against the encoder, and one input has one meaning.
//
// The decoder trusts nothing: a file may be damaged, or forged by whoever can write it. It never
// allocates for a count or a length before checking it against the bytes left, so an input of n
// bytes costs O(n) memory whatever it claims (layercodec holds these rules for every layer). It
// checks the encoding and plain range limits only; whether the sessions make sense is
// NewListenerFrom's business (importSession).

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
		return nil, ftslerr.Errorf("ftsl: core state: %w: nil", ErrInvalidState)
	}
	size := 1 + binary.MaxVarintLen64
	for i := range st.Sessions {
		size += st.Sessions[i].sizeHint()
	}
	e := stateEncoder{Encoder: layercodec.Encoder{B: make([]byte, 0, size)}}
	e.Byte(stateFormat)
	e.Uvarint(uint64(len(st.Sessions)))
	for i := range st.Sessions {
		e.session(&st.Sessions[i])
		if e.err != nil {
			return nil, ftslerr.Errorf("ftsl: core state: %w: Sessions[%d] (ID %d): %v", ErrInvalidState, i, st.Sessions[i].ID, e.err)
		}
	}
	return e.B, nil
}

// UnmarshalLayer decodes what MarshalLayer encoded into st, replacing its sessions. Input that is
// not such an encoding (another version, truncated, with bytes left over, a count beyond what the
// input could hold, a value out of range) is refused with an error matching ErrInvalidState that
// names the field and its byte offset, and st is left unchanged. Byte strings that are empty come
// back nil; the others do not share memory with b.
func (st *ListenerState) UnmarshalLayer(b []byte) error {
	if st == nil {
		return ftslerr.Errorf("ftsl: core state: %w: decoding into nil", ErrInvalidState)
	}
	if msg := layercodec.CheckVersion(b, stateFormat); msg != "" {
		return ftslerr.Errorf("ftsl: core state: %w: %s", ErrInvalidState, msg)
	}
	d := layercodec.NewDecoder(b, 1, layercodec.Plain, stateError)
	var out ListenerState
	out.Sessions = layercodec.List(d, "Sessions", minSessionLen, decodeSession)
	if err := d.End("last session"); err != nil {
		return err
	}
	*st = out
	return nil
}

func stateError(where string, off int, msg string) error {
	if where != "" {
		where += " "
	}
	return ftslerr.Errorf("ftsl: core state: %w: %sat byte %d: %s", ErrInvalidState, where, off, msg)
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

// stateEncoder appends the encoding. The first value it cannot encode sets err; later calls
// still append, and the caller drops the result.
type stateEncoder struct {
	layercodec.Encoder
	err error
}

func (e *stateEncoder) int(field string, v int) {
	if v < 0 && e.err == nil {
		e.err = fmt.Errorf("%s %d is negative", field, v)
	}
	e.Uvarint(uint64(v))
}

func (e *stateEncoder) duration(field string, v time.Duration) {
	if v < 0 && e.err == nil {
		e.err = fmt.Errorf("%s %v is negative", field, v)
	}
	e.Uvarint(uint64(v))
}

func (e *stateEncoder) level(field string, l AckLevel) uint8 {
	if l > AckProcessed && e.err == nil {
		e.err = fmt.Errorf("%s: level %d", field, l)
	}
	return uint8(l) & 3
}

func (e *stateEncoder) session(ss *SessionState) {
	e.Uvarint(ss.ID)
	e.B = append(e.B, ss.Token[:]...)
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
	e.Byte(flags)

	p := &ss.Params
	e.Byte(p.Version)
	e.int("Params.MaxMessageSize", p.MaxMessageSize)
	e.int("Params.ReceiveBufferBytes", p.ReceiveBufferBytes)
	e.int("Params.SendBufferBytes", p.SendBufferBytes)
	e.duration("Params.DeadPeerTimeout", p.DeadPeerTimeout)
	e.Uvarint(uint64(p.PeerMaxMessageSize))
	e.Uvarint(uint64(p.PeerReceiveBufferBytes))
	e.Uvarint(uint64(p.PeerSendBufferBytes))
	e.duration("Params.PeerDeadPeerTimeout", p.PeerDeadPeerTimeout)

	s := &ss.Send
	e.Bytes(s.Frames)
	e.Uvarint(s.FirstPID)
	e.Uvarint(s.FirstOffset)
	e.Uvarint(s.NextPID)
	e.Uvarint(s.NextMID)
	a := &s.PeerAck
	for _, v := range [...]uint64{a.RPID, a.DMID, a.PMID, a.FAck, a.Credit, s.AckedMID} {
		e.Uvarint(v)
	}

	r := &ss.Recv
	e.Uvarint(r.RPID)
	e.Uvarint(r.Cost)
	e.Uvarint(r.ReleasedCost)
	e.Uvarint(r.Released)
	e.Uvarint(uint64(len(r.Messages)))
	for i := range r.Messages {
		m := &r.Messages[i]
		e.Uvarint(m.ID)
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
		e.Byte(f)
		e.Uvarint(m.Cost)
		e.Bytes(m.Data)
	}
	if pm := r.Partial; pm != nil {
		e.Uvarint(pm.ID)
		f := e.level("Recv.Partial", pm.Level)
		if pm.Resent {
			f |= rmResent
		}
		e.Byte(f)
		e.Uvarint(pm.Cost)
		e.Bytes(pm.Data)
	}
	e.Uvarint(uint64(len(r.Fails)))
	for _, f := range r.Fails {
		e.Uvarint(f.Seq)
		e.Uvarint(f.MID)
		e.String(f.Reason)
	}
	e.Uvarint(r.NextFailSeq)
	e.Uvarint(r.PeerFailSeq)
	e.int("Recv.MaxInFlight", r.MaxInFlight)

	t := &ss.Stats
	for _, v := range [...]uint64{t.MessagesSent, t.MessagesReceived, t.BytesSent, t.BytesReceived, t.FramesResent, t.Reconnects} {
		e.Uvarint(v)
	}
}

func decodeSession(d *layercodec.Decoder, ss *SessionState) {
	ss.ID = d.Uvarint("ID")
	d.Fill("Token", "token", ss.Token[:])
	flags := d.Byte("flags", ssFlags)
	ss.Accepted = flags&ssAccepted != 0
	ss.CloseRequested = flags&ssCloseRequested != 0
	ss.PeerClosing = flags&ssPeerClosing != 0

	p := &ss.Params
	p.Version = d.Byte("Params.Version", 0xff)
	p.MaxMessageSize = d.Int("Params.MaxMessageSize")
	p.ReceiveBufferBytes = d.Int("Params.ReceiveBufferBytes")
	p.SendBufferBytes = d.Int("Params.SendBufferBytes")
	p.DeadPeerTimeout = duration(d, "Params.DeadPeerTimeout")
	p.PeerMaxMessageSize = uint32Of(d, "Params.PeerMaxMessageSize")
	p.PeerReceiveBufferBytes = uint32Of(d, "Params.PeerReceiveBufferBytes")
	p.PeerSendBufferBytes = uint32Of(d, "Params.PeerSendBufferBytes")
	p.PeerDeadPeerTimeout = duration(d, "Params.PeerDeadPeerTimeout")

	s := &ss.Send
	s.Frames = d.Bytes("Send.Frames")
	s.FirstPID = d.Uvarint("Send.FirstPID")
	s.FirstOffset = d.Uvarint("Send.FirstOffset")
	s.NextPID = d.Uvarint("Send.NextPID")
	s.NextMID = d.Uvarint("Send.NextMID")
	a := &s.PeerAck
	a.RPID = d.Uvarint("Send.PeerAck.RPID")
	a.DMID = d.Uvarint("Send.PeerAck.DMID")
	a.PMID = d.Uvarint("Send.PeerAck.PMID")
	a.FAck = d.Uvarint("Send.PeerAck.FAck")
	a.Credit = d.Uvarint("Send.PeerAck.Credit")
	s.AckedMID = d.Uvarint("Send.AckedMID")

	r := &ss.Recv
	r.RPID = d.Uvarint("Recv.RPID")
	r.Cost = d.Uvarint("Recv.Cost")
	r.ReleasedCost = d.Uvarint("Recv.ReleasedCost")
	r.Released = d.Uvarint("Recv.Released")
	r.Messages = layercodec.List(d, "Recv.Messages", minMessageLen, func(d *layercodec.Decoder, m *ReceivedMessage) {
		m.ID = d.Uvarint("ID")
		f := level(d, "flags", rmFlags)
		m.Level = AckLevel(f & 3)
		m.Resent = f&rmResent != 0
		m.Cancelled = f&rmCancelled != 0
		m.Delivered = f&rmDelivered != 0
		m.Settled = f&rmSettled != 0
		m.Cost = d.Uvarint("Cost")
		m.Data = d.Bytes("Data")
	})
	if flags&ssPartial != 0 {
		pm := &PartialMessage{}
		pm.ID = d.Uvarint("Recv.Partial.ID")
		f := level(d, "Recv.Partial.flags", pmFlags)
		pm.Level = AckLevel(f & 3)
		pm.Resent = f&rmResent != 0
		pm.Cost = d.Uvarint("Recv.Partial.Cost")
		pm.Data = d.Bytes("Recv.Partial.Data")
		r.Partial = pm
	}
	r.Fails = layercodec.List(d, "Recv.Fails", minFailLen, func(d *layercodec.Decoder, f *FailReport) {
		f.Seq = d.Uvarint("Seq")
		f.MID = d.Uvarint("MID")
		f.Reason = d.String("Reason")
	})
	r.NextFailSeq = d.Uvarint("Recv.NextFailSeq")
	r.PeerFailSeq = d.Uvarint("Recv.PeerFailSeq")
	r.MaxInFlight = d.Int("Recv.MaxInFlight")

	t := &ss.Stats
	t.MessagesSent = d.Uvarint("Stats.MessagesSent")
	t.MessagesReceived = d.Uvarint("Stats.MessagesReceived")
	t.BytesSent = d.Uvarint("Stats.BytesSent")
	t.BytesReceived = d.Uvarint("Stats.BytesReceived")
	t.FramesResent = d.Uvarint("Stats.FramesResent")
	t.Reconnects = d.Uvarint("Stats.Reconnects")
}

func uint32Of(d *layercodec.Decoder, field string) uint32 {
	v := d.Uvarint(field)
	if v > math.MaxUint32 {
		d.Reject(field, "%d does not fit in 32 bits", v)
		return 0
	}
	return uint32(v)
}

func duration(d *layercodec.Decoder, field string) time.Duration {
	v := d.Uvarint(field)
	if v > math.MaxInt64 {
		d.Reject(field, "%d ns is out of range", v)
		return 0
	}
	return time.Duration(v)
}

// level reads a flags byte whose low two bits are an AckLevel.
func level(d *layercodec.Decoder, field string, allowed uint8) uint8 {
	f := d.Byte(field, allowed)
	if f&3 > uint8(AckProcessed) {
		d.Reject(field, "level %d", f&3)
		return 0
	}
	return f
}
