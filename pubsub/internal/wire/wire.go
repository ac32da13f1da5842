// Package wire is the pubsub protocol: the messages a client and a hub exchange as one-way
// messages on their FTSL session. Each starts with an op byte; integers are unsigned varints,
// strings a varint length and their bytes; a payload, when there is one, is the rest of the
// message, so a hub can send it to many subscribers behind a per-subscriber header without
// copying it.
//
//	CONNECT  op=1  version u8, name, token, user, password, inbox[, flags u8]
//	SUB      op=2  sid, subject, queue
//	UNSUB    op=3  sid
//	PUB      op=4  pubID, level u8 (| 0x80: report delivered), subject, reply, payload
//	MSG      op=16 sid, subject, reply, publisher, payload
//	OUTCOME  op=17 pubID, matched, delivered, processed, failures: count, then (subscriber, reason)
//	NOTICE   op=18 kind u8, sid, text
//	PROGRESS op=19 pubID, matched, delivered
//
// CONNECT's flags byte is written only when a flag is set: a client that sets none sends what
// the first release did, and so still connects to a hub of that release, while one that asks for
// NoEcho is refused by such a hub ("bytes after CONNECT") rather than echoed without a word. A
// decoder takes a CONNECT without the byte as flags 0, and refuses a flags byte of 0 (so that a
// CONNECT has one encoding) and bits it does not know.
//
// PROGRESS answers a PUB at level processed whose level byte has ReportDelivered: every matched
// subscriber was handed the message, and the OUTCOME is still to come. The hub sends it at most
// once, before the OUTCOME, and not at all if the outcome is complete by then.
//
// The answers to CONNECT, SUB, UNSUB and PUB are the session's own: the hub confirms the message
// (accepted) or rejects it with a reason (refused), and the client's ticket says which.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// Version is the protocol version a client announces in CONNECT.
const Version = 1

// Ops.
const (
	OpConnect  = 1
	OpSub      = 2
	OpUnsub    = 3
	OpPub      = 4
	OpMsg      = 16
	OpOutcome  = 17
	OpNotice   = 18
	OpProgress = 19
)

// CONNECT flags.
const (
	// ConnectNoEcho: the hub sends none of the client's own publishes to its subscriptions.
	ConnectNoEcho = 1 << 0

	connectFlagsKnown = ConnectNoEcho
)

// ReportDelivered, or'ed into PUB's level byte, asks for a PROGRESS.
const ReportDelivered = 0x80

// Notice kinds.
const (
	// NoticeSlow: the hub could not hand the subscription a message in time; the text says how
	// many were missed.
	NoticeSlow = 1
)

// MaxString bounds every string field: subjects, names, credentials, reasons.
const MaxString = 4096

// MaxFailures bounds the failures an OUTCOME lists; the counts are always exact.
const MaxFailures = 1000

// ErrMalformed is what a message that breaks these rules decodes to.
var ErrMalformed = errors.New("ftsl: malformed pubsub message")

// Connect is CONNECT.
type Connect struct {
	Version                     uint8
	Name, Token, User, Password string
	Inbox                       string // the prefix of the client's reply subjects, _INBOX.<id>
	Flags                       uint8  // ConnectNoEcho
}

// Sub is SUB.
type Sub struct {
	SID            uint64
	Subject, Queue string
}

// Pub is PUB; Payload aliases the decoded message.
type Pub struct {
	PubID          uint64
	Level          uint8
	Subject, Reply string
	Payload        []byte
}

// Msg is MSG; Payload aliases the decoded message.
type Msg struct {
	SID                       uint64
	Subject, Reply, Publisher string
	Payload                   []byte
}

// Outcome is OUTCOME.
type Outcome struct {
	PubID                         uint64
	Matched, Delivered, Processed uint64
	Failures                      []Failure
}

// Failure is one subscriber's failed share of a publish.
type Failure struct{ Subscriber, Reason string }

// Notice is NOTICE.
type Notice struct {
	Kind uint8
	SID  uint64
	Text string
}

