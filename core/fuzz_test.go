package core

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for every decoder and for the whole receive path. Seeds are added in code and
// kept as files under testdata/fuzz/<FuzzName>/, so plain `go test` runs them too.

func FuzzParseHeader(f *testing.F) {
	for _, b := range [][]byte{
		wireRawHeader(0x01, 0x21, 0, 0, 21),
		wireRawHeader(0x01, flagAcks|flagEOM|flagCancel, 0, 0, 56),
		wireRawHeader(0x02, 0, 0, 0, 40),
		wireRawHeader(0x05, 0, 0, 0, 18),
		wireRawHeader(0x06, 0, 0, 0, 0),
		wireRawHeader(0x12, 0, 0, 0, welcomeLen),
		wireRawHeader(0x01, 0x30, 0, 0, 16),
		wireRawHeader(0x09, 0, 0, 0, 0),
		wireRawHeader(0x01, 0, 0, 1, 16),
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < headerLen {
			b = append(b, make([]byte, headerLen-len(b))...)
		}
		h, err := parseHeader(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not ErrProtocol", err)
			}
			return
		}
		var out [headerLen]byte
		h.put(out[:])
		if !bytes.Equal(out[:], b[:headerLen]) {
			t.Fatalf("accepted %x, re-encoded as %x", b[:headerLen], out)
		}
		lim := bodyLimits[h.typ]
		if h.length < lim.min || h.length > lim.max {
			t.Fatalf("accepted %v with body length %d outside [%d, %d]", h.typ, h.length, lim.min, lim.max)
		}
		if h.typ == frameData {
			if n := h.dataPayloadLen(); n < 0 || n > MaxFramePayload {
				t.Fatalf("accepted DATA with payload length %d", n)
			}
			if h.flags&levelMask == levelMask || h.flags&^dataFlags != 0 || (h.flags&flagCancel != 0 && (h.flags&flagEOM == 0 || h.dataPayloadLen() != 0)) {
				t.Fatalf("accepted DATA flags %#02x", h.flags)
			}
		} else if h.flags != 0 {
			t.Fatalf("accepted %v with flags %#02x", h.typ, h.flags)
		}
	})
}

func FuzzParseHello(f *testing.F) {
	var b [helloLen]byte
	wireHello.put(b[:])
	f.Add(b[:])
	f.Add(wireHelloBytes(1, 1, 1, minWindow, 10, minWindow))
	f.Add(wireHelloBytes(0, 1, 1<<20, 4<<20, 15000, 4<<20))
	f.Add(wireHelloBytes(1, 1, 1<<20, 1<<20, 15000, 4<<20))
	f.Add([]byte("FTSL"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHello(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not ErrProtocol", err)
			}
			return
		}
		var out [helloLen]byte
		h.put(out[:])
		if !bytes.Equal(out[:], b[:helloLen]) {
			t.Fatalf("accepted %x, re-encoded as %x", b[:helloLen], out)
		}
		if h.check() != nil || h.vmin == 0 || h.vmin > h.vmax {
			t.Fatalf("accepted %+v", h)
		}
	})
}

func FuzzParseResume(f *testing.F) {
	var b [resumeLen]byte
	resume{hello: wireHello, sid: 42, token: wireToken, acks: ackBlock{rPID: 3, dMID: 2, pMID: 1, credit: 4 << 20}}.put(b[:])
	f.Add(b[:])
	f.Add(b[:resumeLen-1])
	b[6] = 1
	f.Add(b[:])
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseResume(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not ErrProtocol", err)
			}
			return
		}
		var out [resumeLen]byte
		r.put(out[:])
		if !bytes.Equal(out[:], b[:resumeLen]) {
			t.Fatalf("accepted %x, re-encoded as %x", b[:resumeLen], out)
		}
	})
}

func FuzzParseWelcome(f *testing.F) {
	f.Add(wireWelcomeBytes(1, 0, 1<<20, 4<<20, 15000, 4<<20, 7))
	f.Add(wireWelcomeBytes(1, 0, 1, minWindow, 10, minWindow, 1))
	f.Add(wireWelcomeBytes(1, 0, 1<<20, 4<<20, 15000, 4<<20, 0))
	f.Add(wireWelcomeBytes(1, 1, 1<<20, 4<<20, 15000, 4<<20, 7))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := parseWelcome(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not ErrProtocol", err)
			}
			return
		}
		var out [welcomeLen]byte
		w.put(out[:])
		if !bytes.Equal(out[:], b[:welcomeLen]) {
			t.Fatalf("accepted %x, re-encoded as %x", b[:welcomeLen], out)
		}
		if w.sid == 0 || w.params().check() != nil {
			t.Fatalf("accepted %+v", w)
		}
	})
}

