package pubsub

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/oneway"
)

// This file is the binary encoding of a HubState's own part: the "pubsub" section of a snapshot
// file. The listener's sessions and tickets (HubState.Listener) are not in it: the oneway and core
// layers encode them in sections of their own.
//
// Layout, format 1. An integer is an encoding/binary uvarint in its fewest bytes; a string or
// byte slice is its length (uvarint) and its bytes; a list is its count (uvarint) and its
// elements; a bool is one byte, 0 or 1. Fields go in their struct's order.
//
//	HubState:          format byte (1), Members list, Publishes list, RoundRobin, Published, Sent,
//	                   SlowDropped
//	MemberState:       Session, Connected, Refused, Identity, Inbox, Permissions, Subscriptions
//	                   list, Waiting (list of byte slices), Throttled
//	Permissions:       presence byte (0: nil, and nothing follows; 1), Identity, Publish, Subscribe
//	Rules:             Allow (list of strings), Deny (list of strings)
//	SubscriptionState: SID, Subject, Queue, Missed
//	PublishState:      Publisher, PubID, Level (0..2), Subject, Reply, Payload, Report, Reported,
//	                   Matched, Delivered, Processed, Failures list, Handed, Shares list
//	FailureState:      Subscriber, Reason
//	ShareState:        Subscriber, SID, Ticket, Group, Tried (list of integers), Had
//
// The encoding is canonical: bytes decode to at most one state, and encoding it gives the same
// bytes back (a longer-than-needed uvarint, a bool of 2 and trailing bytes are refused; an empty
// list, string or byte slice decodes as nil). So one input has one meaning, and the fuzz test
// can hold the decoder to the encoder.
//
// The decoder trusts nothing: a snapshot file may be damaged, or written by someone else. Before
// it allocates for a count or a length it checks it against the bytes left, at the fewest bytes
// an element takes, so n bytes of input cost O(n) memory whatever they claim. It checks the
// encoding only; whether the state fits together (do the members' sessions exist, are the
// subjects valid) is NewHubFrom's business (checkState).

// hubStateFormat is the version byte the layer starts with; a decoder refuses the others, so
// that a later layout can be told apart and converted.
const hubStateFormat = 1

// The fewest bytes an element encodes into (every integer and length one byte, lists empty,
// Permissions absent): a count is checked against them before anything is allocated for it.
// TestHubStateCodecMinSizes pins them.
const (
	minMemberLen       = 9  // Session, 2 bools, 2 lengths, presence, 2 counts, bool
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
		return nil, fmt.Errorf("ftsl: pubsub state: %w: nil *HubState", core.ErrInvalidState)
	}
	e := hubEncoder{b: make([]byte, 0, st.size())}
	e.b = append(e.b, hubStateFormat)
	e.uvarint(uint64(len(st.Members)))
	for i := range st.Members {
		e.member(&st.Members[i])
	}
	e.uvarint(uint64(len(st.Publishes)))
	for i := range st.Publishes {
		p := &st.Publishes[i]
		if p.Level > oneway.AckProcessed {
			return nil, fmt.Errorf("ftsl: pubsub state: %w: Publishes[%d] (publish %d of %d): Level %d has no encoding",
				core.ErrInvalidState, i, p.PubID, p.Publisher, p.Level)
		}
		e.publish(p)
	}
	e.uvarint(st.RoundRobin)
	e.uvarint(st.Published)
	e.uvarint(st.Sent)
	e.uvarint(st.SlowDropped)
	return e.b, nil
}

