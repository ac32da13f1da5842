package core

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// This file pins the wire format described in PROTOCOL.md: every constant, the exact bytes of
// every frame (written out by hand, never computed by the code under test), the decoders'
// rejections, and the receive path fed raw bytes through the parse harness.

// unhex decodes a hex literal; spaces and newlines are ignored so fields can be grouped.
func wireUnhex(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.Join(strings.Fields(s), "")
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex literal %q: %v", s, err)
	}
	return b
}

func wireWantProtocolError(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: accepted, want a protocol error", what)
		return
	}
	if !errors.Is(err, ErrProtocol) {
		t.Errorf("%s: error %v does not match ErrProtocol", what, err)
	}
}

// ---------------------------------------------------------------------------------------------
// Constants

func TestWireConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"minVersion", minVersion, 1},
		{"maxVersion", maxVersion, 1},
		{"headerLen", headerLen, 8},
		{"dataFixedLen", dataFixedLen, 16},
		{"dataHdrLen", dataHdrLen, 24},
		{"ackBlockLen", ackBlockLen, 40},
		{"tokenLen", tokenLen, 16},
		{"helloLen", helloLen, 24},
		{"resumeLen", resumeLen, 88},
		{"welcomeLen", welcomeLen, 84},
		{"pingLen", pingLen, 8},
		{"MaxFramePayload", MaxFramePayload, 65536},
		{"maxReasonLen", maxReasonLen, 1024},
		{"minWindow", minWindow, 1024},
		{"maxPendingFailures", maxPendingFailures, 64},

		{"frameData", uint64(frameData), 0x01},
		{"frameAck", uint64(frameAck), 0x02},
		{"framePing", uint64(framePing), 0x03},
		{"framePong", uint64(framePong), 0x04},
		{"frameFail", uint64(frameFail), 0x05},
		{"frameClose", uint64(frameClose), 0x06},
		{"frameClosed", uint64(frameClosed), 0x07},
		{"frameAbort", uint64(frameAbort), 0x08},
		{"frameHello", uint64(frameHello), 0x10},
		{"frameResume", uint64(frameResume), 0x11},
		{"frameWelcome", uint64(frameWelcome), 0x12},
		{"frameReject", uint64(frameReject), 0x13},

		{"flagEOM", flagEOM, 0x01},
		{"flagAcks", flagAcks, 0x02},
		{"flagResent", flagResent, 0x04},
		{"flagCancel", flagCancel, 0x08},
		{"levelShift", levelShift, 4},
		{"levelMask", levelMask, 0x30},
		{"dataFlags", dataFlags, 0x7f},
		{"flagPrompt", flagPrompt, 0x40},

		{"AckNone", uint64(AckNone), 0},
		{"AckDelivered", uint64(AckDelivered), 1},
		{"AckProcessed", uint64(AckProcessed), 2},

		{"RejectVersion", uint64(RejectVersion), 1},
		{"RejectUnknownSession", uint64(RejectUnknownSession), 2},
		{"RejectBusy", uint64(RejectBusy), 3},
		{"RejectMalformed", uint64(RejectMalformed), 4},
		{"RejectMismatch", uint64(RejectMismatch), 5},
		{"RejectClosed", uint64(RejectClosed), 6},

		{"abortByApplication", abortByApplication, 0},
		{"abortProtocol", abortProtocol, 1},
		{"abortListener", abortListener, 2},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d (%#x), the protocol says %d (%#x)", c.name, c.got, c.got, c.want, c.want)
		}
	}
	if string(magic[:]) != "FTSL" {
		t.Errorf("magic = %q, want \"FTSL\"", magic[:])
	}
}

func TestWireFrameTypeNames(t *testing.T) {
	for typ, name := range map[frameType]string{
		frameData: "DATA", frameAck: "ACK", framePing: "PING", framePong: "PONG", frameFail: "FAIL",
		frameClose: "CLOSE", frameClosed: "CLOSED", frameAbort: "ABORT", frameHello: "HELLO",
		frameResume: "RESUME", frameWelcome: "WELCOME", frameReject: "REJECT", 0x09: "frame(0x09)",
	} {
		if got := typ.String(); got != name {
			t.Errorf("frameType(%#x).String() = %q, want %q", uint8(typ), got, name)
		}
	}
}

// wireBodyLimits is the body length table of PROTOCOL.md, by frame type, as the code implements
// it. (PROTOCOL.md prints DATA's maximum as 65,608; the code's, pinned here, is 16+40+65,536.)
var wireBodyLimits = map[uint8][2]uint32{
	0x01: {16, 65592},
	0x02: {40, 40},
	0x03: {8, 8},
	0x04: {8, 8},
	0x05: {18, 1042},
	0x06: {0, 0},
	0x07: {0, 0},
	0x08: {4, 1028},
	0x10: {24, 24},
	0x11: {88, 88},
	0x12: {84, 84},
	0x13: {4, 1028},
}