func FuzzParseFail(f *testing.F) {
	f.Add(wireFailBody(1, 1, 0, ""))
	f.Add(wireFailBody(2, 0x0102, 3, "why"))
	f.Add(wireFailBody(0, 1, 0, ""))
	f.Add(wireFailBody(1, 1, 5, "x"))
	f.Add(wireFailBody(3, 9, 6, "é€😀"[:6]))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := parseFail(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not ErrProtocol", err)
			}
			return
		}
		if fr.seq == 0 || fr.mid == 0 {
			t.Fatalf("accepted %+v", fr)
		}
		frame := fr.appendFrame(nil)
		if !bytes.Equal(frame[headerLen:], b) {
			t.Fatalf("accepted %x, re-encoded body %x", b, frame[headerLen:])
		}
		if len(fr.reason) <= maxReasonLen {
			h, err := parseHeader(frame)
			if err != nil || h.typ != frameFail || int(h.length) != len(b) {
				t.Fatalf("re-encoded FAIL header %x: %+v, %v", frame[:headerLen], h, err)
			}
		}
		again, err := parseFail(frame[headerLen:])
		if err != nil || again != fr {
			t.Fatalf("re-decoded %+v, %v; want %+v", again, err, fr)
		}
	})
}

func FuzzParseCodeReason(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0}, false)
	f.Add([]byte{0, 1, 0, 3, 'b', 'a', 'd'}, false)
	f.Add([]byte{0, 4, 0, 2, 'n', 'o'}, true)
	f.Add([]byte{0, 4, 0, 3, 'n', 'o'}, true)
	f.Add(append([]byte{0, 1, 0x04, 0x01}, strings.Repeat("€", 343)[:1025]...), false)
	f.Fuzz(func(t *testing.T, b []byte, reject bool) {
		typ := frameAbort
		if reject {
			typ = frameReject
		}
		code, reason, err := parseCodeReason(typ, b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not ErrProtocol", err)
			}
			return
		}
		frame := appendCodeReason(nil, typ, code, reason)
		h, err := parseHeader(frame)
		if err != nil || h.typ != typ || int(h.length) != len(frame)-headerLen {
			t.Fatalf("re-encoded header %x: %+v, %v", frame[:headerLen], h, err)
		}
		if len(reason) <= maxReasonLen && !bytes.Equal(frame[headerLen:], b) {
			t.Fatalf("accepted %x, re-encoded body %x", b, frame[headerLen:])
		}
		c2, r2, err := parseCodeReason(typ, frame[headerLen:])
		if err != nil || c2 != code || r2 != clipReason(reason) {
			t.Fatalf("re-decoded %d %q, %v; want %d %q", c2, r2, err, code, clipReason(reason))
		}
	})
}

func FuzzClipReason(f *testing.F) {
	f.Add(strings.Repeat("€", 400))
	f.Add("a" + strings.Repeat("😀", 300))
	f.Add(strings.Repeat("\x80", 1100))
	f.Add("short")
	f.Fuzz(func(t *testing.T, s string) {
		c := clipReason(s)
		if len(c) > maxReasonLen || !strings.HasPrefix(s, c) {
			t.Fatalf("clipReason gave %d bytes, not a prefix within the limit", len(c))
		}
		if len(s) <= maxReasonLen && c != s {
			t.Fatalf("clipReason cut a short string of %d bytes to %d", len(s), len(c))
		}
		if utf8.ValidString(s) {
			if !utf8.ValidString(c) {
				t.Fatalf("clipReason split a rune")
			}
			if len(s) > maxReasonLen && len(c) < maxReasonLen-utf8.UTFMax+1 {
				t.Fatalf("clipReason cut %d bytes to %d, more than a rune short of the limit", len(s), len(c))
			}
		}
	})
}

// wireReceiveSeeds are valid streams for a fresh session, one per kind of frame a peer sends.
func wireReceiveSeeds() map[string][]byte {
	ok := wireFlags(AckNone, true)
	all, _ := wireValidStream()
	return map[string][]byte{
		"one-message":       (&wireStream{}).data(1, ok, "hello").b,
		"chunked-message":   (&wireStream{}).message(1, AckDelivered, "0123456789abcdef", 5).data(2, wireFlags(AckProcessed, true), "").b,
		"cancelled-message": (&wireStream{}).data(1, wireFlags(AckNone, false), "xx").data(1, ok|flagCancel, "").data(2, ok, "next").b,
		"piggybacked-ack":   (&wireStream{}).dataAcks(1, ok, ackBlock{credit: 5 << 20}, "p").b,
		"ack":               appendAck(nil, ackBlock{credit: 5 << 20}),
		"ping":              appendSimple(nil, framePing, 12345),
		"fail":              failReport{seq: 1, mid: 1, reason: "failed"}.appendFrame(nil),
		"close":             append((&wireStream{}).data(1, ok, "a").b, appendSimple(nil, frameClose, 0)...),
		"abort":             appendCodeReason((&wireStream{}).data(1, ok, "a").b, frameAbort, 0, "bye"),
		"everything":        all,
	}
}

