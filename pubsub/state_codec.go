package pubsub

import (
	"fmt"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/ftsl-go/ftsl/internal/layercodec"
	"github.com/ftsl-go/ftsl/oneway"
)

// This file is the binary encoding of a HubState's own part: the "pubsub" section of a snapshot
// file. The listener's sessions and tickets (HubState.Listener) are not in it: the oneway and core
// layers encode them in sections of their own.
//
// Layout, format 2. An integer is an encoding/binary uvarint in its fewest bytes; a string or
// byte slice is its length (uvarint) and its bytes; a list is its count (uvarint) and its
// elements; a bool is one byte, 0 or 1. Fields go in their struct's order.
//
//	HubState:          format byte (2), Members list, Publishes list, RoundRobin, Published, Sent,
//	                   SlowDropped
//	MemberState:       Session, Connected, Refused, Identity, Inbox, Permissions, Subscriptions
//	                   list, Waiting (list of byte slices), Throttled, NoEcho
//	Permissions:       presence byte (0: nil, and nothing follows; 1), Identity, Publish, Subscribe
//	Rules:             Allow (list of strings), Deny (list of strings)
//	SubscriptionState: SID, Subject, Queue, Missed
//	PublishState:      Publisher, PubID, Level (0..2), Subject, Reply, Payload, Report, Reported,
//	                   Matched, Delivered, Processed, Failures list, Handed, Shares list
//	FailureState:      Subscriber, Reason
//	ShareState:        Subscriber, SID, Ticket, Group, Tried (list of integers), Had
//
// Format 1, the first release's, is format 2 without NoEcho: the decoder still reads it (NoEcho
// false), so that a snapshot written by that release restores. The encoder writes format 2 only.
//
// The encoding is canonical: bytes decode to at most one state, and encoding it gives the same
// bytes back (a longer-than-needed uvarint, a bool of 2 and trailing bytes are refused; an empty
// list, string or byte slice decodes as nil), format 1 aside, which encodes back as format 2. So
// one input has one meaning, and the fuzz test can hold the decoder to the encoder.
//
// The decoder trusts nothing: a snapshot file may be damaged, or written by someone else. Before
// it allocates for a count or a length it checks it against the bytes left, at the fewest bytes
// an element takes, so n bytes of input cost O(n) memory whatever they claim. It checks the
// encoding only; whether the state fits together (do the members' sessions exist, are the
// subjects valid) is NewHubFrom's business (checkState).

// hubStateFormat is the version byte the layer starts with; a decoder refuses the others but
// hubStateFormat1, so that a later layout can be told apart and converted.
const hubStateFormat = 2

// hubStateFormat1 is the first release's layout: a member has no NoEcho.
const hubStateFormat1 = 1

// The fewest bytes an element encodes into (every integer and length one byte, lists empty,
// Permissions absent): a count is checked against them before anything is allocated for it.
// TestHubStateCodecMinSizes pins them.
const (
	minMemberLen       = 10 // Session, 2 bools, 2 lengths, presence, 2 counts, 2 bools
	minMemberLen1      = 9  // format 1: without NoEcho
	minSubscriptionLen = 4  // SID, 2 lengths, Missed
	minPublishLen      = 14 // Publisher, PubID, Level, 3 lengths, 2 bools, 3 counts, 2 list counts, Handed
	minFailureLen      = 2  // 2 lengths
	minShareLen        = 6  // Subscriber, SID, Ticket, length, count, bool
	minStringLen       = 1  // length (a list of strings or byte slices)
	minUvarintLen      = 1  // (a list of integers)
)

// MarshalLayer encodes the hub's own part of the state: everything but Listener (the oneway and
// core layers encode theirs; a snapshot keeps each in its own section). A publish's Level above
// AckProcessed has no encoding: it is refused with an error matching core.ErrInvalidState. The
// result is the caller's.
func (st *HubState) MarshalLayer() ([]byte, error) {
	if st == nil {
		return nil, ftslerr.Errorf("ftsl: pubsub state: %w: nil *HubState", core.ErrInvalidState)
	}
	e := layercodec.Encoder{B: make([]byte, 0, st.size())}
	e.Byte(hubStateFormat)
	e.Uvarint(uint64(len(st.Members)))
	for i := range st.Members {
		encodeMember(&e, &st.Members[i])
	}
	e.Uvarint(uint64(len(st.Publishes)))
	for i := range st.Publishes {
		p := &st.Publishes[i]
		if p.Level > oneway.AckProcessed {
			return nil, ftslerr.Errorf("ftsl: pubsub state: %w: Publishes[%d] (publish %d of %d): Level %d has no encoding",
				core.ErrInvalidState, i, p.PubID, p.Publisher, p.Level)
		}
		encodePublish(&e, p)
	}
	e.Uvarint(st.RoundRobin)
	e.Uvarint(st.Published)
	e.Uvarint(st.Sent)
	e.Uvarint(st.SlowDropped)
	return e.B, nil
}