func TestWireBodyLimits(t *testing.T) {
	for typ := 0; typ < 256; typ++ {
		got := bodyLimits[typ]
		want := wireBodyLimits[uint8(typ)] // zero for unknown types
		if got.min != want[0] || got.max != want[1] {
			t.Errorf("bodyLimits[%#02x] = [%d, %d], want [%d, %d]", typ, got.min, got.max, want[0], want[1])
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Exact encodings

func TestWireHeaderBytes(t *testing.T) {
	for _, c := range []struct {
		h   header
		hex string
	}{
		{header{typ: frameData, flags: 0x21, length: 0x15}, "01 21 0000 00000015"},
		{header{typ: frameAck, length: 40}, "02 00 0000 00000028"},
		{header{typ: frameReject, length: 0x01020304}, "13 00 0000 01020304"},
		{header{typ: frameData, flags: 0x3f, length: 0xffffffff}, "01 3f 0000 ffffffff"},
	} {
		want := wireUnhex(t, c.hex)
		b := bytes.Repeat([]byte{0xee}, headerLen) // put must clear the reserved bytes
		c.h.put(b)
		if !bytes.Equal(b, want) {
			t.Errorf("%+v: encoded %x, want %x", c.h, b, want)
		}
	}
}

func TestWireDataHeaderBytes(t *testing.T) {
	for _, c := range []struct {
		d   dataHeader
		hex string
	}{
		{
			dataHeader{flags: flagEOM | uint8(AckProcessed)<<levelShift, n: 5, pid: 0x0102030405060708, mid: 0x1112131415161718},
			"01 21 0000 00000015  0102030405060708  1112131415161718",
		},
		{
			dataHeader{flags: 0, n: MaxFramePayload, pid: 1, mid: 1},
			"01 00 0000 00010010  0000000000000001  0000000000000001",
		},
		{
			dataHeader{flags: flagEOM | flagCancel | flagResent | uint8(AckDelivered)<<levelShift, n: 0, pid: 9, mid: 3},
			"01 1d 0000 00000010  0000000000000009  0000000000000003",
		},
	} {
		want := wireUnhex(t, c.hex)
		b := make([]byte, dataHdrLen)
		c.d.put(b)
		if !bytes.Equal(b, want) {
			t.Errorf("%+v: encoded %x, want %x", c.d, b, want)
		}
		// Round trip: the generic header parser and the payload length.
		h, err := parseHeader(b)
		if err != nil {
			t.Fatalf("%+v: parseHeader: %v", c.d, err)
		}
		if h.typ != frameData || h.flags != c.d.flags || h.dataPayloadLen() != c.d.n {
			t.Errorf("%+v: parsed back as %+v, payload %d", c.d, h, h.dataPayloadLen())
		}
		if pid, mid := binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint64(b[16:]); pid != c.d.pid || mid != c.d.mid {
			t.Errorf("%+v: PID %d MID %d", c.d, pid, mid)
		}
	}
	for _, c := range []struct {
		level AckLevel
		eom   bool
		want  uint8
	}{
		{AckNone, false, 0x00}, {AckNone, true, 0x01}, {AckDelivered, true, 0x11}, {AckProcessed, false, 0x20}, {AckProcessed, true, 0x21},
	} {
		if got := dataFlagsFor(c.level, c.eom); got != c.want {
			t.Errorf("dataFlagsFor(%v, %v) = %#02x, want %#02x", c.level, c.eom, got, c.want)
		}
	}
}

func TestWireAckBlockBytes(t *testing.T) {
	a := ackBlock{rPID: 0x0102030405060708, dMID: 2, pMID: 3, fAck: 4, credit: 0x0000000100000000}
	want := wireUnhex(t, `
		0102030405060708
		0000000000000002
		0000000000000003
		0000000000000004
		0000000100000000`)
	b := make([]byte, ackBlockLen)
	a.put(b)
	if !bytes.Equal(b, want) {
		t.Fatalf("ack block encoded %x, want %x", b, want)
	}
	if got := parseAckBlock(b); got != a {
		t.Errorf("ack block parsed back as %+v, want %+v", got, a)
	}
	m := ackBlock{rPID: 1, dMID: 9, pMID: 0, fAck: 7, credit: 5}
	m.max(a)
	if want := (ackBlock{rPID: 0x0102030405060708, dMID: 9, pMID: 3, fAck: 7, credit: 0x0000000100000000}); m != want {
		t.Errorf("max merged to %+v, want %+v", m, want)
	}
}

// Handshake values shared by the encoding tests.
var (
	wireHello = hello{vmin: 1, vmax: 2, maxMessage: 1 << 20, window: 4 << 20, deadPeerMs: 15000, sendBuffer: 4 << 20}
	wireToken = [tokenLen]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
)

const wireHelloHex = "4654534c 01 02 0000 00100000 00400000 00003a98 00400000"

func TestWireHelloBytes(t *testing.T) {
	want := wireUnhex(t, wireHelloHex)
	b := bytes.Repeat([]byte{0xee}, helloLen)
	wireHello.put(b)
	if !bytes.Equal(b, want) {
		t.Fatalf("HELLO encoded %x, want %x", b, want)
	}
	got, err := parseHello(b)
	if err != nil || got != wireHello {
		t.Errorf("HELLO parsed back as %+v, %v; want %+v", got, err, wireHello)
	}
}

func TestWireResumeBytes(t *testing.T) {
	r := resume{
		hello: wireHello,
		sid:   0x0a0b0c0d0e0f1011,
		token: wireToken,
		acks:  ackBlock{rPID: 7, dMID: 6, pMID: 5, fAck: 1, credit: 0x500000},
	}
	want := wireUnhex(t, wireHelloHex+`
		0a0b0c0d0e0f1011
		000102030405060708090a0b0c0d0e0f
		0000000000000007 0000000000000006 0000000000000005 0000000000000001 0000000000500000`)
	b := bytes.Repeat([]byte{0xee}, resumeLen)
	r.put(b)
	if !bytes.Equal(b, want) {
		t.Fatalf("RESUME encoded\n%x, want\n%x", b, want)
	}
	got, err := parseResume(b)
	if err != nil || got != r {
		t.Errorf("RESUME parsed back as %+v, %v; want %+v", got, err, r)
	}
}

func TestWireWelcomeBytes(t *testing.T) {
	w := welcome{
		version:    1,
		maxMessage: 1 << 20,
		window:     4 << 20,
		deadPeerMs: 15000,
		sendBuffer: 2 << 20,
		sid:        0xfedcba9876543210,
		token:      [tokenLen]byte{0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff},
		acks:       ackBlock{credit: 4 << 20},
	}
	want := wireUnhex(t, `
		01 000000 00100000 00400000 00003a98 00200000
		fedcba9876543210
		f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff
		0000000000000000 0000000000000000 0000000000000000 0000000000000000 0000000000400000`)
	b := bytes.Repeat([]byte{0xee}, welcomeLen)
	w.put(b)
	if !bytes.Equal(b, want) {
		t.Fatalf("WELCOME encoded\n%x, want\n%x", b, want)
	}
	got, err := parseWelcome(b)
	if err != nil || got != w {
		t.Errorf("WELCOME parsed back as %+v, %v; want %+v", got, err, w)
	}
}

func TestWireFrameBytes(t *testing.T) {
	prefix := []byte{0xff} // appenders must keep what is already in the buffer
	for _, c := range []struct {
		name string
		got  []byte
		hex  string
	}{
		{"FAIL", failReport{seq: 1, mid: 0x0203, reason: "no"}.appendFrame(prefix[:1:1]),
			"ff  05 00 0000 00000014  0000000000000001 0000000000000203 0002 6e6f"},
		{"FAIL empty reason", failReport{seq: 2, mid: 3}.appendFrame(nil),
			"05 00 0000 00000012  0000000000000002 0000000000000003 0000"},
		{"ABORT", appendCodeReason(nil, frameAbort, 1, "bad"),
			"08 00 0000 00000007  0001 0003 626164"},
		{"REJECT empty reason", appendCodeReason(prefix[:1:1], frameReject, 4, ""),
			"ff  13 00 0000 00000004  0004 0000"},
		{"REJECT", appendCodeReason(nil, frameReject, uint16(RejectUnknownSession), "gone"),
			"13 00 0000 00000008  0002 0004 676f6e65"},
		{"PING", appendSimple(nil, framePing, 0x0102030405060708),
			"03 00 0000 00000008  0102030405060708"},
		{"PONG", appendSimple(prefix[:1:1], framePong, 42),
			"ff  04 00 0000 00000008  000000000000002a"},
		{"CLOSE", appendSimple(nil, frameClose, 99), "06 00 0000 00000000"},
		{"CLOSED", appendSimple(nil, frameClosed, 0), "07 00 0000 00000000"},
		{"ACK", appendAck(prefix[:1:1], ackBlock{rPID: 1, dMID: 2, pMID: 3, fAck: 4, credit: 5}),
			"ff  02 00 0000 00000028  0000000000000001 0000000000000002 0000000000000003 0000000000000004 0000000000000005"},
	} {
		if want := wireUnhex(t, c.hex); !bytes.Equal(c.got, want) {
			t.Errorf("%s: encoded\n%x, want\n%x", c.name, c.got, want)
		}
	}
	if prefix[0] != 0xff {
		t.Errorf("an appender wrote into its argument's backing array")
	}
	if n := (failReport{reason: "abc"}).encodedLen(); n != 8+18+3 {
		t.Errorf("FAIL encodedLen = %d, want 29", n)
	}
}

// wireSplitFrame parses the header of the one frame in b and returns its body.
func wireSplitFrame(t testing.TB, b []byte) (header, []byte) {
	t.Helper()
	h, err := parseHeader(b)
	if err != nil {
		t.Fatalf("parseHeader(%x): %v", b, err)
	}
	if int(h.length) != len(b)-headerLen {
		t.Fatalf("header says %d body bytes, frame has %d", h.length, len(b)-headerLen)
	}
	return h, b[headerLen:]
}

func TestWireRoundTrips(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randAck := func() ackBlock {
		return ackBlock{rPID: rng.Uint64(), dMID: rng.Uint64(), pMID: rng.Uint64(), fAck: rng.Uint64(), credit: rng.Uint64()}
	}
	randHello := func() hello {
		m := 1 + rng.Uint32N(1<<20)
		return hello{
			vmin: uint8(1 + rng.IntN(3)), vmax: uint8(4 + rng.IntN(250)),
			maxMessage: m, window: uint32(messageCost(int(m))+dataHdrLen) + rng.Uint32N(1<<20),
			deadPeerMs: 10 + rng.Uint32N(1<<30), sendBuffer: minWindow + rng.Uint32N(1<<30),
		}
	}
	for i := 0; i < 500; i++ {
		// Headers of every valid shape.
		typ := []frameType{frameAck, framePing, framePong, frameFail, frameClose, frameClosed, frameAbort,
			frameHello, frameResume, frameWelcome, frameReject, frameData}[i%12]
		lim := bodyLimits[typ]
		h := header{typ: typ, length: lim.min + rng.Uint32N(lim.max-lim.min+1)}
		if typ == frameData {
			h.flags = uint8(rng.IntN(3))<<levelShift | uint8(rng.IntN(2))*flagResent | flagEOM | uint8(rng.IntN(2))*flagCancel
			if h.length >= dataFixedLen+ackBlockLen && rng.IntN(2) == 0 {
				h.flags |= flagAcks
			}
			if h.flags&flagAcks == 0 {
				h.length = min(h.length, dataFixedLen+MaxFramePayload)
			}
			if h.flags&flagCancel != 0 { // a cancel carries no payload
				h.length = dataFixedLen + uint32(h.flags&flagAcks/flagAcks)*ackBlockLen
			}
		}
		var hb [headerLen]byte
		h.put(hb[:])
		if got, err := parseHeader(hb[:]); err != nil || got != h {
			t.Fatalf("header %+v parsed back as %+v, %v", h, got, err)
		}

		a := randAck()
		var ab [ackBlockLen]byte
		a.put(ab[:])
		if got := parseAckBlock(ab[:]); got != a {
			t.Fatalf("ack block %+v parsed back as %+v", a, got)
		}

		he := randHello()
		var hel [helloLen]byte
		he.put(hel[:])
		if got, err := parseHello(hel[:]); err != nil || got != he {
			t.Fatalf("hello %+v parsed back as %+v, %v", he, got, err)
		}

		r := resume{hello: randHello(), sid: rng.Uint64(), acks: randAck()}
		for j := range r.token {
			r.token[j] = byte(rng.Uint32())
		}
		var rb [resumeLen]byte
		r.put(rb[:])
		if got, err := parseResume(rb[:]); err != nil || got != r {
			t.Fatalf("resume %+v parsed back as %+v, %v", r, got, err)
		}

		p := randHello()
		w := welcome{version: uint8(rng.Uint32()), maxMessage: p.maxMessage, window: p.window, deadPeerMs: p.deadPeerMs,
			sendBuffer: p.sendBuffer, sid: 1 + rng.Uint64N(1<<63), token: r.token, acks: randAck()}
		var wb [welcomeLen]byte
		w.put(wb[:])
		if got, err := parseWelcome(wb[:]); err != nil || got != w {
			t.Fatalf("welcome %+v parsed back as %+v, %v", w, got, err)
		}

		reason := strings.Repeat("é", rng.IntN(maxReasonLen/2+1))
		f := failReport{seq: 1 + rng.Uint64N(1<<63), mid: 1 + rng.Uint64N(1<<63), reason: reason}
		fh, fbody := wireSplitFrame(t, f.appendFrame(nil))
		if got, err := parseFail(fbody); fh.typ != frameFail || err != nil || got != f {
			t.Fatalf("FAIL %+v parsed back as %v %+v, %v", f, fh.typ, got, err)
		}

		for _, typ := range []frameType{frameAbort, frameReject} {
			code := uint16(rng.Uint32())
			ch, cbody := wireSplitFrame(t, appendCodeReason(nil, typ, code, reason))
			if gc, gr, err := parseCodeReason(typ, cbody); ch.typ != typ || err != nil || gc != code || gr != reason {
				t.Fatalf("%v %d %q parsed back as %v %d %q, %v", typ, code, reason, ch.typ, gc, gr, err)
			}
		}

		v := rng.Uint64()
		for _, typ := range []frameType{framePing, framePong} {
			ph, pbody := wireSplitFrame(t, appendSimple(nil, typ, v))
			if ph.typ != typ || binary.BigEndian.Uint64(pbody) != v {
				t.Fatalf("%v %d parsed back as %v %x", typ, v, ph.typ, pbody)
			}
		}
		for _, typ := range []frameType{frameClose, frameClosed} {
			if sh, _ := wireSplitFrame(t, appendSimple(nil, typ, v)); sh.typ != typ {
				t.Fatalf("%v parsed back as %v", typ, sh.typ)
			}
		}
		ah, abody := wireSplitFrame(t, appendAck(nil, a))
		if ah.typ != frameAck || parseAckBlock(abody) != a {
			t.Fatalf("ACK %+v parsed back as %v %+v", a, ah.typ, parseAckBlock(abody))
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Decoder rejections

func wireRawHeader(typ, flags, r2, r3 uint8, length uint32) []byte {
	b := []byte{typ, flags, r2, r3, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], length)
	return b
}

func TestParseHeaderRejects(t *testing.T) {
	type hcase struct {
		name string
		b    []byte
	}
	var bad []hcase
	for typ := 0; typ < 256; typ++ {
		if _, known := wireBodyLimits[uint8(typ)]; !known {
			bad = append(bad, hcase{fmt.Sprintf("unknown type %#02x", typ), wireRawHeader(uint8(typ), 0, 0, 0, 0)})
			bad = append(bad, hcase{fmt.Sprintf("unknown type %#02x, length 8", typ), wireRawHeader(uint8(typ), 0, 0, 0, 8)})
		}
	}
	for typ, lim := range wireBodyLimits {
		flags := uint8(0)
		if typ == uint8(frameData) {
			flags = flagEOM | flagAcks // the only way to reach DATA's maximum
		}
		name := frameType(typ).String()
		if lim[0] > 0 {
			bad = append(bad, hcase{name + " length below min", wireRawHeader(typ, flags, 0, 0, lim[0]-1)})
		}
		bad = append(bad,
			hcase{name + " length above max", wireRawHeader(typ, flags, 0, 0, lim[1]+1)},
			hcase{name + " length 2^32-1", wireRawHeader(typ, flags, 0, 0, 0xffffffff)},
			hcase{name + " reserved byte 2", wireRawHeader(typ, flags, 1, 0, lim[0])},
			hcase{name + " reserved byte 3", wireRawHeader(typ, flags, 0, 0x80, lim[0])},
		)
		if typ != uint8(frameData) {
			bad = append(bad,
				hcase{name + " flag 0x01", wireRawHeader(typ, 0x01, 0, 0, lim[0])},
				hcase{name + " flag 0x80", wireRawHeader(typ, 0x80, 0, 0, lim[0])},
			)
		}
	}
	for _, f := range []uint8{0x80, 0xc0, 0x81, 0xa1} {
		bad = append(bad, hcase{fmt.Sprintf("DATA flags %#02x outside dataFlags", f), wireRawHeader(0x01, f, 0, 0, 16)})
	}
	for _, f := range []uint8{0x30, 0x31, 0x37} {
		bad = append(bad, hcase{fmt.Sprintf("DATA level bits %#02x", f), wireRawHeader(0x01, f, 0, 0, 16)})
	}
	bad = append(bad,
		hcase{"DATA cancel with a payload", wireRawHeader(0x01, flagEOM|flagCancel, 0, 0, 17)},
		hcase{"DATA cancel with acks and a payload", wireRawHeader(0x01, flagEOM|flagCancel|flagAcks, 0, 0, 57)},
	)
	for _, f := range []uint8{0x08, 0x0a, 0x0c, 0x28} {
		bad = append(bad, hcase{fmt.Sprintf("DATA cancel without EOM, flags %#02x", f), wireRawHeader(0x01, f, 0, 0, 16)})
	}
	bad = append(bad,
		hcase{"DATA ACKS body 16", wireRawHeader(0x01, flagAcks, 0, 0, 16)},
		hcase{"DATA ACKS body 55", wireRawHeader(0x01, flagAcks|flagEOM, 0, 0, 55)},
		hcase{"DATA no ACKS, payload 65537", wireRawHeader(0x01, flagEOM, 0, 0, 16+MaxFramePayload+1)},
		hcase{"DATA no ACKS, max body", wireRawHeader(0x01, 0, 0, 0, 16+40+MaxFramePayload)},
	)
	for _, c := range bad {
		_, err := parseHeader(c.b)
		wireWantProtocolError(t, c.name, err)
	}

	// And what must pass, at the edges.
	good := []struct {
		b       []byte
		payload int // for DATA
	}{
		{wireRawHeader(0x01, 0, 0, 0, 16), 0},
		{wireRawHeader(0x01, 0, 0, 0, 16+MaxFramePayload), MaxFramePayload},
		{wireRawHeader(0x01, flagAcks, 0, 0, 56), 0},
		{wireRawHeader(0x01, flagAcks|flagEOM|flagResent|0x20, 0, 0, 56+MaxFramePayload), MaxFramePayload},
		{wireRawHeader(0x01, flagAcks|flagEOM|flagCancel|flagResent|0x20, 0, 0, 56), 0},
		{wireRawHeader(0x01, flagEOM|flagCancel, 0, 0, 16), 0},
		{wireRawHeader(0x01, 0x10, 0, 0, 17), 1},
	}
	for typ, lim := range wireBodyLimits {
		if typ != uint8(frameData) {
			good = append(good, struct {
				b       []byte
				payload int
			}{wireRawHeader(typ, 0, 0, 0, lim[0]), -1}, struct {
				b       []byte
				payload int
			}{wireRawHeader(typ, 0, 0, 0, lim[1]), -1})
		}
	}
	for _, c := range good {
		h, err := parseHeader(c.b)
		if err != nil {
			t.Errorf("header %x: %v", c.b, err)
			continue
		}
		if uint8(h.typ) != c.b[0] || h.flags != c.b[1] || h.length != binary.BigEndian.Uint32(c.b[4:]) {
			t.Errorf("header %x parsed as %+v", c.b, h)
		}
		if c.payload >= 0 && h.dataPayloadLen() != c.payload {
			t.Errorf("header %x: payload %d, want %d", c.b, h.dataPayloadLen(), c.payload)
		}
	}
}

// wireHelloBytes encodes a HELLO body by hand, not with hello.put, so a broken encoder cannot hide a
// broken decoder.
func wireHelloBytes(vmin, vmax uint8, maxMessage, window, deadPeerMs, sendBuffer uint32) []byte {
	b := append([]byte("FTSL"), vmin, vmax, 0, 0)
	b = binary.BigEndian.AppendUint32(b, maxMessage)
	b = binary.BigEndian.AppendUint32(b, window)
	b = binary.BigEndian.AppendUint32(b, deadPeerMs)
	return binary.BigEndian.AppendUint32(b, sendBuffer)
}

func TestParseHello(t *testing.T) {
	const mm = 1 << 20
	edge := uint32(messageCost(mm) + dataHdrLen) // the smallest window that holds a message of mm
	if edge != 1<<20+16*24+24 {
		t.Fatalf("window edge %d", edge)
	}
	valid := func() []byte { return wireHelloBytes(1, 1, mm, 4<<20, 15000, 4<<20) }
	mut := func(f func(b []byte)) []byte { b := valid(); f(b); return b }
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"short", valid()[:helloLen-1]},
		{"empty", nil},
		{"bad magic", mut(func(b []byte) { b[3] = 'M' })},
		{"lower-case magic", mut(func(b []byte) { copy(b, "ftsl") })},
		{"zero magic", mut(func(b []byte) { copy(b, "\x00\x00\x00\x00") })},
		{"vmin 0", wireHelloBytes(0, 1, mm, 4<<20, 15000, 4<<20)},
		{"vmin > vmax", wireHelloBytes(2, 1, mm, 4<<20, 15000, 4<<20)},
		{"vmin 255 vmax 0", wireHelloBytes(255, 0, mm, 4<<20, 15000, 4<<20)},
		{"reserved byte 6", mut(func(b []byte) { b[6] = 1 })},
		{"reserved byte 7", mut(func(b []byte) { b[7] = 0x80 })},
		{"maxMessage 0", wireHelloBytes(1, 1, 0, 4<<20, 15000, 4<<20)},
		{"window below minWindow", wireHelloBytes(1, 1, 1, minWindow-1, 15000, 4<<20)},
		{"window too small for maxMessage", wireHelloBytes(1, 1, mm, edge-1, 15000, 4<<20)},
		{"window 0", wireHelloBytes(1, 1, mm, 0, 15000, 4<<20)},
		{"maxMessage 2^32-1", wireHelloBytes(1, 1, 0xffffffff, 0xffffffff, 15000, 4<<20)},
		{"dead peer 9 ms", wireHelloBytes(1, 1, mm, 4<<20, 9, 4<<20)},
		{"dead peer 0 ms", wireHelloBytes(1, 1, mm, 4<<20, 0, 4<<20)},
		{"send buffer below minWindow", wireHelloBytes(1, 1, mm, 4<<20, 15000, minWindow-1)},
	} {
		_, err := parseHello(c.b)
		wireWantProtocolError(t, "HELLO "+c.name, err)
		if len(c.b) >= helloLen {
			// The same bytes inside a RESUME are refused the same way.
			r := append(append([]byte(nil), c.b...), make([]byte, resumeLen-helloLen)...)
			_, err = parseResume(r)
			wireWantProtocolError(t, "RESUME with HELLO "+c.name, err)
		}
	}
	for _, c := range []struct {
		name string
		b    []byte
		want hello
	}{
		{"defaults", valid(), hello{1, 1, mm, 4 << 20, 15000, 4 << 20}},
		{"window at the edge", wireHelloBytes(1, 1, mm, edge, 15000, 4<<20), hello{1, 1, mm, edge, 15000, 4 << 20}},
		{"small", wireHelloBytes(1, 1, 1, minWindow, 10, minWindow), hello{1, 1, 1, minWindow, 10, minWindow}},
		{"wide version range", wireHelloBytes(1, 255, mm, 4<<20, 15000, 4<<20), hello{1, 255, mm, 4 << 20, 15000, 4 << 20}},
		{"future versions only", wireHelloBytes(3, 3, mm, 4<<20, 15000, 4<<20), hello{3, 3, mm, 4 << 20, 15000, 4 << 20}},
	} {
		got, err := parseHello(c.b)
		if err != nil || got != c.want {
			t.Errorf("HELLO %s: %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}

func TestParseResume(t *testing.T) {
	b := wireHelloBytes(1, 1, 1<<20, 4<<20, 15000, 4<<20)
	b = binary.BigEndian.AppendUint64(b, 42)
	b = append(b, wireToken[:]...)
	for _, v := range []uint64{3, 2, 1, 0, 4 << 20} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	got, err := parseResume(b)
	want := resume{hello: hello{1, 1, 1 << 20, 4 << 20, 15000, 4 << 20}, sid: 42, token: wireToken,
		acks: ackBlock{rPID: 3, dMID: 2, pMID: 1, credit: 4 << 20}}
	if err != nil || got != want {
		t.Errorf("RESUME: %+v, %v; want %+v", got, err, want)
	}
	_, err = parseResume(b[:resumeLen-1])
	wireWantProtocolError(t, "RESUME short", err)
	_, err = parseResume(b[:helloLen])
	wireWantProtocolError(t, "RESUME of HELLO length", err)
}

func wireWelcomeBytes(version, r1 uint8, maxMessage, window, deadPeerMs, sendBuffer uint32, sid uint64) []byte {
	b := []byte{version, r1, 0, 0}
	b = binary.BigEndian.AppendUint32(b, maxMessage)
	b = binary.BigEndian.AppendUint32(b, window)
	b = binary.BigEndian.AppendUint32(b, deadPeerMs)
	b = binary.BigEndian.AppendUint32(b, sendBuffer)
	b = binary.BigEndian.AppendUint64(b, sid)
	b = append(b, wireToken[:]...)
	for _, v := range []uint64{0, 0, 0, 0, uint64(window)} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

func TestParseWelcome(t *testing.T) {
	const mm = 1 << 20
	edge := uint32(messageCost(mm) + dataHdrLen)
	valid := wireWelcomeBytes(1, 0, mm, 4<<20, 15000, 4<<20, 7)
	got, err := parseWelcome(valid)
	want := welcome{version: 1, maxMessage: mm, window: 4 << 20, deadPeerMs: 15000, sendBuffer: 4 << 20, sid: 7,
		token: wireToken, acks: ackBlock{credit: 4 << 20}}
	if err != nil || got != want {
		t.Errorf("WELCOME: %+v, %v; want %+v", got, err, want)
	}
	if _, err := parseWelcome(wireWelcomeBytes(1, 0, mm, edge, 10, minWindow, 1)); err != nil {
		t.Errorf("WELCOME at the edges: %v", err)
	}
	reserved := func(i int) []byte {
		b := bytes.Clone(valid)
		b[i] = 1
		return b
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"short", valid[:welcomeLen-1]},
		{"empty", nil},
		{"reserved byte 1", wireWelcomeBytes(1, 0xff, mm, 4<<20, 15000, 4<<20, 7)},
		{"reserved byte 2", reserved(2)},
		{"reserved byte 3", reserved(3)},
		{"sid 0", wireWelcomeBytes(1, 0, mm, 4<<20, 15000, 4<<20, 0)},
		{"maxMessage 0", wireWelcomeBytes(1, 0, 0, 4<<20, 15000, 4<<20, 7)},
		{"window too small", wireWelcomeBytes(1, 0, mm, edge-1, 15000, 4<<20, 7)},
		{"window below minWindow", wireWelcomeBytes(1, 0, 1, minWindow-1, 15000, 4<<20, 7)},
		{"dead peer 9 ms", wireWelcomeBytes(1, 0, mm, 4<<20, 9, 4<<20, 7)},
		{"send buffer too small", wireWelcomeBytes(1, 0, mm, 4<<20, 15000, minWindow-1, 7)},
	} {
		_, err := parseWelcome(c.b)
		wireWantProtocolError(t, "WELCOME "+c.name, err)
	}
}

func wireFailBody(seq, mid uint64, n uint16, reason string) []byte {
	b := binary.BigEndian.AppendUint64(nil, seq)
	b = binary.BigEndian.AppendUint64(b, mid)
	b = binary.BigEndian.AppendUint16(b, n)
	return append(b, reason...)
}

func TestParseFail(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		want failReport
	}{
		{"no reason", wireFailBody(1, 1, 0, ""), failReport{seq: 1, mid: 1}},
		{"reason", wireFailBody(2, 0x0102, 3, "why"), failReport{seq: 2, mid: 0x0102, reason: "why"}},
		{"longest reason", wireFailBody(3, 4, maxReasonLen, strings.Repeat("x", maxReasonLen)), failReport{seq: 3, mid: 4, reason: strings.Repeat("x", maxReasonLen)}},
	} {
		got, err := parseFail(c.b)
		if err != nil || got != c.want {
			t.Errorf("FAIL %s: %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"17 bytes", wireFailBody(1, 1, 0, "")[:17]},
		{"reason length above body", wireFailBody(1, 1, 3, "ab")},
		{"reason length below body", wireFailBody(1, 1, 1, "ab")},
		{"reason length 65535, no reason", wireFailBody(1, 1, 0xffff, "")},
		{"seq 0", wireFailBody(0, 1, 0, "")},
		{"mid 0", wireFailBody(1, 0, 2, "ab")},
		{"seq 0 and mid 0", wireFailBody(0, 0, 0, "")},
	} {
		_, err := parseFail(c.b)
		wireWantProtocolError(t, "FAIL "+c.name, err)
	}
}

func TestParseCodeReason(t *testing.T) {
	for _, typ := range []frameType{frameAbort, frameReject} {
		for _, c := range []struct {
			b      []byte
			code   uint16
			reason string
		}{
			{[]byte{0, 0, 0, 0}, 0, ""},
			{[]byte{0xff, 0xfe, 0, 2, 'h', 'i'}, 0xfffe, "hi"},
		} {
			code, reason, err := parseCodeReason(typ, c.b)
			if err != nil || code != c.code || reason != c.reason {
				t.Errorf("%v %x: %d %q %v; want %d %q", typ, c.b, code, reason, err, c.code, c.reason)
			}
		}
		for _, b := range [][]byte{nil, {0, 1, 0}, {0, 1, 0, 1}, {0, 1, 0, 1, 'a', 'b'}, {0, 1, 0, 3, 'a', 'b'}, {0, 1, 0xff, 0xff}} {
			_, _, err := parseCodeReason(typ, b)
			wireWantProtocolError(t, fmt.Sprintf("%v %x", typ, b), err)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// clipReason and costs

func TestClipReason(t *testing.T) {
	euros := strings.Repeat("€", 400) // 3-byte runes, 1200 bytes: byte 1024 is inside rune 342
	for _, c := range []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", ""},
		{"short", "short reason", "short reason"},
		{"exactly the limit", strings.Repeat("a", maxReasonLen), strings.Repeat("a", maxReasonLen)},
		{"one byte over", strings.Repeat("a", maxReasonLen+1), strings.Repeat("a", maxReasonLen)},
		{"3-byte runes crossing the limit", euros, strings.Repeat("€", 341)},
		{"3-byte runes, 2-byte offset", "ab" + euros, "ab" + strings.Repeat("€", 340)},
		{"3-byte runes ending at the limit", "a" + euros, "a" + strings.Repeat("€", 341)},
		{"4-byte runes ending at the limit", strings.Repeat("😀", 300), strings.Repeat("😀", 256)},
		{"4-byte runes crossing the limit", "a" + strings.Repeat("😀", 300), "a" + strings.Repeat("😀", 255)},
		{"short multi-byte string", strings.Repeat("€", 341), strings.Repeat("€", 341)},
		{"only continuation bytes", strings.Repeat("\x80", 2000), ""},
	} {
		got := clipReason(c.in)
		if got != c.want {
			t.Errorf("%s: clipReason gave %d bytes, want %d", c.name, len(got), len(c.want))
		}
		if len(got) > maxReasonLen || !strings.HasPrefix(c.in, got) {
			t.Errorf("%s: clipReason gave %d bytes, not a prefix within the limit", c.name, len(got))
		}
		if utf8.ValidString(c.in) && !utf8.ValidString(got) {
			t.Errorf("%s: clipReason split a rune", c.name)
		}
	}
	// ABORT and REJECT encoders clip; the frame stays within its body limit.
	h, body := wireSplitFrame(t, appendCodeReason(nil, frameAbort, 1, euros))
	if h.length != 4+1023 || !utf8.Valid(body[4:]) || binary.BigEndian.Uint16(body[2:4]) != 1023 {
		t.Errorf("ABORT with a long reason: body length %d, reason length %d", h.length, binary.BigEndian.Uint16(body[2:4]))
	}
}

func TestCost(t *testing.T) {
	for _, c := range []struct {
		n              int
		frame, message uint64
		frames         int
		messageComment string
	}{
		{0, 24, 24, 1, "an empty message is one empty frame"},
		{1, 25, 25, 1, ""},
		{MaxFramePayload - 1, 65559, 65559, 1, ""},
		{MaxFramePayload, 65560, 65560, 1, ""},
		{MaxFramePayload + 1, 65561, 65585, 2, "two frames: 65536 + 1"},
		{2 * MaxFramePayload, 131096, 131120, 2, ""},
		{1 << 20, 1048600, 1048960, 16, "1 MiB in 16 frames"},
	} {
		if got := frameCost(c.n); got != c.frame {
			t.Errorf("frameCost(%d) = %d, want %d", c.n, got, c.frame)
		}
		if got := messageCost(c.n); got != c.message {
			t.Errorf("messageCost(%d) = %d, want %d (%s)", c.n, got, c.message, c.messageComment)
		}
		if want := uint64(c.n) + uint64(c.frames)*dataHdrLen; c.message != want {
			t.Errorf("table row %d: message cost %d is not n + %d headers", c.n, c.message, c.frames)
		}
	}
}

// ---------------------------------------------------------------------------------------------
// The receive path, through the parse harness

// wireStream builds a byte stream of frames as a peer would send it.
type wireStream struct {
	b   []byte
	pid uint64 // last PID used
}

// data appends a DATA frame with the next PID.
func (w *wireStream) data(mid uint64, flags uint8, payload string) *wireStream {
	w.pid++
	return w.dataPID(w.pid, mid, flags, payload)
}

// dataPID appends a DATA frame with the given PID (which need not be the next one).
func (w *wireStream) dataPID(pid, mid uint64, flags uint8, payload string) *wireStream {
	var h [dataHdrLen]byte
	dataHeader{flags: flags, n: len(payload), pid: pid, mid: mid}.put(h[:])
	w.b = append(append(w.b, h[:]...), payload...)
	return w
}

// dataAcks appends a DATA frame with the next PID, carrying ack block a (flag ACKS).
func (w *wireStream) dataAcks(mid uint64, flags uint8, a ackBlock, payload string) *wireStream {
	w.pid++
	var h [dataHdrLen + ackBlockLen]byte
	// The ack block counts as payload for the length field; put writes the plain header.
	dataHeader{flags: flags | flagAcks, n: ackBlockLen + len(payload), pid: w.pid, mid: mid}.put(h[:])
	a.put(h[dataHdrLen:])
	w.b = append(append(w.b, h[:]...), payload...)
	return w
}

func (w *wireStream) raw(b []byte) *wireStream { w.b = append(w.b, b...); return w }

// message splits payload into chunks of at most size bytes, as Send would with MaxFramePayload.
func (w *wireStream) message(mid uint64, level AckLevel, payload string, size int) *wireStream {
	for {
		n := min(size, len(payload))
		w.data(mid, dataFlagsFor(level, n == len(payload)), payload[:n])
		if n == len(payload) {
			return w
		}
		payload = payload[n:]
	}
}

func wireFlags(level AckLevel, eom bool) uint8 { return dataFlagsFor(level, eom) }

// wireDrain reads every complete message as Recv would, and settles each. Data is copied, since
// it is only valid until then.
func wireDrain(s *Session) []Message {
	var out []Message
	for {
		s.mu.Lock()
		var m Message
		ok := s.takeLocked(&m)
		s.mu.Unlock()
		if !ok {
			return out
		}
		m.Data = bytes.Clone(m.Data)
		if err := s.Settle(m.ID, nil); err != nil {
			panic(err)
		}
		out = append(out, m)
	}
}

func wireSameMessages(got, want []Message) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d messages, want %d: %s", len(got), len(want), wireDescribe(got))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || !bytes.Equal(g.Data, w.Data) || g.Level != w.Level || g.Resent != w.Resent {
			return fmt.Errorf("message %d: ID %d, %d bytes %.20q, level %v, resent %v; want ID %d, %d bytes %.20q, level %v, resent %v",
				i, g.ID, len(g.Data), g.Data, g.Level, g.Resent, w.ID, len(w.Data), w.Data, w.Level, w.Resent)
		}
	}
	return nil
}

func wireDescribe(ms []Message) string {
	var sb strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&sb, "[%d %.10q %v] ", m.ID, m.Data, m.Level)
	}
	return sb.String()
}

// wireValidStream is a stream a correct peer could send to a fresh session, with the messages it
// must yield.
func wireValidStream() ([]byte, []Message) {
	w := &wireStream{}
	w.data(1, wireFlags(AckNone, true), "hello")
	// Message 2 in 3 chunks, with control frames between them.
	w.data(2, wireFlags(AckDelivered, false), "abc")
	w.raw(appendSimple(nil, framePing, 0x0102030405060708))
	w.data(2, wireFlags(AckDelivered, false), "defg")
	w.raw(appendAck(nil, ackBlock{credit: 5 << 20}))
	w.data(2, wireFlags(AckDelivered, true), "hi")
	w.data(3, wireFlags(AckProcessed, true), "") // empty message
	// Message 4 cancelled after two chunks: never delivered, MID used up.
	w.data(4, wireFlags(AckDelivered, false), "xx")
	w.data(4, wireFlags(AckDelivered, false), "yy")
	w.data(4, wireFlags(AckDelivered, true)|flagCancel, "")
	w.dataAcks(5, wireFlags(AckNone, true), ackBlock{credit: 6 << 20}, "piggy")
	w.data(6, wireFlags(AckProcessed, true)|flagResent, "again")
	w.raw(appendSimple(nil, framePong, 7))
	w.dataAcks(7, wireFlags(AckDelivered, false), ackBlock{credit: 6 << 20}, "first-")
	w.data(7, wireFlags(AckDelivered, true)|flagResent, "second")
	w.data(8, wireFlags(AckNone, true)|flagCancel, "") // a message cancelled in its only frame
	w.data(9, wireFlags(AckNone, true), "last")
	return w.b, []Message{
		{ID: 1, Data: []byte("hello"), Level: AckNone},
		{ID: 2, Data: []byte("abcdefghi"), Level: AckDelivered},
		{ID: 3, Data: []byte{}, Level: AckProcessed},
		{ID: 5, Data: []byte("piggy"), Level: AckNone},
		{ID: 6, Data: []byte("again"), Level: AckProcessed, Resent: true},
		{ID: 7, Data: []byte("first-second"), Level: AckDelivered, Resent: true},
		{ID: 9, Data: []byte("last"), Level: AckNone},
	}
}

func TestReceiveValidStreamEveryChunkSize(t *testing.T) {
	data, want := wireValidStream()
	const frames = 14
	for chunk := 1; chunk <= 64; chunk++ {
		s := newParseHarness()
		if err := s.feed(data, chunk); err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		if err := wireSameMessages(wireDrain(s), want); err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		s.mu.Lock()
		st := struct {
			rPID, recvCost, released, credit, dMID, pMID uint64
			pong                                         bool
			pongValue                                    uint64
			rHead, rDone                                 uint64
			state                                        State
		}{s.rPID, s.recvCost, s.releasedCost, s.peerAck.credit, s.dTake, s.dSettle, s.pongPending, s.pongValue, s.rHead, s.rDone, s.state}
		s.mu.Unlock()
		wantCost := uint64(frames*dataHdrLen + len("hello"+"abcdefghi"+"xxyy"+"piggy"+"again"+"first-second"+"last"))
		if st.rPID != frames || st.recvCost != wantCost || st.released != wantCost || st.rHead != st.rDone {
			t.Fatalf("chunk %d: rPID %d recvCost %d released %d (want %d, %d), rHead %d rDone %d",
				chunk, st.rPID, st.recvCost, st.released, frames, wantCost, st.rHead, st.rDone)
		}
		if st.credit != 6<<20 || !st.pong || st.pongValue != 0x0102030405060708 || st.dMID != 9 || st.pMID != 9 || st.state != StateConnected {
			t.Fatalf("chunk %d: peer credit %d, pong %v %#x, dMID %d pMID %d, state %v", chunk, st.credit, st.pong, st.pongValue, st.dMID, st.pMID, st.state)
		}
	}
}

// TestReceiveLargeMessages feeds messages of up to MaxMessageSize in full-size chunks.
func TestReceiveLargeMessages(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	big := make([]byte, DefaultMaxMessageSize)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	w := &wireStream{}
	w.message(1, AckProcessed, string(big), MaxFramePayload)                // exactly MaxMessageSize, 16 chunks
	w.message(2, AckNone, string(big[:MaxFramePayload+1]), MaxFramePayload) // 2 chunks
	w.message(3, AckDelivered, string(big[:MaxFramePayload]), MaxFramePayload)
	want := []Message{
		{ID: 1, Data: big, Level: AckProcessed},
		{ID: 2, Data: big[:MaxFramePayload+1], Level: AckNone},
		{ID: 3, Data: big[:MaxFramePayload], Level: AckDelivered},
	}
	for _, chunk := range []int{4093, MaxFramePayload + 7, len(w.b)} {
		s := newParseHarness()
		if err := s.feed(w.b, chunk); err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		if err := wireSameMessages(wireDrain(s), want); err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
	}
}

// wireFeedAndRecv is feed with a Recv loop after every batch: the application keeps up, credit is
// released as it goes, and the receive ring wraps.
func wireFeedAndRecv(s *Session, p []byte, chunk int) ([]Message, error) {
	var got []Message
	var pending []byte
	var b readBatch
	for len(p) > 0 {
		n := min(chunk, len(p))
		pending = append(pending, p[:n]...)
		p = p[n:]
		b.reset()
		used := s.parse(&b, pending)
		pending = append(pending[:0], pending[used:]...)
		s.mu.Lock()
		stop := s.applyLocked(&b)
		s.unlockNotify()
		if stop {
			return got, s.Err()
		}
		got = append(got, wireDrain(s)...)
	}
	return got, nil
}

// TestReceiveCreditAndRingWrap sends twice the receive window through a reader that keeps up:
// no credit error, every byte intact even where records wrap the ring's end.
func TestReceiveCreditAndRingWrap(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	w := &wireStream{}
	var want []Message
	var total int
	for mid := uint64(1); total < 2*DefaultReceiveBufferBytes; mid++ {
		n := rng.IntN(3000)
		if mid%17 == 0 {
			n = 3*MaxFramePayload + rng.IntN(1000)
		}
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(mid) ^ byte(i)
		}
		level := AckLevel(rng.IntN(3))
		w.message(mid, level, string(p), MaxFramePayload)
		want = append(want, Message{ID: mid, Data: p, Level: level})
		total += int(messageCost(n))
	}
	s := newParseHarness()
	got, err := wireFeedAndRecv(s, w.b, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if err := wireSameMessages(got, want); err != nil {
		t.Fatal(err)
	}
	if cap(s.wrapBuf) == 0 {
		t.Errorf("no record wrapped the ring's end: the test lost its point")
	}
	if len(s.rbuf.buf) > 1<<20 {
		t.Errorf("the receive ring grew to %d bytes for messages of at most %d", len(s.rbuf.buf), 3*MaxFramePayload+1000)
	}
	// The same stream to a reader that never reads overruns the credit.
	s = newParseHarness()
	err = s.feed(w.b, 1<<16)
	wireWantProtocolError(t, "credit overrun", err)
}

type wireBadStream struct {
	name string
	b    []byte
}

func wireBadStreams() []wireBadStream {
	w := func() *wireStream { return &wireStream{} }
	hello := make([]byte, headerLen+helloLen)
	header{typ: frameHello, length: helloLen}.put(hello)
	wireHello.put(hello[headerLen:])
	resumeFrame := make([]byte, headerLen+resumeLen)
	header{typ: frameResume, length: resumeLen}.put(resumeFrame)
	resume{hello: wireHello, sid: 1}.put(resumeFrame[headerLen:])
	welcomeFrame := make([]byte, headerLen+welcomeLen)
	header{typ: frameWelcome, length: welcomeLen}.put(welcomeFrame)
	welcome{version: 1, maxMessage: 1 << 20, window: 4 << 20, deadPeerMs: 15000, sendBuffer: 4 << 20, sid: 1}.put(welcomeFrame[headerLen:])
	ok := wireFlags(AckNone, true)
	return []wireBadStream{
		{"PID gap", w().data(1, ok, "a").dataPID(3, 2, ok, "b").b},
		{"PID repeated", w().data(1, ok, "a").dataPID(1, 2, ok, "b").b},
		{"first PID 0", w().dataPID(0, 1, ok, "a").b},
		{"first PID 2", w().dataPID(2, 1, ok, "a").b},
		{"first MID 0", w().data(0, ok, "a").b},
		{"first MID 2", w().data(2, ok, "a").b},
		{"MID skips", w().data(1, ok, "a").data(3, ok, "b").b},
		{"MID repeated", w().data(1, ok, "a").data(1, ok, "b").b},
		{"chunk of another message inside a message", w().data(1, wireFlags(AckNone, false), "a").data(2, ok, "b").b},
		{"chunk of an older message inside a message", w().data(1, ok, "a").data(2, wireFlags(AckNone, false), "a").data(1, ok, "b").b},
		{"level changes inside a message", w().data(1, wireFlags(AckDelivered, false), "a").data(1, wireFlags(AckProcessed, true), "b").b},
		{"message above MaxMessageSize", w().message(1, AckNone, strings.Repeat("z", DefaultMaxMessageSize+1), MaxFramePayload).b},
		{"FAIL for a message never sent", w().raw(failReport{seq: 1, mid: 1, reason: "x"}.appendFrame(nil)).b},
		{"FAIL sequence gap", w().raw(failReport{seq: 2, mid: 1}.appendFrame(nil)).b},
		{"FAIL bad reason length", w().raw(wireRawHeader(0x05, 0, 0, 0, 19)).raw(wireFailBody(1, 1, 0, "x")).b},
		{"ACK rPID beyond what was sent", w().raw(appendAck(nil, ackBlock{rPID: 1, credit: 4 << 20})).b},
		{"ACK dMID beyond what was sent", w().raw(appendAck(nil, ackBlock{dMID: 1, credit: 4 << 20})).b},
		{"ACK pMID beyond what was sent", w().raw(appendAck(nil, ackBlock{pMID: 1, credit: 4 << 20})).b},
		{"ACK fAck beyond what was sent", w().raw(appendAck(nil, ackBlock{fAck: 1, credit: 4 << 20})).b},
		{"piggybacked ack beyond what was sent", w().data(1, ok, "a").dataAcks(2, ok, ackBlock{rPID: 5}, "b").b},
		{"HELLO after the handshake", w().data(1, ok, "a").raw(hello).b},
		{"RESUME after the handshake", w().raw(resumeFrame).b},
		{"WELCOME after the handshake", w().raw(welcomeFrame).b},
		{"REJECT after the handshake", w().raw(appendCodeReason(nil, frameReject, 1, "no")).b},
		{"unknown frame type", w().data(1, ok, "a").raw(wireRawHeader(0x09, 0, 0, 0, 0)).b},
		{"flags on PING", w().raw(wireRawHeader(0x03, 1, 0, 0, 8)).raw(make([]byte, 8)).b},
		{"DATA length beyond its limit", w().raw(wireRawHeader(0x01, 1, 0, 0, 16+40+MaxFramePayload+1)).b},
		{"DATA level 3", w().raw(wireRawHeader(0x01, 0x31, 0, 0, 16)).raw(make([]byte, 16)).b},
		{"ABORT bad reason length", w().raw(wireRawHeader(0x08, 0, 0, 0, 5)).raw([]byte{0, 1, 0, 0, 'x'}).b},
	}
}

func TestReceiveProtocolErrors(t *testing.T) {
	for _, c := range wireBadStreams() {
		sizes := []int{1, 3, 8, 23, 24, 25, 64, len(c.b)}
		if len(c.b) > 1<<16 {
			sizes = []int{4093, len(c.b)}
		}
		for _, chunk := range sizes {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("%s, chunk %d: panic: %v", c.name, chunk, r)
					}
				}()
				s := newParseHarness()
				err := s.feed(c.b, chunk)
				wireWantProtocolError(t, fmt.Sprintf("%s, chunk %d", c.name, chunk), err)
				if st := s.State(); st != StateClosed {
					t.Errorf("%s, chunk %d: state %v after a protocol error", c.name, chunk, st)
				}
				if got := wireDrain(s); len(got) != 0 {
					t.Errorf("%s, chunk %d: %d messages delivered after a protocol error", c.name, chunk, len(got))
				}
			}()
		}
	}
}

// TestReceiveFailSequence plays the receiving end of FAIL reports: the harness session pretends
// it sent messages 1..4.
func TestReceiveFailSequence(t *testing.T) {
	setup := func() *Session {
		s := newParseHarness()
		s.mu.Lock()
		s.nextMID = 5
		s.mu.Unlock()
		return s
	}
	fail := func(seq, mid uint64) []byte { return failReport{seq: seq, mid: mid, reason: "r"}.appendFrame(nil) }

	s := setup()
	in := append(append(fail(1, 1), fail(1, 1)...), fail(2, 3)...) // the repeat of seq 1 is ignored
	if err := s.feed(in, 5); err != nil {
		t.Fatalf("FAIL 1, 1 again, 2: %v", err)
	}
	if s.rd.fSeq != 2 || s.peerFSeq != 2 {
		t.Errorf("after FAIL 1 and 2: fSeq %d, peerFSeq %d", s.rd.fSeq, s.peerFSeq)
	}
	err := s.feed(fail(4, 4), 0)
	wireWantProtocolError(t, "FAIL sequence 4 after 2", err)

	s = setup()
	s.mu.Lock()
	s.peerAck.pMID = 2
	s.mu.Unlock()
	wireWantProtocolError(t, "FAIL for a message already processed", s.feed(fail(1, 2), 0))

	s = setup()
	wireWantProtocolError(t, "FAIL for a message beyond the last sent", s.feed(fail(1, 5), 0))
}

func TestReceiveControlFrames(t *testing.T) {
	// CLOSE: the peer is done sending; the session is closing and messages still arrive.
	s := newParseHarness()
	in := (&wireStream{}).data(1, wireFlags(AckNone, true), "a").raw(appendSimple(nil, frameClose, 0)).data(2, wireFlags(AckNone, true), "b").b
	if err := s.feed(in, 3); err != nil {
		t.Fatalf("CLOSE: %v", err)
	}
	if st := s.State(); st != StateClosing || s.closing != peerClosing {
		t.Errorf("after CLOSE: state %v, closing phase %v", st, s.closing)
	}
	if got := wireDrain(s); len(got) != 2 {
		t.Errorf("after CLOSE: %d messages, want 2", len(got))
	}

	// CLOSED without our CLOSE is ignored.
	s = newParseHarness()
	if err := s.feed(appendSimple(nil, frameClosed, 0), 0); err != nil || s.State() != StateConnected {
		t.Errorf("unexpected CLOSED: %v, state %v", err, s.State())
	}

	// ABORT: the session ends with ErrSessionClosed quoting the reason; what arrived before
	// stays readable.
	s = newParseHarness()
	in = (&wireStream{}).data(1, wireFlags(AckNone, true), "kept").raw(appendCodeReason(nil, frameAbort, 0, "bye now")).b
	err := s.feed(in, 0)
	if !errors.Is(err, ErrSessionClosed) || errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "bye now") {
		t.Errorf("ABORT: error %v", err)
	}
	if got := wireDrain(s); len(got) != 1 || string(got[0].Data) != "kept" {
		t.Errorf("after ABORT: %s", wireDescribe(got))
	}
}
