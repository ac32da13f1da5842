package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrips(t *testing.T) {
	c := Connect{Version: Version, Name: "alice", Token: "t0k", User: "u", Password: "p", Inbox: "_INBOX.abc"}
	if got, err := DecodeConnect(AppendConnect(nil, c)); err != nil || got != c {
		t.Errorf("CONNECT: %+v %v", got, err)
	}
	c.Flags = ConnectNoEcho
	if got, err := DecodeConnect(AppendConnect(nil, c)); err != nil || got != c {
		t.Errorf("CONNECT with NoEcho: %+v %v", got, err)
	}
	s := Sub{SID: 300, Subject: "chat.*.msg", Queue: "workers"}
	if got, err := DecodeSub(AppendSub(nil, s)); err != nil || got != s {
		t.Errorf("SUB: %+v %v", got, err)
	}
	if got, err := DecodeUnsub(AppendUnsub(nil, 1<<40)); err != nil || got != 1<<40 {
		t.Errorf("UNSUB: %d %v", got, err)
	}
	b := append(AppendPubHeader(nil, 7, 2, "orders.new", "_INBOX.x.1"), "payload"...)
	if got, err := DecodePub(b, nil); err != nil || got.PubID != 7 || got.Level != 2 || got.Subject != "orders.new" ||
		got.Reply != "_INBOX.x.1" || string(got.Payload) != "payload" {
		t.Errorf("PUB: %+v %v", got, err)
	}
	b = append(AppendMsgHeader(nil, 5, "orders.new", "", "bob"), "payload"...)
	if got, err := DecodeMsg(b, nil); err != nil || got.SID != 5 || got.Subject != "orders.new" || got.Reply != "" ||
		got.Publisher != "bob" || string(got.Payload) != "payload" {
		t.Errorf("MSG: %+v %v", got, err)
	}
	o := Outcome{PubID: 9, Matched: 3, Delivered: 3, Processed: 1, Failures: []Failure{{"s1", "no"}, {"s2", "slow consumer"}}}
	if got, err := DecodeOutcome(AppendOutcome(nil, o)); err != nil || !reflect.DeepEqual(got, o) {
		t.Errorf("OUTCOME: %+v %v", got, err)
	}
	n := Notice{Kind: NoticeSlow, SID: 4, Text: "3 missed"}
	if got, err := DecodeNotice(AppendNotice(nil, n)); err != nil || got != n {
		t.Errorf("NOTICE: %+v %v", got, err)
	}
	pr := Progress{PubID: 7, Matched: 300, Delivered: 299}
	if got, err := DecodeProgress(AppendProgress(nil, pr)); err != nil || got != pr {
		t.Errorf("PROGRESS: %+v %v", got, err)
	}
}

// TestTruncated: every message cut short anywhere decodes to ErrMalformed, never a panic (PUB and
// MSG take whatever follows their header as payload, so they are cut inside the header only).
func TestTruncated(t *testing.T) {
	msgs := map[string][]byte{
		"CONNECT":  AppendConnect(nil, Connect{Version: 1, Name: "n", Token: "t"}),
		"SUB":      AppendSub(nil, Sub{SID: 1, Subject: "a.b", Queue: "q"}),
		"UNSUB":    AppendUnsub(nil, 1),
		"PUB":      AppendPubHeader(nil, 1, 0, "a", "r"),
		"MSG":      AppendMsgHeader(nil, 1, "a", "r", "p"),
		"OUTCOME":  AppendOutcome(nil, Outcome{PubID: 1, Failures: []Failure{{"s", "r"}}}),
		"NOTICE":   AppendNotice(nil, Notice{Kind: 1, SID: 1, Text: "x"}),
		"PROGRESS": AppendProgress(nil, Progress{PubID: 1, Matched: 2, Delivered: 2}),
	}
	for name, full := range msgs {
		for n := 0; n < len(full); n++ {
			if err := decodeAny(full[:n]); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s cut at %d of %d bytes: %v", name, n, len(full), err)
			}
		}
		if name != "PUB" && name != "MSG" {
			if err := decodeAny(append(bytes.Clone(full), 0)); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s with a byte too many: %v", name, err)
			}
		}
	}
}

// TestConnectFlags: a CONNECT without the flags byte (the first release's) is flags 0, and one
// without flags is written as the first release wrote it; a flags byte of 0, unknown bits and
// bytes after the flags are refused.
func TestConnectFlags(t *testing.T) {
	old := Connect{Version: 1, Name: "n", Inbox: "_INBOX.x"}
	b := AppendConnect(nil, old)
	want := []byte{OpConnect, 1, 1, 'n', 0, 0, 0, 8, '_', 'I', 'N', 'B', 'O', 'X', '.', 'x'}
	if !bytes.Equal(b, want) {
		t.Fatalf("CONNECT without flags encodes as\n% x\nnot as the first release's\n% x", b, want)
	}
	if got, err := DecodeConnect(want); err != nil || got != old {
		t.Errorf("the first release's CONNECT: %+v %v", got, err)
	}
	if got, err := DecodeConnect(append(bytes.Clone(want), ConnectNoEcho)); err != nil || got.Flags != ConnectNoEcho {
		t.Errorf("NoEcho: %+v %v", got, err)
	}
	for _, tc := range []struct {
		tail []byte
		want string
	}{
		{[]byte{0}, "CONNECT flags 0: the byte is written only with a flag set"},
		{[]byte{0x02}, "CONNECT flags 0x2: unknown bits 0x2"},
		{[]byte{0x81}, "CONNECT flags 0x81: unknown bits 0x80"},
		{[]byte{ConnectNoEcho, 0}, "1 bytes after CONNECT"},
		{[]byte{ConnectNoEcho, 0, 0}, "2 bytes after CONNECT"},
	} {
		_, err := DecodeConnect(append(bytes.Clone(want), tc.tail...))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CONNECT then % x: %v, want ErrMalformed about %q", tc.tail, err, tc.want)
		}
	}
}

