package core

import (
	"encoding/binary"
	"fmt"
)

// This file is the wire format: every constant, the header layout and every frame body.
// core/PROTOCOL.md describes the same bytes in prose; wire_test.go pins them.

// Protocol versions this implementation speaks. The client offers [min, max]; the server picks
// the highest version in both ranges.
const (
	minVersion = 1
	maxVersion = 1
)

// magic opens HELLO and RESUME bodies so a stray connection is refused on its first bytes.
var magic = [4]byte{'F', 'T', 'S', 'L'}

// Sizes, in bytes.
const (
	headerLen    = 8  // type, flags, reserved(2), body length(4)
	dataFixedLen = 16 // PID, MID
	dataHdrLen   = headerLen + dataFixedLen
	ackBlockLen  = 40 // rPID, dMID, pMID, fAck, credit
	tokenLen     = 16 // resume token: 128 random bits
	helloLen     = 24
	resumeLen    = helloLen + 8 + tokenLen + ackBlockLen
	welcomeLen   = 44 + ackBlockLen
	pingLen      = 8

	// MaxFramePayload is the largest payload of one DATA frame. A longer message is sent as
	// several frames (chunks); the last one carries end-of-message.
	MaxFramePayload = 64 << 10

	// maxReasonLen bounds the reason text in FAIL, ABORT and REJECT frames; longer reasons are
	// cut at a UTF-8 boundary before they are sent.
	maxReasonLen = 1024
)

// frameType is the first byte of every frame.
type frameType uint8

// Frame types.
const (
	frameData    frameType = 0x01 // application data: one chunk of a message
	frameAck     frameType = 0x02 // a standalone ack block
	framePing    frameType = 0x03 // heartbeat; the peer answers PONG with the same value
	framePong    frameType = 0x04
	frameFail    frameType = 0x05 // the receiving application failed a message (sequenced)
	frameClose   frameType = 0x06 // graceful close: "I am done sending; finish and reply CLOSED"
	frameClosed  frameType = 0x07 // reply to CLOSE: the session is over
	frameAbort   frameType = 0x08 // the session ends now
	frameHello   frameType = 0x10 // client: open a new session
	frameResume  frameType = 0x11 // client: resume a session on a new connection
	frameWelcome frameType = 0x12 // server: handshake accepted
	frameReject  frameType = 0x13 // server: handshake refused
)

func (t frameType) String() string {
	switch t {
	case frameData:
		return "DATA"
	case frameAck:
		return "ACK"
	case framePing:
		return "PING"
	case framePong:
		return "PONG"
	case frameFail:
		return "FAIL"
	case frameClose:
		return "CLOSE"
	case frameClosed:
		return "CLOSED"
	case frameAbort:
		return "ABORT"
	case frameHello:
		return "HELLO"
	case frameResume:
		return "RESUME"
	case frameWelcome:
		return "WELCOME"
	case frameReject:
		return "REJECT"
	}
	return fmt.Sprintf("frame(0x%02x)", uint8(t))
}

// DATA flags.
const (
	flagEOM    = 0x01 // last chunk of its message
	flagAcks   = 0x02 // an ack block follows PID and MID
	flagResent = 0x04 // this frame was sent before, on a connection that broke
	flagCancel = 0x08 // with EOM: the sender abandoned this message; drop its chunks
	levelShift = 4
	levelMask  = 0x30 // ack level requested, values 0..2
	// flagPrompt: the sender had nothing else unacknowledged when it sent this message (a
	// request): acknowledge it as soon as its level is reached, not AckDelay later.
	flagPrompt = 0x40
	dataFlags  = flagEOM | flagAcks | flagResent | flagCancel | levelMask | flagPrompt
)

// bodyLimits gives, per frame type, the smallest and largest body length a receiver accepts.
// A declared length is checked against it before any byte of the body is read or buffered.
var bodyLimits = [256]struct{ min, max uint32 }{
	frameData:    {dataFixedLen, dataFixedLen + ackBlockLen + MaxFramePayload},
	frameAck:     {ackBlockLen, ackBlockLen},
	framePing:    {pingLen, pingLen},
	framePong:    {pingLen, pingLen},
	frameFail:    {18, 18 + maxReasonLen},
	frameClose:   {0, 0},
	frameClosed:  {0, 0},
	frameAbort:   {4, 4 + maxReasonLen},
	frameHello:   {helloLen, helloLen},
	frameResume:  {resumeLen, resumeLen},
	frameWelcome: {welcomeLen, welcomeLen},
	frameReject:  {4, 4 + maxReasonLen},
}