// UnmarshalLayer decodes what MarshalLayer encoded into st, replacing everything but st.Listener,
// which it leaves untouched. Format 1 (the first release's) decodes with NoEcho false. Input
// that is no such encoding (another format version, truncated, with bytes left over, a count or
// length beyond what the input could hold, a bool not 0 or 1, a Level above AckProcessed) is
// refused with an error matching core.ErrInvalidState that names the field and its byte offset,
// and st is left unchanged. Empty lists, strings and byte slices come back nil; nothing decoded
// shares memory with b.
func (st *HubState) UnmarshalLayer(b []byte) error {
	if st == nil {
		return ftslerr.Errorf("ftsl: pubsub state: %w: nil *HubState", core.ErrInvalidState)
	}
	format, msg := hubStateVersion(b)
	if msg != "" {
		return ftslerr.Errorf("ftsl: pubsub state: %w: %s", core.ErrInvalidState, msg)
	}
	d := layercodec.NewDecoder(b, 1, layercodec.Short, hubStateError)
	var out HubState
	minMember := minMemberLen
	if format == hubStateFormat1 {
		minMember = minMemberLen1 // (10 would refuse a real state of minimal members)
	}
	out.Members = layercodec.List(d, "Members", minMember, func(d *layercodec.Decoder, m *MemberState) {
		decodeMember(d, m, format)
	})
	out.Publishes = layercodec.List(d, "Publishes", minPublishLen, decodePublish)
	out.RoundRobin = d.Uvarint("RoundRobin")
	out.Published = d.Uvarint("Published")
	out.Sent = d.Uvarint("Sent")
	out.SlowDropped = d.Uvarint("SlowDropped")
	if err := d.End("end"); err != nil {
		return err
	}
	out.Listener = st.Listener
	*st = out
	return nil
}

// hubStateVersion returns the format b is in, or why it is none this side reads.
func hubStateVersion(b []byte) (uint8, string) {
	switch {
	case len(b) == 0:
		return 0, "empty input"
	case b[0] != hubStateFormat && b[0] != hubStateFormat1:
		return 0, fmt.Sprintf("format version %d, this side reads %d and %d", b[0], hubStateFormat1, hubStateFormat)
	}
	return b[0], ""
}

func hubStateError(where string, off int, msg string) error {
	if where == "" {
		where = "state"
	}
	return ftslerr.Errorf("ftsl: pubsub state: %w: %s at byte %d: %s", core.ErrInvalidState, where, off, msg)
}

// size is the number of bytes st encodes into, so that the encoder allocates once and no more.
func (st *HubState) size() int {
	uvarintLen, strLen := layercodec.UvarintLen, layercodec.StringLen
	n := 1 + uvarintLen(uint64(len(st.Members))) + uvarintLen(uint64(len(st.Publishes))) +
		uvarintLen(st.RoundRobin) + uvarintLen(st.Published) + uvarintLen(st.Sent) + uvarintLen(st.SlowDropped)
	for i := range st.Members {
		m := &st.Members[i]
		n += uvarintLen(m.Session) + 2 + strLen(m.Identity) + strLen(m.Inbox) + 1 +
			uvarintLen(uint64(len(m.Subscriptions))) + uvarintLen(uint64(len(m.Waiting))) + 2
		if p := m.Permissions; p != nil {
			n += strLen(p.Identity) + listLen(p.Publish.Allow) + listLen(p.Publish.Deny) +
				listLen(p.Subscribe.Allow) + listLen(p.Subscribe.Deny)
		}
		for j := range m.Subscriptions {
			s := &m.Subscriptions[j]
			n += uvarintLen(s.SID) + strLen(s.Subject) + strLen(s.Queue) + uvarintLen(s.Missed)
		}
		for _, w := range m.Waiting {
			n += uvarintLen(uint64(len(w))) + len(w)
		}
	}
	for i := range st.Publishes {
		p := &st.Publishes[i]
		n += uvarintLen(p.Publisher) + uvarintLen(p.PubID) + uvarintLen(uint64(p.Level)) + strLen(p.Subject) +
			strLen(p.Reply) + uvarintLen(uint64(len(p.Payload))) + len(p.Payload) + 2 + uvarintLen(p.Matched) +
			uvarintLen(p.Delivered) + uvarintLen(p.Processed) + uvarintLen(uint64(len(p.Failures))) +
			uvarintLen(p.Handed) + uvarintLen(uint64(len(p.Shares)))
		for _, f := range p.Failures {
			n += strLen(f.Subscriber) + strLen(f.Reason)
		}
		for j := range p.Shares {
			s := &p.Shares[j]
			n += uvarintLen(s.Subscriber) + uvarintLen(s.SID) + uvarintLen(s.Ticket) + strLen(s.Group) +
				uvarintLen(uint64(len(s.Tried))) + 1
			for _, t := range s.Tried {
				n += uvarintLen(t)
			}
		}
	}
	return n
}

func listLen(ss []string) int {
	n := layercodec.UvarintLen(uint64(len(ss)))
	for _, s := range ss {
		n += layercodec.StringLen(s)
	}
	return n
}