// wireReceiveSeedChunks pairs every seed with a chunk size; the fuzzer varies both.
var wireReceiveSeedChunks = map[string]uint8{
	"one-message": 0, "chunked-message": 6, "cancelled-message": 23, "piggybacked-ack": 7, "ack": 63,
	"ping": 3, "fail": 10, "close": 24, "abort": 1, "everything": 12,
}

func FuzzReceivePath(f *testing.F) {
	for name, b := range wireReceiveSeeds() {
		f.Add(b, wireReceiveSeedChunks[name])
	}
	for _, c := range wireBadStreams() {
		if len(c.b) < 4096 {
			f.Add(c.b, uint8(len(c.b)))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		s := newParseHarness()
		err := s.feed(data, int(chunk%64)+1)
		if err != nil && !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrSessionClosed) {
			// ErrSessionClosed: the stream held an ABORT, which ends the session without a
			// protocol error.
			t.Fatalf("feed: %v, neither ErrProtocol nor an ABORT", err)
		}
		got := wireDrain(s)
		for i, m := range got {
			if m.ID == 0 || (i > 0 && m.ID <= got[i-1].ID) {
				t.Fatalf("message IDs not increasing: %s", wireDescribe(got))
			}
			if len(m.Data) > DefaultMaxMessageSize || m.Level > AckProcessed {
				t.Fatalf("message %d: %d bytes, level %d", m.ID, len(m.Data), m.Level)
			}
		}
		s.mu.Lock()
		recvCost, released, window := s.rd.recvCost, s.releasedCost, s.peer.window
		s.mu.Unlock()
		if recvCost < released || recvCost-released > window {
			t.Fatalf("credit bound broken: received cost %d, released %d, window %d", recvCost, released, window)
		}

		// Compare with the reference decoder.
		ref := wireRefReceive(data)
		switch {
		case ref.abortAt >= 0:
			// Frames after the ABORT in the same read are still applied, so how much arrives
			// depends on where the reads split.
			if errors.Is(err, ErrProtocol) {
				if len(got) > 0 {
					t.Fatalf("protocol error, yet %d messages delivered", len(got))
				}
				return
			}
			if !errors.Is(err, ErrSessionClosed) {
				t.Fatalf("stream with ABORT: feed returned %v", err)
			}
			if len(got) < ref.abortAt || len(got) > len(ref.msgs) {
				t.Fatalf("ABORT after %d messages: %d delivered, of %d in the stream", ref.abortAt, len(got), len(ref.msgs))
			}
			if e := wireSameMessages(got, ref.msgs[:len(got)]); e != nil {
				t.Fatal(e)
			}
		case ref.err != "":
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("reference decoder: %s; feed returned %v", ref.err, err)
			}
			if len(got) > 0 {
				t.Fatalf("protocol error, yet %d messages delivered", len(got))
			}
		default:
			if err != nil {
				t.Fatalf("reference decoder accepts the stream; feed returned %v", err)
			}
			if e := wireSameMessages(got, ref.msgs); e != nil {
				t.Fatal(e)
			}
		}
	})
}

// wireRefResult is what a fresh session must make of a byte stream.
type wireRefResult struct {
	msgs    []Message // complete messages, cancelled ones left out
	err     string    // the first protocol error, if any
	abortAt int       // -1, or how many messages were complete when the first ABORT was
}

