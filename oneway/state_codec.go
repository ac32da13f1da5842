package oneway

import (
	"encoding/binary"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/ftsl-go/ftsl/internal/layercodec"
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
		return nil, ftslerr.Errorf("ftsl: oneway state: %w: nil", core.ErrInvalidState)
	}
	size := 1 + binary.MaxVarintLen64
	for i := range st.Sessions {
		ss := &st.Sessions[i]
		size += 24 + 6*len(ss.Tickets) + 8*len(ss.Attempts)
	}
	e := layercodec.Encoder{B: make([]byte, 0, size)}
	e.Byte(stateFormat)
	e.Uvarint(uint64(len(st.Sessions)))
	bad := func(i int, format string, args ...any) error {
		return ftslerr.Errorf("ftsl: oneway state: %w: Sessions[%d] (ID %d): "+format,
			append([]any{core.ErrInvalidState, i, st.Sessions[i].ID}, args...)...)
	}
	for i := range st.Sessions {
		ss := &st.Sessions[i]
		for _, v := range [...]uint64{ss.ID, ss.AckDone, ss.DelDone, ss.ProcDone, uint64(len(ss.Tickets))} {
			e.Uvarint(v)
		}
		for k, t := range ss.Tickets {
			if t.Level > AckProcessed {
				return nil, bad(i, "Tickets[%d]: level %d", k, t.Level)
			}
			f := uint8(t.Level)
			if t.Delivered {
				f |= tsDelivered
			}
			e.Uvarint(t.ID)
			e.Byte(f)
		}
		e.Uvarint(uint64(len(ss.Attempts)))
		for k, a := range ss.Attempts {
			if a.Failed < 0 {
				return nil, bad(i, "Attempts[%d].Failed %d is negative", k, a.Failed)
			}
			e.Uvarint(a.ID)
			e.Uvarint(uint64(a.Failed))
		}
	}
	return e.B, nil
}

// UnmarshalLayer decodes what MarshalLayer encoded into st.Sessions, leaving st.Core alone.
// Input that is not such an encoding is refused with an error matching core.ErrInvalidState
// that names the field and its byte offset, and st is left unchanged. Empty lists come back nil.
func (st *ListenerState) UnmarshalLayer(b []byte) error {
	if st == nil {
		return ftslerr.Errorf("ftsl: oneway state: %w: decoding into nil", core.ErrInvalidState)
	}
	if msg := layercodec.CheckVersion(b, stateFormat); msg != "" {
		return ftslerr.Errorf("ftsl: oneway state: %w: %s", core.ErrInvalidState, msg)
	}
	d := layercodec.NewDecoder(b, 1, layercodec.Plain, stateError)
	sessions := layercodec.List(d, "Sessions", minSessionLen, func(d *layercodec.Decoder, ss *SessionState) {
		ss.ID = d.Uvarint("ID")
		ss.AckDone = d.Uvarint("AckDone")
		ss.DelDone = d.Uvarint("DelDone")
		ss.ProcDone = d.Uvarint("ProcDone")
		ss.Tickets = layercodec.List(d, "Tickets", minTicketLen, func(d *layercodec.Decoder, t *TicketState) {
			t.ID = d.Uvarint("ID")
			f := d.Byte("flags", tsFlags)
			if f&3 > uint8(AckProcessed) {
				d.Reject("flags", "level %d", f&3)
			}
			t.Level, t.Delivered = AckLevel(f&3), f&tsDelivered != 0
		})
		ss.Attempts = layercodec.List(d, "Attempts", minAttemptLen, func(d *layercodec.Decoder, a *AttemptState) {
			a.ID = d.Uvarint("ID")
			a.Failed = d.Int("Failed")
		})
	})
	if err := d.End("last session"); err != nil {
		return err
	}
	st.Sessions = sessions
	return nil
}

func stateError(where string, off int, msg string) error {
	if where != "" {
		where += " "
	}
	return ftslerr.Errorf("ftsl: oneway state: %w: %sat byte %d: %s", core.ErrInvalidState, where, off, msg)
}