// UnmarshalLayer decodes what MarshalLayer encoded into st, replacing everything but st.Listener,
// which it leaves untouched. Input that is no such encoding (another format version, truncated,
// with bytes left over, a count or length beyond what the input could hold, a bool not 0 or 1, a
// Level above AckProcessed) is refused with an error matching core.ErrInvalidState that names the
// field and its byte offset, and st is left unchanged. Empty lists, strings and byte slices come
// back nil; nothing decoded shares memory with b.
func (st *HubState) UnmarshalLayer(b []byte) error {
	if st == nil {
		return fmt.Errorf("ftsl: pubsub state: %w: nil *HubState", core.ErrInvalidState)
	}
	if len(b) == 0 {
		return fmt.Errorf("ftsl: pubsub state: %w: empty input", core.ErrInvalidState)
	}
	if b[0] != hubStateFormat {
		return fmt.Errorf("ftsl: pubsub state: %w: format version %d, this side reads %d", core.ErrInvalidState, b[0], hubStateFormat)
	}
	d := hubDecoder{b: b, off: 1}
	var out HubState
	if n := d.count("Members", minMemberLen); n > 0 {
		out.Members = make([]MemberState, n)
	}
	d.push("Members")
	for i := range out.Members {
		d.at(i)
		d.member(&out.Members[i])
	}
	d.pop()
	if n := d.count("Publishes", minPublishLen); n > 0 {
		out.Publishes = make([]PublishState, n)
	}
	d.push("Publishes")
	for i := range out.Publishes {
		d.at(i)
		d.publish(&out.Publishes[i])
	}
	d.pop()
	out.RoundRobin = d.uvarint("RoundRobin")
	out.Published = d.uvarint("Published")
	out.Sent = d.uvarint("Sent")
	out.SlowDropped = d.uvarint("SlowDropped")
	if d.err == nil && d.off != len(d.b) {
		d.fail("", "%d bytes after the end", len(d.b)-d.off)
	}
	if d.err != nil {
		return d.err
	}
	out.Listener = st.Listener
	*st = out
	return nil
}