// header is the 8 bytes that open every frame.
type header struct {
	typ    frameType
	flags  uint8
	length uint32 // body bytes after the header
}

// put writes h into b[:headerLen].
func (h header) put(b []byte) {
	_ = b[headerLen-1]
	b[0] = byte(h.typ)
	b[1] = h.flags
	b[2], b[3] = 0, 0
	binary.BigEndian.PutUint32(b[4:8], h.length)
}

// parseHeader decodes and checks the header at the start of b (len(b) >= headerLen).
func parseHeader(b []byte) (header, error) {
	_ = b[headerLen-1]
	h := header{typ: frameType(b[0]), flags: b[1], length: binary.BigEndian.Uint32(b[4:8])}
	lim := bodyLimits[h.typ]
	if lim.max == 0 && h.typ != frameClose && h.typ != frameClosed {
		return h, protocolError("unknown frame type 0x%02x", b[0])
	}
	if b[2] != 0 || b[3] != 0 {
		return h, protocolError("%v: reserved header bytes are not zero", h.typ)
	}
	if h.length < lim.min || h.length > lim.max {
		return h, protocolError("%v: body length %d outside [%d, %d]", h.typ, h.length, lim.min, lim.max)
	}
	if h.typ == frameData {
		if h.flags&^dataFlags != 0 || h.flags&levelMask == levelMask {
			return h, protocolError("DATA: bad flags 0x%02x", h.flags)
		}
		if h.flags&flagCancel != 0 && (h.flags&flagEOM == 0 || h.dataPayloadLen() != 0) {
			return h, protocolError("DATA: cancel must be an empty end-of-message frame")
		}
		fixed := uint32(dataFixedLen)
		if h.flags&flagAcks != 0 {
			fixed += ackBlockLen
		}
		if h.length < fixed || h.length-fixed > MaxFramePayload {
			return h, protocolError("DATA: body length %d does not fit its flags", h.length)
		}
	} else if h.flags != 0 {
		return h, protocolError("%v: flags 0x%02x must be zero", h.typ, h.flags)
	}
	return h, nil
}

// dataPayloadLen is the payload length of a DATA frame with header h.
func (h header) dataPayloadLen() int {
	n := int(h.length) - dataFixedLen
	if h.flags&flagAcks != 0 {
		n -= ackBlockLen
	}
	return n
}

// frameCost is what a DATA frame with n payload bytes costs against the receiver's credit. It is
// the size of the frame without its optional ack block, which is also the size of the frame as the
// sender keeps it in its sent buffer, so credit offsets and sent-buffer offsets are the same numbers.
func frameCost(n int) uint64 { return uint64(dataHdrLen + n) }

// messageCost is the cost of a message of n bytes sent by Send: one frame per MaxFramePayload bytes
// (an empty message is one empty frame). It also takes a peer's advertised size, a u32, and
// counts in uint64: where int has 32 bits, int(u32) can turn negative and n+MaxFramePayload wrap.
func messageCost[N int | uint32](n N) uint64 {
	u := uint64(n)
	frames := max(1, (u+MaxFramePayload-1)/MaxFramePayload)
	return u + frames*dataHdrLen
}

// AckLevel says what a message's sender wants to hear back about it.
type AckLevel uint8

// Ack levels, as carried in DATA flags.
const (
	// AckNone: nothing beyond the session layer's own bookkeeping.
	AckNone AckLevel = 0
	// AckDelivered: tell the sender when the receiving application has been handed the message.
	AckDelivered AckLevel = 1
	// AckProcessed: tell the sender when the receiving application confirmed (Settle) the message,
	// or that it failed.
	AckProcessed AckLevel = 2
)

func (l AckLevel) String() string {
	switch l {
	case AckNone:
		return "none"
	case AckDelivered:
		return "delivered"
	case AckProcessed:
		return "processed"
	}
	return fmt.Sprintf("AckLevel(%d)", uint8(l))
}

// dataHeader is the fixed part of a DATA frame.
type dataHeader struct {
	flags uint8
	n     int // payload length
	pid   uint64
	mid   uint64
}

// put writes a DATA header without ack block into b[:dataHdrLen].
func (d dataHeader) put(b []byte) {
	_ = b[dataHdrLen-1]
	header{typ: frameData, flags: d.flags, length: uint32(dataFixedLen + d.n)}.put(b)
	binary.BigEndian.PutUint64(b[8:16], d.pid)
	binary.BigEndian.PutUint64(b[16:24], d.mid)
}