func TestLimits(t *testing.T) {
	long := strings.Repeat("x", MaxString+1)
	if _, err := DecodeSub(AppendSub(nil, Sub{SID: 1, Subject: long})); !errors.Is(err, ErrMalformed) {
		t.Errorf("a subject over MaxString: %v", err)
	}
	many := Outcome{Failures: make([]Failure, MaxFailures+5)}
	o, err := DecodeOutcome(AppendOutcome(nil, many))
	if err != nil || len(o.Failures) != MaxFailures {
		t.Errorf("an outcome with too many failures encodes %d of them: %v", len(o.Failures), err)
	}
	b := AppendOutcome(nil, Outcome{})
	b = append(b[:len(b)-1], 0xff, 0xff, 0x01) // a failure count far above the limit
	if _, err := DecodeOutcome(b); !errors.Is(err, ErrMalformed) {
		t.Errorf("failure count above MaxFailures: %v", err)
	}
	if _, err := DecodeSub([]byte{OpPub}); !errors.Is(err, ErrMalformed) {
		t.Errorf("the wrong op: %v", err)
	}
	if Op(nil) != 0 || Op([]byte{OpMsg, 1}) != OpMsg {
		t.Error("Op")
	}
}

func decodeAny(b []byte) error {
	var err error
	switch Op(b) {
	case OpConnect:
		_, err = DecodeConnect(b)
	case OpSub:
		_, err = DecodeSub(b)
	case OpUnsub:
		_, err = DecodeUnsub(b)
	case OpPub:
		_, err = DecodePub(b, nil)
	case OpMsg:
		_, err = DecodeMsg(b, nil)
	case OpOutcome:
		_, err = DecodeOutcome(b)
	case OpNotice:
		_, err = DecodeNotice(b)
	case OpProgress:
		_, err = DecodeProgress(b)
	default:
		_, err = DecodeSub(b) // any decoder refuses an unknown op
	}
	return err
}

// FuzzDecode: no input panics a decoder, and whatever decodes encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(AppendConnect(nil, Connect{Version: 1, Name: "n"}))
	f.Add(AppendConnect(nil, Connect{Version: 1, Name: "n", Inbox: "_INBOX.x", Flags: ConnectNoEcho}))
	f.Add(AppendSub(nil, Sub{SID: 2, Subject: "a.>", Queue: "q"}))
	f.Add(AppendUnsub(nil, 3))
	f.Add(append(AppendPubHeader(nil, 1, 2, "a.b", ""), 1, 2, 3))
	f.Add(append(AppendMsgHeader(nil, 1, "a.b", "r", "p"), 4))
	f.Add(AppendOutcome(nil, Outcome{PubID: 1, Matched: 2, Failures: []Failure{{"a", "b"}}}))
	f.Add(AppendNotice(nil, Notice{Kind: 1, SID: 1, Text: "t"}))
	f.Add(AppendProgress(nil, Progress{PubID: 1, Matched: 2, Delivered: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var again []byte
		switch Op(b) {
		case OpConnect:
			if c, err := DecodeConnect(b); err == nil {
				again = AppendConnect(nil, c)
			}
		case OpSub:
			if s, err := DecodeSub(b); err == nil {
				again = AppendSub(nil, s)
			}
		case OpUnsub:
			if sid, err := DecodeUnsub(b); err == nil {
				again = AppendUnsub(nil, sid)
			}
		case OpPub:
			if p, err := DecodePub(b, nil); err == nil {
				again = append(AppendPubHeader(nil, p.PubID, p.Level, p.Subject, p.Reply), p.Payload...)
			}
		case OpMsg:
			if m, err := DecodeMsg(b, nil); err == nil {
				again = append(AppendMsgHeader(nil, m.SID, m.Subject, m.Reply, m.Publisher), m.Payload...)
			}
		case OpOutcome:
			if o, err := DecodeOutcome(b); err == nil {
				again = AppendOutcome(nil, o)
			}
		case OpNotice:
			if n, err := DecodeNotice(b); err == nil {
				again = AppendNotice(nil, n)
			}
		case OpProgress:
			if p, err := DecodeProgress(b); err == nil {
				again = AppendProgress(nil, p)
			}
		}
		// Varints have more than one encoding; a decoded message re-encodes to the shortest.
		if again != nil && len(again) > len(b) {
			t.Fatalf("%x re-encodes longer: %x", b, again)
		}
		if again != nil {
			if err := decodeAny(again); err != nil {
				t.Fatalf("%x re-encoded does not decode: %v", b, err)
			}
		}
	})
}