// AppendConnect appends CONNECT to b.
func AppendConnect(b []byte, c Connect) []byte {
	b = append(b, OpConnect, c.Version)
	for _, s := range []string{c.Name, c.Token, c.User, c.Password, c.Inbox} {
		b = appendString(b, s)
	}
	if c.Flags != 0 {
		b = append(b, c.Flags)
	}
	return b
}

// AppendSub appends SUB to b.
func AppendSub(b []byte, s Sub) []byte {
	b = binary.AppendUvarint(append(b, OpSub), s.SID)
	return appendString(appendString(b, s.Subject), s.Queue)
}

// AppendUnsub appends UNSUB to b.
func AppendUnsub(b []byte, sid uint64) []byte { return binary.AppendUvarint(append(b, OpUnsub), sid) }

// AppendPubHeader appends PUB without its payload, which follows it.
func AppendPubHeader(b []byte, pubID uint64, level uint8, subject, reply string) []byte {
	b = append(binary.AppendUvarint(append(b, OpPub), pubID), level)
	return appendString(appendString(b, subject), reply)
}

// AppendMsgHeader appends MSG without its payload, which follows it.
func AppendMsgHeader(b []byte, sid uint64, subject, reply, publisher string) []byte {
	b = binary.AppendUvarint(append(b, OpMsg), sid)
	return appendString(appendString(appendString(b, subject), reply), publisher)
}

// AppendOutcome appends OUTCOME to b, with at most MaxFailures failures listed.
func AppendOutcome(b []byte, o Outcome) []byte {
	b = binary.AppendUvarint(append(b, OpOutcome), o.PubID)
	b = binary.AppendUvarint(binary.AppendUvarint(binary.AppendUvarint(b, o.Matched), o.Delivered), o.Processed)
	fs := o.Failures[:min(len(o.Failures), MaxFailures)]
	b = binary.AppendUvarint(b, uint64(len(fs)))
	for _, f := range fs {
		b = appendString(appendString(b, clip(f.Subscriber)), clip(f.Reason))
	}
	return b
}

// Progress is PROGRESS.
type Progress struct{ PubID, Matched, Delivered uint64 }

// AppendProgress appends PROGRESS to b.
func AppendProgress(b []byte, p Progress) []byte {
	b = binary.AppendUvarint(append(b, OpProgress), p.PubID)
	return binary.AppendUvarint(binary.AppendUvarint(b, p.Matched), p.Delivered)
}

// DecodeProgress decodes PROGRESS.
func DecodeProgress(b []byte) (Progress, error) {
	d := start(b, OpProgress, "PROGRESS")
	p := Progress{PubID: d.uvarint("publish ID"), Matched: d.uvarint("matched"), Delivered: d.uvarint("delivered")}
	return p, d.end("PROGRESS")
}

// AppendNotice appends NOTICE to b.
func AppendNotice(b []byte, n Notice) []byte {
	b = binary.AppendUvarint(append(b, OpNotice, n.Kind), n.SID)
	return appendString(b, clip(n.Text))
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// clip cuts s to MaxString bytes, so what is encoded always decodes.
func clip(s string) string {
	if len(s) > MaxString {
		return s[:MaxString]
	}
	return s
}

// Op is the op of message b, or 0 if b is empty.
func Op(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// decoder reads fields in order; the first failure sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = ftslerr.Errorf("%w: %s", ErrMalformed, what)
	}
}

func (d *decoder) byte(what string) uint8 {
	if d.err != nil || len(d.b) == 0 {
		d.fail(what + " missing")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what + ": missing or too long")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// str reads a string field. intern, if not nil, turns the bytes into a string, so a caller can
// reuse strings it has seen (subjects repeat) rather than allocate one per message.
func (d *decoder) str(what string, intern func([]byte) string) string {
	n := d.uvarint(what) // (no string built here: this runs for every field of every message)
	if d.err != nil {
		return ""
	}
	if n == 0 {
		return ""
	}
	if n > MaxString || n > uint64(len(d.b)) {
		d.fail(fmt.Sprintf("%s of %d bytes", what, n))
		return ""
	}
	p := d.b[:n]
	d.b = d.b[n:]
	if intern != nil {
		return intern(p)
	}
	return string(p)
}

func (d *decoder) end(what string) error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d bytes after %s", len(d.b), what))
	}
	return d.err
}