// dataHdr reads the fixed part of a DATA frame from its first dataHdrLen bytes: the reader's view
// of a frame arriving, and the sent buffer's view of a frame it keeps.
type dataHdr []byte

func (h dataHdr) flags() uint8 { return h[1] }
func (h dataHdr) pid() uint64  { return binary.BigEndian.Uint64(h[8:16]) }
func (h dataHdr) mid() uint64  { return binary.BigEndian.Uint64(h[16:24]) }

// payloadLen is the payload length of a frame without ack block, as the sent buffer keeps them.
func (h dataHdr) payloadLen() int { return int(binary.BigEndian.Uint32(h[4:8])) - dataFixedLen }

// sentExternal marks, in the reserved byte 2 of a header kept in the sent buffer, a frame whose
// payload is not all in the buffer but shared with other sessions (Session.SendShared): only its
// first prefixLen bytes are, prefixLen being kept in the reserved byte 3. Neither byte goes on the
// wire: the writer sends a copy of the header with both cleared.
const sentExternal = 0x80

// maxKeptPrefix is the longest prefix an external frame keeps in the sent buffer (byte 3).
const maxKeptPrefix = 255

func (h dataHdr) external() bool  { return h[2]&sentExternal != 0 }
func (h dataHdr) prefixLen() int  { return int(h[3]) }
func (h dataHdr) clearKeptMarks() { h[2], h[3] = 0, 0 }

// keptLen is how many bytes the sent buffer holds for the frame: all of it, or only its header
// and prefix when the rest of its payload is external.
func (h dataHdr) keptLen() uint64 {
	if h.external() {
		return dataHdrLen + uint64(h.prefixLen())
	}
	return dataHdrLen + uint64(h.payloadLen())
}

func dataFlagsFor(level AckLevel, eom bool) uint8 {
	f := uint8(level) << levelShift
	if eom {
		f |= flagEOM
	}
	return f
}

// ackBlock is the acknowledgement state one side reports to the other. Every field only grows.
type ackBlock struct {
	rPID   uint64 // last packet received, in order
	dMID   uint64 // last message handed to the application
	pMID   uint64 // last message settled: processed, failed (its FAIL sent first), or not asking
	fAck   uint64 // last FAIL sequence number received
	credit uint64 // the peer may send DATA up to this cost offset
}

func (a ackBlock) put(b []byte) {
	_ = b[ackBlockLen-1]
	binary.BigEndian.PutUint64(b[0:8], a.rPID)
	binary.BigEndian.PutUint64(b[8:16], a.dMID)
	binary.BigEndian.PutUint64(b[16:24], a.pMID)
	binary.BigEndian.PutUint64(b[24:32], a.fAck)
	binary.BigEndian.PutUint64(b[32:40], a.credit)
}

func parseAckBlock(b []byte) ackBlock {
	_ = b[ackBlockLen-1]
	return ackBlock{
		rPID:   binary.BigEndian.Uint64(b[0:8]),
		dMID:   binary.BigEndian.Uint64(b[8:16]),
		pMID:   binary.BigEndian.Uint64(b[16:24]),
		fAck:   binary.BigEndian.Uint64(b[24:32]),
		credit: binary.BigEndian.Uint64(b[32:40]),
	}
}

// max merges another report into a, keeping the larger value of every field.
func (a *ackBlock) max(b ackBlock) {
	a.rPID = max(a.rPID, b.rPID)
	a.dMID = max(a.dMID, b.dMID)
	a.pMID = max(a.pMID, b.pMID)
	a.fAck = max(a.fAck, b.fAck)
	a.credit = max(a.credit, b.credit)
}

// hello is the body of HELLO, and the first part of RESUME: what a client offers.
type hello struct {
	vmin, vmax uint8
	maxMessage uint32 // largest message this side accepts
	window     uint32 // receive window: the credit it grants
	deadPeerMs uint32 // its DeadPeerTimeout; the peer sends heartbeats well within it
	sendBuffer uint32 // its SendBufferBytes; the peer acks well before that much arrives
}