// wireRefReceive decodes a stream as PROTOCOL.md describes it, for a fresh server session with the
// default Config that has sent nothing. It shares no code with the parser: it is the oracle the
// receive path is checked against. It stops at the first error or at an incomplete frame.
func wireRefReceive(p []byte) wireRefResult {
	const window = DefaultReceiveBufferBytes
	limits := wireBodyLimits
	r := wireRefResult{abortAt: -1}
	var pid, lastMID, cost, curMID uint64
	var curLevel uint8
	var cur []byte
	var curResent, inMsg bool
	fail := func(format string, args ...any) wireRefResult {
		r.err = fmt.Sprintf(format, args...)
		return r
	}
	be64 := binary.BigEndian.Uint64
	ackOK := func(a []byte) bool {
		return be64(a[0:]) == 0 && be64(a[8:]) == 0 && be64(a[16:]) == 0 && be64(a[24:]) == 0 // rPID dMID pMID fAck
	}
	for len(p) >= 8 {
		typ, fl, length := p[0], p[1], binary.BigEndian.Uint32(p[4:8])
		lim, known := limits[typ]
		switch {
		case !known:
			return fail("unknown type %#02x", typ)
		case p[2] != 0 || p[3] != 0:
			return fail("reserved")
		case length < lim[0] || length > lim[1]:
			return fail("length %d", length)
		case typ != 0x01 && fl != 0:
			return fail("flags on type %#02x", typ)
		}
		if typ != 0x01 {
			if uint32(len(p)) < 8+length {
				return r
			}
			body := p[8 : 8+length]
			p = p[8+length:]
			switch typ {
			case 0x02:
				if !ackOK(body) {
					return fail("ack beyond")
				}
			case 0x03, 0x04, 0x06, 0x07:
			case 0x05:
				// Nothing was sent, so every well-formed FAIL names a message never sent.
				return fail("FAIL")
			case 0x08:
				if int(binary.BigEndian.Uint16(body[2:4])) != len(body)-4 {
					return fail("ABORT reason length")
				}
				if r.abortAt < 0 {
					r.abortAt = len(r.msgs)
				}
			default:
				return fail("handshake frame %#02x", typ)
			}
			continue
		}
		// DATA
		if fl&0xc0 != 0 || fl&0x30 == 0x30 || (fl&0x08 != 0 && fl&0x01 == 0) {
			return fail("DATA flags %#02x", fl)
		}
		fixed := uint32(16)
		if fl&0x02 != 0 {
			fixed += 40
		}
		if length < fixed || length-fixed > 65536 {
			return fail("DATA length %d for flags %#02x", length, fl)
		}
		if fl&0x08 != 0 && length != fixed { // a cancel carries no payload
			return fail("DATA cancel with %d payload bytes", length-fixed)
		}
		if uint32(len(p)) < 8+fixed {
			return r
		}
		fpid, fmid, n, level := be64(p[8:]), be64(p[16:]), uint64(length-fixed), fl&0x30
		if fl&0x02 != 0 && !ackOK(p[24:64]) {
			return fail("piggybacked ack beyond")
		}
		if fpid != pid+1 {
			return fail("PID %d after %d", fpid, pid)
		}
		if inMsg {
			if fmid != curMID || level != curLevel {
				return fail("MID %d level %#02x inside message %d", fmid, level, curMID)
			}
			if uint64(len(cur))+n > DefaultMaxMessageSize {
				return fail("message too large")
			}
		} else if fmid != lastMID+1 {
			return fail("MID %d after %d", fmid, lastMID)
		}
		if cost+24+n > window {
			return fail("credit")
		}
		if uint64(len(p)) < uint64(8+fixed)+n {
			return r // the payload is still coming
		}
		payload := p[8+fixed : uint64(8+fixed)+n]
		p = p[uint64(8+fixed)+n:]
		pid, cost = fpid, cost+24+n
		if !inMsg {
			inMsg, curMID, curLevel, cur, curResent, lastMID = true, fmid, level, []byte{}, false, fmid
		}
		cur = append(cur, payload...)
		curResent = curResent || fl&0x04 != 0
		if fl&0x01 != 0 {
			inMsg = false
			if fl&0x08 == 0 {
				r.msgs = append(r.msgs, Message{ID: curMID, Data: cur, Level: AckLevel(level >> 4), Resent: curResent})
			}
		}
	}
	return r
}

// TestFuzzReferenceDecoder checks the oracle itself on the hand-built streams.
func TestFuzzReferenceDecoder(t *testing.T) {
	data, want := wireValidStream()
	ref := wireRefReceive(data)
	if ref.err != "" || ref.abortAt >= 0 {
		t.Fatalf("valid stream: %+v", ref)
	}
	if err := wireSameMessages(ref.msgs, want); err != nil {
		t.Fatal(err)
	}
	for _, c := range wireBadStreams() {
		if ref := wireRefReceive(c.b); ref.err == "" {
			t.Errorf("%s: the reference decoder accepts it", c.name)
		}
	}
	if ref := wireRefReceive(wireReceiveSeeds()["abort"]); ref.abortAt != 1 || len(ref.msgs) != 1 {
		t.Errorf("abort seed: %+v", ref)
	}
}