func encodeMember(e *layercodec.Encoder, m *MemberState) {
	e.Uvarint(m.Session)
	e.Bool(m.Connected)
	e.Bool(m.Refused)
	e.String(m.Identity)
	e.String(m.Inbox)
	e.Bool(m.Permissions != nil)
	if p := m.Permissions; p != nil {
		e.String(p.Identity)
		e.Strings(p.Publish.Allow)
		e.Strings(p.Publish.Deny)
		e.Strings(p.Subscribe.Allow)
		e.Strings(p.Subscribe.Deny)
	}
	e.Uvarint(uint64(len(m.Subscriptions)))
	for i := range m.Subscriptions {
		s := &m.Subscriptions[i]
		e.Uvarint(s.SID)
		e.String(s.Subject)
		e.String(s.Queue)
		e.Uvarint(s.Missed)
	}
	e.Uvarint(uint64(len(m.Waiting)))
	for _, w := range m.Waiting {
		e.Bytes(w)
	}
	e.Bool(m.Throttled)
	e.Bool(m.NoEcho)
}

func encodePublish(e *layercodec.Encoder, p *PublishState) {
	e.Uvarint(p.Publisher)
	e.Uvarint(p.PubID)
	e.Uvarint(uint64(p.Level))
	e.String(p.Subject)
	e.String(p.Reply)
	e.Bytes(p.Payload)
	e.Bool(p.Report)
	e.Bool(p.Reported)
	e.Uvarint(p.Matched)
	e.Uvarint(p.Delivered)
	e.Uvarint(p.Processed)
	e.Uvarint(uint64(len(p.Failures)))
	for _, f := range p.Failures {
		e.String(f.Subscriber)
		e.String(f.Reason)
	}
	e.Uvarint(p.Handed)
	e.Uvarint(uint64(len(p.Shares)))
	for i := range p.Shares {
		s := &p.Shares[i]
		e.Uvarint(s.Subscriber)
		e.Uvarint(s.SID)
		e.Uvarint(s.Ticket)
		e.String(s.Group)
		e.Uvarint(uint64(len(s.Tried)))
		for _, t := range s.Tried {
			e.Uvarint(t)
		}
		e.Bool(s.Had)
	}
}

func decodeMember(d *layercodec.Decoder, m *MemberState, format uint8) {
	m.Session = d.Uvarint("Session")
	m.Connected = d.Bool("Connected")
	m.Refused = d.Bool("Refused")
	m.Identity = d.String("Identity")
	m.Inbox = d.String("Inbox")
	if d.Bool("Permissions") {
		p := &Permissions{}
		p.Identity = d.String("Permissions.Identity")
		p.Publish.Allow = d.Strings("Permissions.Publish.Allow")
		p.Publish.Deny = d.Strings("Permissions.Publish.Deny")
		p.Subscribe.Allow = d.Strings("Permissions.Subscribe.Allow")
		p.Subscribe.Deny = d.Strings("Permissions.Subscribe.Deny")
		m.Permissions = p
	}
	m.Subscriptions = layercodec.List(d, "Subscriptions", minSubscriptionLen, func(d *layercodec.Decoder, s *SubscriptionState) {
		s.SID = d.Uvarint("SID")
		s.Subject = d.String("Subject")
		s.Queue = d.String("Queue")
		s.Missed = d.Uvarint("Missed")
	})
	m.Waiting = layercodec.List(d, "Waiting", minStringLen, func(d *layercodec.Decoder, b *[]byte) { *b = d.Bytes("") })
	m.Throttled = d.Bool("Throttled")
	if format != hubStateFormat1 {
		m.NoEcho = d.Bool("NoEcho")
	}
}

func decodePublish(d *layercodec.Decoder, p *PublishState) {
	p.Publisher = d.Uvarint("Publisher")
	p.PubID = d.Uvarint("PubID")
	if l := d.Uvarint("Level"); l > uint64(oneway.AckProcessed) {
		d.Reject("Level", "%d, not 0..%d", l, oneway.AckProcessed)
	} else {
		p.Level = oneway.AckLevel(l)
	}
	p.Subject = d.String("Subject")
	p.Reply = d.String("Reply")
	p.Payload = d.Bytes("Payload")
	p.Report = d.Bool("Report")
	p.Reported = d.Bool("Reported")
	p.Matched = d.Uvarint("Matched")
	p.Delivered = d.Uvarint("Delivered")
	p.Processed = d.Uvarint("Processed")
	p.Failures = layercodec.List(d, "Failures", minFailureLen, func(d *layercodec.Decoder, f *FailureState) {
		f.Subscriber = d.String("Subscriber")
		f.Reason = d.String("Reason")
	})
	p.Handed = d.Uvarint("Handed")
	p.Shares = layercodec.List(d, "Shares", minShareLen, func(d *layercodec.Decoder, s *ShareState) {
		s.Subscriber = d.Uvarint("Subscriber")
		s.SID = d.Uvarint("SID")
		s.Ticket = d.Uvarint("Ticket")
		s.Group = d.String("Group")
		s.Tried = layercodec.List(d, "Tried", minUvarintLen, func(d *layercodec.Decoder, v *uint64) { *v = d.Uvarint("") })
		s.Had = d.Bool("Had")
	})
}