func (h hello) put(b []byte) {
	_ = b[helloLen-1]
	copy(b[0:4], magic[:])
	b[4], b[5], b[6], b[7] = h.vmin, h.vmax, 0, 0
	binary.BigEndian.PutUint32(b[8:12], h.maxMessage)
	binary.BigEndian.PutUint32(b[12:16], h.window)
	binary.BigEndian.PutUint32(b[16:20], h.deadPeerMs)
	binary.BigEndian.PutUint32(b[20:24], h.sendBuffer)
}

func parseHello(b []byte) (hello, error) {
	if len(b) < helloLen {
		return hello{}, protocolError("HELLO: %d bytes, want %d", len(b), helloLen)
	}
	if [4]byte(b[0:4]) != magic {
		return hello{}, protocolError("handshake: bad magic %q", b[0:4])
	}
	h := hello{
		vmin:       b[4],
		vmax:       b[5],
		maxMessage: binary.BigEndian.Uint32(b[8:12]),
		window:     binary.BigEndian.Uint32(b[12:16]),
		deadPeerMs: binary.BigEndian.Uint32(b[16:20]),
		sendBuffer: binary.BigEndian.Uint32(b[20:24]),
	}
	if b[6] != 0 || b[7] != 0 {
		return h, protocolError("HELLO: reserved bytes are not zero")
	}
	if h.vmin == 0 || h.vmin > h.vmax {
		return h, protocolError("HELLO: bad version range [%d, %d]", h.vmin, h.vmax)
	}
	if err := h.check(); err != nil {
		return h, err
	}
	return h, nil
}

// check rejects parameters no peer could honour: a window that cannot hold the largest message.
func (h hello) check() error {
	if h.maxMessage == 0 || h.window < minWindow || uint64(h.window) < messageCost(h.maxMessage)+dataHdrLen {
		return protocolError("handshake: window %d cannot hold a message of %d bytes", h.window, h.maxMessage)
	}
	if h.deadPeerMs < 10 {
		return protocolError("handshake: dead-peer timeout %d ms is too short", h.deadPeerMs)
	}
	if h.sendBuffer < minWindow {
		return protocolError("handshake: send buffer %d is below %d", h.sendBuffer, minWindow)
	}
	return nil
}

// resume is the body of RESUME.
type resume struct {
	hello
	sid   uint64
	token [tokenLen]byte
	acks  ackBlock
}

func (r resume) put(b []byte) {
	_ = b[resumeLen-1]
	r.hello.put(b)
	binary.BigEndian.PutUint64(b[24:32], r.sid)
	copy(b[32:48], r.token[:])
	r.acks.put(b[48:88])
}

func parseResume(b []byte) (resume, error) {
	if len(b) < resumeLen {
		return resume{}, protocolError("RESUME: %d bytes, want %d", len(b), resumeLen)
	}
	h, err := parseHello(b[:helloLen])
	if err != nil {
		return resume{}, err
	}
	return resume{
		hello: h,
		sid:   binary.BigEndian.Uint64(b[24:32]),
		token: [tokenLen]byte(b[32:48]),
		acks:  parseAckBlock(b[48:88]),
	}, nil
}

// welcome is the body of WELCOME: the server's half of the handshake.
type welcome struct {
	version    uint8
	maxMessage uint32
	window     uint32
	deadPeerMs uint32
	sendBuffer uint32
	sid        uint64
	token      [tokenLen]byte // the new session's token; zero on resume
	acks       ackBlock
}

func (w welcome) put(b []byte) {
	_ = b[welcomeLen-1]
	b[0], b[1], b[2], b[3] = w.version, 0, 0, 0
	binary.BigEndian.PutUint32(b[4:8], w.maxMessage)
	binary.BigEndian.PutUint32(b[8:12], w.window)
	binary.BigEndian.PutUint32(b[12:16], w.deadPeerMs)
	binary.BigEndian.PutUint32(b[16:20], w.sendBuffer)
	binary.BigEndian.PutUint64(b[20:28], w.sid)
	copy(b[28:44], w.token[:])
	w.acks.put(b[44:84])
}

func parseWelcome(b []byte) (welcome, error) {
	if len(b) < welcomeLen {
		return welcome{}, protocolError("WELCOME: %d bytes, want %d", len(b), welcomeLen)
	}
	w := welcome{
		version:    b[0],
		maxMessage: binary.BigEndian.Uint32(b[4:8]),
		window:     binary.BigEndian.Uint32(b[8:12]),
		deadPeerMs: binary.BigEndian.Uint32(b[12:16]),
		sendBuffer: binary.BigEndian.Uint32(b[16:20]),
		sid:        binary.BigEndian.Uint64(b[20:28]),
		token:      [tokenLen]byte(b[28:44]),
		acks:       parseAckBlock(b[44:84]),
	}
	if b[1] != 0 || b[2] != 0 || b[3] != 0 {
		return w, protocolError("WELCOME: reserved bytes are not zero")
	}
	if w.sid == 0 {
		return w, protocolError("WELCOME: session ID 0")
	}
	return w, w.params().check()
}