// size is the number of bytes st encodes into, so that the encoder allocates once and no more.
func (st *HubState) size() int {
	n := 1 + uvarintLen(uint64(len(st.Members))) + uvarintLen(uint64(len(st.Publishes))) +
		uvarintLen(st.RoundRobin) + uvarintLen(st.Published) + uvarintLen(st.Sent) + uvarintLen(st.SlowDropped)
	for i := range st.Members {
		m := &st.Members[i]
		n += uvarintLen(m.Session) + 2 + strLen(m.Identity) + strLen(m.Inbox) + 1 +
			uvarintLen(uint64(len(m.Subscriptions))) + uvarintLen(uint64(len(m.Waiting))) + 1
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

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

func strLen(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

func listLen(ss []string) int {
	n := uvarintLen(uint64(len(ss)))
	for _, s := range ss {
		n += strLen(s)
	}
	return n
}

// hubEncoder appends the encoding to b.
type hubEncoder struct{ b []byte }

func (e *hubEncoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }

func (e *hubEncoder) string(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *hubEncoder) bytes(v []byte) {
	e.uvarint(uint64(len(v)))
	e.b = append(e.b, v...)
}

func (e *hubEncoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *hubEncoder) strings(ss []string) {
	e.uvarint(uint64(len(ss)))
	for _, s := range ss {
		e.string(s)
	}
}

func (e *hubEncoder) member(m *MemberState) {
	e.uvarint(m.Session)
	e.bool(m.Connected)
	e.bool(m.Refused)
	e.string(m.Identity)
	e.string(m.Inbox)
	e.bool(m.Permissions != nil)
	if p := m.Permissions; p != nil {
		e.string(p.Identity)
		e.strings(p.Publish.Allow)
		e.strings(p.Publish.Deny)
		e.strings(p.Subscribe.Allow)
		e.strings(p.Subscribe.Deny)
	}
	e.uvarint(uint64(len(m.Subscriptions)))
	for i := range m.Subscriptions {
		s := &m.Subscriptions[i]
		e.uvarint(s.SID)
		e.string(s.Subject)
		e.string(s.Queue)
		e.uvarint(s.Missed)
	}
	e.uvarint(uint64(len(m.Waiting)))
	for _, w := range m.Waiting {
		e.bytes(w)
	}
	e.bool(m.Throttled)
}

func (e *hubEncoder) publish(p *PublishState) {
	e.uvarint(p.Publisher)
	e.uvarint(p.PubID)
	e.uvarint(uint64(p.Level))
	e.string(p.Subject)
	e.string(p.Reply)
	e.bytes(p.Payload)
	e.bool(p.Report)
	e.bool(p.Reported)
	e.uvarint(p.Matched)
	e.uvarint(p.Delivered)
	e.uvarint(p.Processed)
	e.uvarint(uint64(len(p.Failures)))
	for _, f := range p.Failures {
		e.string(f.Subscriber)
		e.string(f.Reason)
	}
	e.uvarint(p.Handed)
	e.uvarint(uint64(len(p.Shares)))
	for i := range p.Shares {
		s := &p.Shares[i]
		e.uvarint(s.Subscriber)
		e.uvarint(s.SID)
		e.uvarint(s.Ticket)
		e.string(s.Group)
		e.uvarint(uint64(len(s.Tried)))
		for _, t := range s.Tried {
			e.uvarint(t)
		}
		e.bool(s.Had)
	}
}

// hubDecoder reads the encoding from b at off. The first fault sets err; after it every read
// returns a zero value and every count 0, so the decoding runs out without allocating more.
type hubDecoder struct {
	b   []byte
	off int
	err error
	// path is where the decoder is (Members[3].Subscriptions[1]), for the error: a stack of
	// list names and indices, kept without formatting until something fails.
	path  [3]pathStep
	depth int
}

type pathStep struct {
	name string
	idx  int // -1 until the list's first element
}

func (d *hubDecoder) push(name string) {
	d.path[d.depth] = pathStep{name: name, idx: -1}
	d.depth++
}

func (d *hubDecoder) at(i int) { d.path[d.depth-1].idx = i }

func (d *hubDecoder) pop() { d.depth-- }

// fail records the first fault, at field (within the current path) and the current offset.
func (d *hubDecoder) fail(field, format string, args ...any) {
	if d.err != nil {
		return
	}
	var where strings.Builder
	for _, s := range d.path[:d.depth] {
		if where.Len() > 0 {
			where.WriteByte('.')
		}
		where.WriteString(s.name)
		if s.idx >= 0 {
			where.WriteString("[" + strconv.Itoa(s.idx) + "]")
		}
	}
	if field != "" {
		if where.Len() > 0 {
			where.WriteByte('.')
		}
		where.WriteString(field)
	}
	if where.Len() == 0 {
		where.WriteString("state")
	}
	d.err = fmt.Errorf("ftsl: pubsub state: %w: %s at byte %d: %s", core.ErrInvalidState, where.String(), d.off,
		fmt.Sprintf(format, args...))
}

func (d *hubDecoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		d.fail(field, "truncated")
		return 0
	case n < 0:
		d.fail(field, "integer overflows 64 bits")
		return 0
	case n > 1 && d.b[d.off+n-1] == 0:
		// A last byte of 0 adds nothing: the same value fits in fewer bytes.
		d.fail(field, "integer in %d bytes, more than it needs", n)
		return 0
	}
	d.off += n
	return v
}

// length reads a length, or a count of elements taking at least least bytes each, and checks it
// against the bytes left (so it fits an int, even a 32-bit one) before anyone allocates for it.
func (d *hubDecoder) length(field, what string, least int) int {
	start := d.off
	v := d.uvarint(field)
	if d.err != nil {
		return 0
	}
	if left := uint64(len(d.b) - d.off); v > left/uint64(least) {
		d.off = start // (the error names where the field starts)
		d.fail(field, "%d %s in the %d bytes left", v, what, left)
		return 0
	}
	return int(v)
}

// count reads a list's count.
func (d *hubDecoder) count(field string, least int) int { return d.length(field, "elements", least) }

func (d *hubDecoder) raw(field string) []byte {
	n := d.length(field, "bytes", 1)
	if d.err != nil || n == 0 {
		return nil
	}
	v := d.b[d.off : d.off+n]
	d.off += n
	return v
}

func (d *hubDecoder) string(field string) string { return string(d.raw(field)) }

func (d *hubDecoder) bytes(field string) []byte {
	if v := d.raw(field); v != nil {
		return append([]byte(nil), v...)
	}
	return nil
}

func (d *hubDecoder) bool(field string) bool {
	if d.err != nil {
		return false
	}
	if d.off >= len(d.b) {
		d.fail(field, "truncated")
		return false
	}
	v := d.b[d.off]
	if v > 1 {
		d.fail(field, "bool %d, not 0 or 1", v)
		return false
	}
	d.off++
	return v == 1
}

func (d *hubDecoder) strings(field string) []string {
	n := d.count(field, minStringLen)
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	d.push(field)
	for i := range ss {
		d.at(i)
		ss[i] = d.string("")
	}
	d.pop()
	return ss
}

func (d *hubDecoder) member(m *MemberState) {
	m.Session = d.uvarint("Session")
	m.Connected = d.bool("Connected")
	m.Refused = d.bool("Refused")
	m.Identity = d.string("Identity")
	m.Inbox = d.string("Inbox")
	if d.bool("Permissions") {
		p := &Permissions{}
		p.Identity = d.string("Permissions.Identity")
		p.Publish.Allow = d.strings("Permissions.Publish.Allow")
		p.Publish.Deny = d.strings("Permissions.Publish.Deny")
		p.Subscribe.Allow = d.strings("Permissions.Subscribe.Allow")
		p.Subscribe.Deny = d.strings("Permissions.Subscribe.Deny")
		m.Permissions = p
	}
	if n := d.count("Subscriptions", minSubscriptionLen); n > 0 {
		m.Subscriptions = make([]SubscriptionState, n)
	}
	d.push("Subscriptions")
	for i := range m.Subscriptions {
		d.at(i)
		s := &m.Subscriptions[i]
		s.SID = d.uvarint("SID")
		s.Subject = d.string("Subject")
		s.Queue = d.string("Queue")
		s.Missed = d.uvarint("Missed")
	}
	d.pop()
	if n := d.count("Waiting", minStringLen); n > 0 {
		m.Waiting = make([][]byte, n)
	}
	d.push("Waiting")
	for i := range m.Waiting {
		d.at(i)
		m.Waiting[i] = d.bytes("")
	}
	d.pop()
	m.Throttled = d.bool("Throttled")
}

func (d *hubDecoder) publish(p *PublishState) {
	p.Publisher = d.uvarint("Publisher")
	p.PubID = d.uvarint("PubID")
	start := d.off
	if l := d.uvarint("Level"); l > uint64(oneway.AckProcessed) {
		d.off = start
		d.fail("Level", "%d, not 0..%d", l, oneway.AckProcessed)
	} else {
		p.Level = oneway.AckLevel(l)
	}
	p.Subject = d.string("Subject")
	p.Reply = d.string("Reply")
	p.Payload = d.bytes("Payload")
	p.Report = d.bool("Report")
	p.Reported = d.bool("Reported")
	p.Matched = d.uvarint("Matched")
	p.Delivered = d.uvarint("Delivered")
	p.Processed = d.uvarint("Processed")
	if n := d.count("Failures", minFailureLen); n > 0 {
		p.Failures = make([]FailureState, n)
	}
	d.push("Failures")
	for i := range p.Failures {
		d.at(i)
		p.Failures[i].Subscriber = d.string("Subscriber")
		p.Failures[i].Reason = d.string("Reason")
	}
	d.pop()
	p.Handed = d.uvarint("Handed")
	if n := d.count("Shares", minShareLen); n > 0 {
		p.Shares = make([]ShareState, n)
	}
	d.push("Shares")
	for i := range p.Shares {
		d.at(i)
		s := &p.Shares[i]
		s.Subscriber = d.uvarint("Subscriber")
		s.SID = d.uvarint("SID")
		s.Ticket = d.uvarint("Ticket")
		s.Group = d.string("Group")
		if n := d.count("Tried", minUvarintLen); n > 0 {
			s.Tried = make([]uint64, n)
		}
		d.push("Tried")
		for j := range s.Tried {
			d.at(j)
			s.Tried[j] = d.uvarint("")
		}
		d.pop()
		s.Had = d.bool("Had")
	}
	d.pop()
}