func start(b []byte, op byte, name string) decoder {
	d := decoder{b: b}
	if d.byte("op") != op {
		d.fail("not " + name)
	}
	return d
}

// DecodeConnect decodes CONNECT.
func DecodeConnect(b []byte) (Connect, error) {
	d := start(b, OpConnect, "CONNECT")
	c := Connect{Version: d.byte("version")}
	c.Name, c.Token, c.User = d.str("name", nil), d.str("token", nil), d.str("user", nil)
	c.Password, c.Inbox = d.str("password", nil), d.str("inbox", nil)
	if d.err == nil && len(d.b) > 0 { // (absent: a client of the first release, no flags)
		c.Flags = d.byte("flags")
		if unknown := c.Flags &^ connectFlagsKnown; unknown != 0 {
			d.fail(fmt.Sprintf("CONNECT flags %#x: unknown bits %#x", c.Flags, unknown))
		} else if c.Flags == 0 {
			d.fail("CONNECT flags 0: the byte is written only with a flag set") // (one encoding each)
		}
	}
	return c, d.end("CONNECT")
}

// DecodeSub decodes SUB.
func DecodeSub(b []byte) (Sub, error) {
	d := start(b, OpSub, "SUB")
	s := Sub{SID: d.uvarint("sid")}
	s.Subject, s.Queue = d.str("subject", nil), d.str("queue", nil)
	return s, d.end("SUB")
}

// DecodeUnsub decodes UNSUB.
func DecodeUnsub(b []byte) (uint64, error) {
	d := start(b, OpUnsub, "UNSUB")
	sid := d.uvarint("sid")
	return sid, d.end("UNSUB")
}

// DecodePub decodes PUB. Its Payload and, through intern, its strings may alias b.
func DecodePub(b []byte, intern func([]byte) string) (Pub, error) {
	d := start(b, OpPub, "PUB")
	p := Pub{PubID: d.uvarint("publish ID"), Level: d.byte("level")}
	p.Subject, p.Reply = d.str("subject", intern), d.str("reply", intern)
	p.Payload = d.b
	return p, d.err
}

// DecodeMsg decodes MSG. Its Payload and, through intern, its strings may alias b.
func DecodeMsg(b []byte, intern func([]byte) string) (Msg, error) {
	d := start(b, OpMsg, "MSG")
	m := Msg{SID: d.uvarint("sid")}
	m.Subject, m.Reply, m.Publisher = d.str("subject", intern), d.str("reply", intern), d.str("publisher", intern)
	m.Payload = d.b
	return m, d.err
}

// DecodeOutcome decodes OUTCOME.
func DecodeOutcome(b []byte) (Outcome, error) {
	d := start(b, OpOutcome, "OUTCOME")
	o := Outcome{PubID: d.uvarint("publish ID"), Matched: d.uvarint("matched"),
		Delivered: d.uvarint("delivered"), Processed: d.uvarint("processed")}
	n := d.uvarint("failure count")
	if n > MaxFailures {
		d.fail(fmt.Sprintf("%d failures listed", n))
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		o.Failures = append(o.Failures, Failure{Subscriber: d.str("subscriber", nil), Reason: d.str("reason", nil)})
	}
	return o, d.end("OUTCOME")
}

// DecodeNotice decodes NOTICE.
func DecodeNotice(b []byte) (Notice, error) {
	d := start(b, OpNotice, "NOTICE")
	n := Notice{Kind: d.byte("kind"), SID: d.uvarint("sid")}
	n.Text = d.str("text", nil)
	return n, d.end("NOTICE")
}