// params is the part of a WELCOME that a HELLO also carries.
func (w welcome) params() hello {
	return hello{maxMessage: w.maxMessage, window: w.window, deadPeerMs: w.deadPeerMs, sendBuffer: w.sendBuffer}
}

// failReport is the body of FAIL: the receiving application failed message mid for good.
type failReport struct {
	seq    uint64 // 1, 2, 3... per direction; lets the receiver drop repeats after a resume
	mid    uint64
	reason string
}

func (f failReport) encodedLen() int { return headerLen + 18 + len(f.reason) }

// appendFrame appends the whole FAIL frame to b.
func (f failReport) appendFrame(b []byte) []byte {
	n := len(b)
	b = append(b, make([]byte, f.encodedLen())...)
	header{typ: frameFail, length: uint32(18 + len(f.reason))}.put(b[n:])
	binary.BigEndian.PutUint64(b[n+8:], f.seq)
	binary.BigEndian.PutUint64(b[n+16:], f.mid)
	binary.BigEndian.PutUint16(b[n+24:], uint16(len(f.reason)))
	copy(b[n+26:], f.reason)
	return b
}

func parseFail(b []byte) (failReport, error) {
	if len(b) < 18 {
		return failReport{}, protocolError("FAIL: %d bytes", len(b))
	}
	f := failReport{seq: binary.BigEndian.Uint64(b[0:8]), mid: binary.BigEndian.Uint64(b[8:16])}
	n := int(binary.BigEndian.Uint16(b[16:18]))
	if n != len(b)-18 {
		return f, protocolError("FAIL: reason length %d in a body of %d", n, len(b))
	}
	if f.seq == 0 || f.mid == 0 {
		return f, protocolError("FAIL: sequence %d, message %d", f.seq, f.mid)
	}
	f.reason = string(b[18:])
	return f, nil
}

// appendCodeReason appends an ABORT or REJECT frame: a code and a reason text.
func appendCodeReason(b []byte, t frameType, code uint16, reason string) []byte {
	reason = clipReason(reason)
	n := len(b)
	b = append(b, make([]byte, headerLen+4+len(reason))...)
	header{typ: t, length: uint32(4 + len(reason))}.put(b[n:])
	binary.BigEndian.PutUint16(b[n+8:], code)
	binary.BigEndian.PutUint16(b[n+10:], uint16(len(reason)))
	copy(b[n+12:], reason)
	return b
}

func parseCodeReason(t frameType, b []byte) (uint16, string, error) {
	if len(b) < 4 {
		return 0, "", protocolError("%v: %d bytes", t, len(b))
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n != len(b)-4 {
		return 0, "", protocolError("%v: reason length %d in a body of %d", t, n, len(b))
	}
	return binary.BigEndian.Uint16(b[0:2]), string(b[4:]), nil
}

// clipReason cuts s to maxReasonLen bytes without splitting a UTF-8 sequence.
func clipReason(s string) string {
	if len(s) <= maxReasonLen {
		return s
	}
	i := maxReasonLen
	for i > 0 && s[i]&0xC0 == 0x80 { // continuation byte: back up to the sequence start
		i--
	}
	return s[:i]
}

// appendSimple appends a frame whose body is empty or one uint64 (CLOSE, CLOSED, PING, PONG).
func appendSimple(b []byte, t frameType, v uint64) []byte {
	n := len(b)
	if t == framePing || t == framePong {
		b = append(b, make([]byte, headerLen+pingLen)...)
		header{typ: t, length: pingLen}.put(b[n:])
		binary.BigEndian.PutUint64(b[n+8:], v)
		return b
	}
	b = append(b, make([]byte, headerLen)...)
	header{typ: t}.put(b[n:])
	return b
}

// appendAck appends a standalone ACK frame.
func appendAck(b []byte, a ackBlock) []byte {
	n := len(b)
	b = append(b, make([]byte, headerLen+ackBlockLen)...)
	header{typ: frameAck, length: ackBlockLen}.put(b[n:])
	a.put(b[n+headerLen:])
	return b
}
