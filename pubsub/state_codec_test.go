package pubsub

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/testkit"
	"github.com/ftsl-go/ftsl/oneway"
)

// randomHubState fills a HubState by reflection (testkit.Filler), every field of every struct,
// so that a field added later and not encoded fails the round trip. With full, every pointer,
// bool and list is set and no integer is zero: a field the codec drops cannot come back equal by
// luck.
func randomHubState(t testing.TB, seed uint64, full bool) HubState {
	f := testkit.Filler{TB: t, R: rand.New(rand.NewPCG(seed, 0x5eed)), Full: full,
		Custom: func(f *testkit.Filler, v reflect.Value) bool {
			switch v.Type() {
			case reflect.TypeFor[oneway.ListenerState]():
				// the oneway and core layers encode it
			case reflect.TypeFor[oneway.AckLevel]():
				l := f.R.IntN(3)
				if f.Full {
					l = 1 + f.R.IntN(2)
				}
				v.SetUint(uint64(l))
			default:
				return false
			}
			return true
		}}
	var st HubState
	f.Fill(reflect.ValueOf(&st).Elem(), "HubState")
	return st
}

// someListener is a Listener the hub layer must neither encode nor touch.
func someListener(id uint64) oneway.ListenerState {
	return oneway.ListenerState{
		Core:     core.ListenerState{Sessions: []core.SessionState{{ID: id, Accepted: true}}},
		Sessions: []oneway.SessionState{{ID: id, AckDone: 3}},
	}
}

// TestHubStateCodecRoundTrip: a state with every field filled comes back DeepEqual, but for its
// Listener, which is not in the layer: the decoded state keeps its own.
func TestHubStateCodecRoundTrip(t *testing.T) {
	for seed := range uint64(300) {
		full := seed%2 == 0
		st := randomHubState(t, seed, full)
		b, err := st.MarshalLayer()
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if len(b) != cap(b) {
			t.Fatalf("seed %d: %d bytes in a buffer of %d: the size was not worked out right", seed, len(b), cap(b))
		}
		st.Listener = someListener(7)
		if b2, err := st.MarshalLayer(); err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("seed %d: the Listener changed the encoding (%v)", seed, err)
		}
		got := HubState{Listener: someListener(8)}
		if err := got.UnmarshalLayer(b); err != nil {
			t.Fatalf("seed %d (full %v): %v", seed, full, err)
		}
		want := st
		want.Listener = someListener(8)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d (full %v): decoded\n%+v\nwant\n%+v", seed, full, got, want)
		}
		if b2, err := got.MarshalLayer(); err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("seed %d: encoding the decoded state gave other bytes (%v)", seed, err)
		}
	}
}

// pinnedHubState is a small state with every field set, which TestHubStateCodecBytes encodes.
func pinnedHubState() HubState {
	return HubState{
		Members: []MemberState{{
			Session: 5, Connected: true, Identity: "a", Inbox: "_I.1",
			Permissions:   &Permissions{Identity: "id", Publish: Rules{Allow: []string{"x.>"}}, Subscribe: Rules{Deny: []string{"y"}}},
			Subscriptions: []SubscriptionState{{SID: 1, Subject: "s", Queue: "q", Missed: 2}},
			Waiting:       [][]byte{{0xaa}},
			Throttled:     true,
			NoEcho:        true,
		}, {Session: 300}},
		Publishes: []PublishState{{
			Publisher: 5, PubID: 9, Level: AckProcessed, Subject: "s", Reply: "r", Payload: []byte{1, 2},
			Report: true, Matched: 3, Delivered: 2, Processed: 1,
			Failures: []FailureState{{Subscriber: "f", Reason: "why"}}, Handed: 2,
			Shares: []ShareState{{Subscriber: 300, SID: 4, Ticket: 17, Group: "g", Tried: []uint64{5}, Had: true}},
		}},
		RoundRobin: 1, Published: 2, Sent: 3, SlowDropped: 128,
	}
}

// TestHubStateCodecBytes pins the layout, byte by byte (the snapshot format's description
// follows it).
func TestHubStateCodecBytes(t *testing.T) {
	st := pinnedHubState()
	want := cat(
		[]byte{2}, // format
		[]byte{2}, // members
		[]byte{5, 1, 0, 1, 'a', 4, '_', 'I', '.', '1'},               // Session, Connected, Refused, Identity, Inbox
		[]byte{1, 2, 'i', 'd', 1, 3, 'x', '.', '>', 0, 0, 1, 1, 'y'}, // Permissions
		[]byte{1, 1, 1, 's', 1, 'q', 2},                              // Subscriptions
		[]byte{1, 1, 0xaa},                                           // Waiting
		[]byte{1, 1},                                                 // Throttled, NoEcho
		[]byte{0xac, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0},                // member 300, all else empty
		pinnedPublishes,
	)
	b, err := st.MarshalLayer()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("encoded\n% x\nwant\n% x", b, want)
	}
	var got HubState
	if err := got.UnmarshalLayer(want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("decoded %+v, want %+v", got, st)
	}
}

// pinnedPublishes is pinnedHubState's encoding after its members, the same in formats 1 and 2.
var pinnedPublishes = cat(
	[]byte{1}, // publishes
	[]byte{5, 9, 2, 1, 's', 1, 'r', 2, 1, 2, 1, 0, 3, 2, 1}, // Publisher ... Processed
	[]byte{1, 1, 'f', 3, 'w', 'h', 'y', 2},                  // Failures, Handed
	[]byte{1, 0xac, 0x02, 4, 17, 1, 'g', 1, 5, 1},           // Shares
	[]byte{1, 2, 3, 0x80, 0x01},                             // RoundRobin, Published, Sent, SlowDropped
)

// pinnedFormat1 is pinnedHubState as the first release encoded it: format 1, no NoEcho.
var pinnedFormat1 = cat(
	[]byte{1}, // format
	[]byte{2}, // members
	[]byte{5, 1, 0, 1, 'a', 4, '_', 'I', '.', '1'},               // Session, Connected, Refused, Identity, Inbox
	[]byte{1, 2, 'i', 'd', 1, 3, 'x', '.', '>', 0, 0, 1, 1, 'y'}, // Permissions
	[]byte{1, 1, 1, 's', 1, 'q', 2},                              // Subscriptions
	[]byte{1, 1, 0xaa},                                           // Waiting
	[]byte{1},                                                    // Throttled
	[]byte{0xac, 0x02, 0, 0, 0, 0, 0, 0, 0, 0},                   // member 300, all else empty
	pinnedPublishes,
)

// TestHubStateDecodeFormat1: a pubsub layer the first release wrote (format 1, members without
// NoEcho) decodes, with NoEcho false, and encodes again as format 2. Its members' fewest bytes
// are 9, not 10: a state of minimal members decodes.
func TestHubStateDecodeFormat1(t *testing.T) {
	var got HubState
	if err := got.UnmarshalLayer(pinnedFormat1); err != nil {
		t.Fatal(err)
	}
	want := pinnedHubState()
	want.Members[0].NoEcho = false
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	b, err := got.MarshalLayer()
	if err != nil {
		t.Fatal(err)
	}
	var again HubState
	if err := again.UnmarshalLayer(b); err != nil || b[0] != 2 || !reflect.DeepEqual(again, want) {
		t.Fatalf("encoded again as format %d: %+v, %v", b[0], again, err)
	}
	const n = 20
	minimal := cat([]byte{1, n}, bytes.Repeat([]byte{7, 0, 0, 0, 0, 0, 0, 0, 0}, n), []byte{0, 0, 0, 0, 0})
	var st HubState
	if err := st.UnmarshalLayer(minimal); err != nil || len(st.Members) != n || st.Members[n-1].Session != 7 {
		t.Fatalf("%d minimal members of format 1: %d decoded, %v", n, len(st.Members), err)
	}
	checkTruncations(t, pinnedFormat1)
}

// TestHubStateCodecMinSizes pins the fewest bytes of each element, which the decoder checks
// counts against: larger, it would refuse real states; smaller, it would allocate more than an
// input can justify.
func TestHubStateCodecMinSizes(t *testing.T) {
	const empty = 7 // format, 2 counts, 4 integers
	size := func(st HubState) int {
		b, err := st.MarshalLayer()
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	if n := size(HubState{}); n != empty {
		t.Fatalf("an empty state takes %d bytes, want %d", n, empty)
	}
	for _, tc := range []struct {
		what       string
		st         HubState
		base, want int
	}{
		{"member", HubState{Members: []MemberState{{}}}, empty, minMemberLen},
		{"subscription", HubState{Members: []MemberState{{Subscriptions: []SubscriptionState{{}}}}}, empty + minMemberLen, minSubscriptionLen},
		{"waiting", HubState{Members: []MemberState{{Waiting: [][]byte{nil}}}}, empty + minMemberLen, minStringLen},
		{"permission rule", HubState{Members: []MemberState{{Permissions: &Permissions{Publish: Rules{Allow: []string{""}}}}}}, empty + minMemberLen + 5, minStringLen},
		{"publish", HubState{Publishes: []PublishState{{}}}, empty, minPublishLen},
		{"failure", HubState{Publishes: []PublishState{{Failures: []FailureState{{}}}}}, empty + minPublishLen, minFailureLen},
		{"share", HubState{Publishes: []PublishState{{Shares: []ShareState{{}}}}}, empty + minPublishLen, minShareLen},
		{"tried", HubState{Publishes: []PublishState{{Shares: []ShareState{{Tried: []uint64{0}}}}}}, empty + minPublishLen + minShareLen, minUvarintLen},
	} {
		if n := size(tc.st) - tc.base; n != tc.want {
			t.Errorf("a minimal %s takes %d bytes; the decoder counts %d", tc.what, n, tc.want)
		}
	}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func uv(v uint64) []byte { return binary.AppendUvarint(nil, v) }

// unchangedState is what a refused UnmarshalLayer must leave as it was.
func unchangedState() HubState {
	return HubState{Listener: someListener(3), Members: []MemberState{{Session: 3, Identity: "kept"}}, RoundRobin: 11}
}

// TestHubStateDecodeRejects: each input that is no encoding is refused with ErrInvalidState,
// naming the field and where it starts, and leaves the state as it was.
func TestHubStateDecodeRejects(t *testing.T) {
	noMember := []byte{0, 0, 0, 0, 0, 0, 0, 0} // a member after its Session: all empty
	tail := []byte{0, 0, 0, 0, 0}              // no publishes, four zero integers
	publish := func(level byte) []byte {
		return cat([]byte{1, 0}, []byte{1, 2, 3, level}, make([]byte, 13), []byte{0, 0, 0, 0})
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty input"},
		{"format 3", []byte{3, 0, 0, 0, 0, 0, 0}, "format version 3, this side reads 1 and 2"},
		{"format 0", []byte{0, 0, 0, 0, 0, 0, 0}, "format version 0, this side reads 1 and 2"},
		{"format 2: NoEcho truncated", []byte{2, 1, 5, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0, 0}, "Members[0].NoEcho at byte 14: truncated"},
		{"format 2: NoEcho 2", cat([]byte{2, 1, 5}, noMember, []byte{2}, tail), "Members[0].NoEcho at byte 11: bool 2, not 0 or 1"},
		{"format 2: members of 10 bytes", cat([]byte{2, 2}, []byte{1}, noMember, []byte{0}, tail), "Members at byte 1: 2 elements in the 15 bytes left"},
		{"2^60 members in 20 bytes", cat([]byte{1}, uv(1<<60), make([]byte, 10)), "Members at byte 1: 1152921504606846976 elements in the 10 bytes left"},
		{"more members than bytes", cat([]byte{1, 3}, []byte{1}, noMember, tail), "Members at byte 1: 3 elements in the 14 bytes left"},
		{"2^33 members (past a 32-bit int)", cat([]byte{1}, uv(1<<33), make([]byte, 64)), "Members at byte 1: 8589934592 elements"},
		{"truncated member", []byte{1, 1, 5, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0}, "Members[0].Throttled at byte 13: truncated"},
		{"bool 2", cat([]byte{1, 1, 5, 2}, noMember[1:], tail), "Members[0].Connected at byte 3: bool 2, not 0 or 1"},
		{"permissions presence 2", cat([]byte{1, 1, 5, 0, 0, 0, 0, 2, 0, 0, 0}, tail), "Members[0].Permissions at byte 7: bool 2"},
		{"identity past the end", cat([]byte{1, 1, 5, 0, 0}, uv(1000), []byte{0, 0, 0, 0, 0, 0}, tail), "Members[0].Identity at byte 5: 1000 bytes in the 11 bytes left"},
		{"rule past the end", cat([]byte{1, 1, 5, 0, 0, 0, 0, 1, 0, 1, 50, 'x'}, tail), "Members[0].Permissions.Publish.Allow[0] at byte 10: 50 bytes in the 6 bytes left"},
		{"2^62 subscriptions", cat([]byte{1, 1, 5, 0, 0, 0, 0, 0}, uv(1<<62), []byte{0, 0}, tail), "Members[0].Subscriptions at byte 8: 4611686018427387904 elements"},
		{"subscription truncated", []byte{1, 1, 5, 0, 0, 0, 0, 0, 1, 7, 3, 's', 't', 'u'}, "Members[0].Subscriptions[0].Queue at byte 14: truncated"},
		{"waiting past the end", cat([]byte{1, 1, 5, 0, 0, 0, 0, 0, 0, 1, 9, 0, 0}, tail), "Members[0].Waiting[0] at byte 10: 9 bytes in the 7 bytes left"},
		{"a second member's field", cat([]byte{1, 2, 5}, noMember, []byte{6, 0, 0, 0, 0, 0, 0, 0, 3}, tail), "Members[1].Throttled at byte 19: bool 3"},
		{"level 3", cat(publish(3), tail[1:]), "Publishes[0].Level at byte 5: 3, not 0..2"},
		{"level 2^40", cat([]byte{1, 0, 1, 2, 3}, uv(1<<40), make([]byte, 17)), "Publishes[0].Level at byte 5: 1099511627776, not 0..2"},
		{"2^40 tried", cat([]byte{1, 0, 1, 2, 3, 1}, make([]byte, 10), []byte{1, 4, 5, 6, 0}, uv(1<<40), []byte{1, 0, 0, 0, 0}), "Publishes[0].Shares[0].Tried at byte 21: 1099511627776 elements"},
		{"a share's bool", cat([]byte{1, 0, 1, 2, 3, 1}, make([]byte, 10), []byte{1, 4, 5, 6, 0, 1, 0x80, 1, 7}, tail[1:]), "Publishes[0].Shares[0].Had at byte 24: bool 7"},
		{"a tried past the end", cat([]byte{1, 0, 1, 2, 3, 1}, make([]byte, 10), []byte{1, 4, 5, 6, 0, 1, 0x80}), "Publishes[0].Shares[0].Tried[0] at byte 22: truncated"},
		{"failure reason", cat([]byte{1, 0, 1, 2, 3, 1}, make([]byte, 8), []byte{1, 1, 'f', 4, 'w'}), "Publishes[0].Failures[0].Reason at byte 17: 4 bytes in the 1 bytes left"},
		{"overlong count", cat([]byte{1, 0x80, 0x00}, tail), "Members at byte 1: integer in 2 bytes, more than it needs"},
		{"overlong integer", cat([]byte{1, 0, 0, 0, 0, 0x85, 0x80, 0x00}), "Sent at byte 5: integer in 3 bytes, more than it needs"},
		{"64-bit overflow", cat([]byte{1, 0, 0}, bytes.Repeat([]byte{0xff}, 9), []byte{0x02, 0, 0, 0}), "RoundRobin at byte 3: integer overflows 64 bits"},
		{"truncated integer", []byte{1, 0, 0, 0, 0, 0, 0x80}, "SlowDropped at byte 6: truncated"},
		{"a byte after the end", []byte{1, 0, 0, 0, 0, 0, 0, 0}, "state at byte 7: 1 bytes after the end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := unchangedState()
			err := st.UnmarshalLayer(tc.in)
			if !errors.Is(err, core.ErrInvalidState) || !strings.HasPrefix(err.Error(), "ftsl: pubsub state: ") ||
				!strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalidState about %q", err, tc.want)
			}
			if !reflect.DeepEqual(st, unchangedState()) {
				t.Fatalf("a refused input changed the state: %+v", st)
			}
		})
	}
}

// TestHubStateCodecNil: a nil *HubState is an error either way, not a panic; a Level with no
// encoding is refused on the way out, since no decoder would take it back.
func TestHubStateCodecNil(t *testing.T) {
	var st *HubState
	if _, err := st.MarshalLayer(); !errors.Is(err, core.ErrInvalidState) {
		t.Errorf("nil MarshalLayer: %v", err)
	}
	if err := st.UnmarshalLayer([]byte{1, 0, 0, 0, 0, 0, 0}); !errors.Is(err, core.ErrInvalidState) {
		t.Errorf("nil UnmarshalLayer: %v", err)
	}
	bad := HubState{Publishes: []PublishState{{PubID: 4, Publisher: 9, Level: AckProcessed}, {PubID: 5, Publisher: 9, Level: 3}}}
	if _, err := bad.MarshalLayer(); !errors.Is(err, core.ErrInvalidState) || !strings.Contains(err.Error(), "Publishes[1] (publish 5 of 9): Level 3") {
		t.Errorf("Level 3: %v", err)
	}
}

// checkTruncations checks that every proper prefix of an encoding, and the encoding with a byte
// more, is refused cleanly.
func checkTruncations(t *testing.T, b []byte) {
	t.Helper()
	for i := range len(b) {
		st := unchangedState()
		if err := st.UnmarshalLayer(b[:i]); !errors.Is(err, core.ErrInvalidState) {
			t.Fatalf("the first %d bytes of %d: %v", i, len(b), err)
		}
		if !reflect.DeepEqual(st, unchangedState()) {
			t.Fatalf("the first %d bytes of %d changed the state", i, len(b))
		}
	}
	st := unchangedState()
	if err := st.UnmarshalLayer(append(b[:len(b):len(b)], 0)); !errors.Is(err, core.ErrInvalidState) || !strings.Contains(err.Error(), "1 bytes after the end") {
		t.Fatalf("a byte more: %v", err)
	}
}

// TestHubStateDecodeTruncated: every truncation of an encoding fails cleanly.
func TestHubStateDecodeTruncated(t *testing.T) {
	for seed := range uint64(10) {
		st := randomHubState(t, seed, seed%2 == 0)
		b, err := st.MarshalLayer()
		if err != nil {
			t.Fatal(err)
		}
		checkTruncations(t, b)
	}
}

func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestHubStateDecodeMemory: the decoder allocates for no count the input cannot hold (a decoder
// that did would take 80 MB to 1 GB here), and a real input costs O(its size).
func TestHubStateDecodeMemory(t *testing.T) {
	const lots = 10_000_000
	pad := make([]byte, 32)
	for name, in := range map[string][]byte{
		"members":       cat([]byte{1}, uv(lots), pad),
		"subscriptions": cat([]byte{1, 1, 5, 0, 0, 0, 0, 0}, uv(lots), pad),
		"waiting":       cat([]byte{1, 1, 5, 0, 0, 0, 0, 0, 0}, uv(lots), pad),
		"rules":         cat([]byte{1, 1, 5, 0, 0, 0, 0, 1, 0}, uv(lots), pad),
		"publishes":     cat([]byte{1, 0}, uv(lots), pad),
		"shares":        cat([]byte{1, 0, 1}, make([]byte, 13), uv(lots), pad),
		"tried":         cat([]byte{1, 0, 1}, make([]byte, 13), []byte{1, 1, 1, 1, 0}, uv(lots), pad),
	} {
		var st HubState
		var err error
		if n := allocatedBy(func() { err = st.UnmarshalLayer(in) }); err == nil || n > 1<<20 {
			t.Errorf("%s: %d bytes allocated for %d bytes of input (%v)", name, n, len(in), err)
		}
	}
	// The most allocated per byte of input: empty waiting outcomes (a slice header for a byte).
	st := HubState{Members: []MemberState{{Waiting: make([][]byte, 100_000)}}}
	b, err := st.MarshalLayer()
	if err != nil {
		t.Fatal(err)
	}
	var got HubState
	if n := allocatedBy(func() { err = got.UnmarshalLayer(b) }); err != nil || n > 32*uint64(len(b))+1<<20 {
		t.Errorf("%d bytes allocated to decode %d (%v)", n, len(b), err)
	}
}

// FuzzHubStateDecode: no input panics the decoder, and what it takes is canonical: encoding it
// gives the same bytes, and decoding those the same state.
func FuzzHubStateDecode(f *testing.F) {
	// Small seeds: the fuzzer minimizes each input that finds new code for up to a minute
	// (-fuzzminimizetime), which takes the whole time on inputs of kilobytes.
	for seed := range uint64(40) {
		st := randomHubState(f, seed, seed%2 == 0)
		b, err := st.MarshalLayer()
		if err != nil {
			f.Fatal(err)
		}
		if len(b) <= 512 {
			f.Add(b)
		}
	}
	for _, st := range []HubState{{}, pinnedHubState(), benchHubState(3, 2), {Members: []MemberState{{Permissions: &Permissions{}}}}} {
		b, err := st.MarshalLayer()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(pinnedFormat1)
	f.Fuzz(func(t *testing.T, b []byte) {
		var st HubState
		if err := st.UnmarshalLayer(b); err != nil {
			if !errors.Is(err, core.ErrInvalidState) {
				t.Fatalf("an error not matching ErrInvalidState: %v", err)
			}
			return
		}
		b2, err := st.MarshalLayer()
		if err != nil {
			t.Fatalf("a decoded state does not encode: %v", err)
		}
		if b[0] == hubStateFormat1 { // encoded again as format 2: a NoEcho byte more per member
			if b2[0] != hubStateFormat || len(b2) != len(b)+len(st.Members) {
				t.Fatalf("format 1 input\n% x\nencodes as\n% x", b, b2)
			}
		} else if !bytes.Equal(b, b2) {
			t.Fatalf("input\n% x\nencodes back as\n% x", b, b2)
		}
		var st2 HubState
		if err := st2.UnmarshalLayer(b2); err != nil || !reflect.DeepEqual(st, st2) {
			t.Fatalf("decoding again: %v\n%+v\n%+v", err, st, st2)
		}
	})
}

// dialAs connects a client with a token that follows the hub where it moves.
func (mh *movingHub) dialAs(name, token string) *Client {
	mh.t.Helper()
	cfg := Config{Name: name, Credential: Credential{Token: token}}
	cfg.Session.Core.Resolver = core.ResolverFunc(func(context.Context, string) (string, error) { return *mh.addr.Load(), nil })
	cfg.Session.Core.BackoffMin, cfg.Session.Core.BackoffMax = time.Millisecond, 10*time.Millisecond
	c, err := Dial(testCtx(mh.t), "the hub", cfg)
	if err != nil {
		mh.t.Fatal(err)
	}
	return c
}

// moveThroughCodec moves the hub as move does, but the new hub is built from the exported
// state's encoding, as a snapshot carries it: the hub's layer through MarshalLayer and
// UnmarshalLayer, the Listener beside it. It returns the state exported and its encoding.
func (mh *movingHub) moveThroughCodec() (HubState, []byte) {
	mh.t.Helper()
	ctx := testCtx(mh.t)
	if err := mh.hub.Pause(ctx); err != nil {
		mh.t.Fatal(err)
	}
	st, err := mh.hub.Export()
	if err != nil {
		mh.t.Fatal(err)
	}
	b, err := st.MarshalLayer()
	if err != nil {
		mh.t.Fatal(err)
	}
	var got HubState
	if err := got.UnmarshalLayer(b); err != nil {
		mh.t.Fatal(err)
	}
	got.Listener = st.Listener
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		mh.t.Fatal(err)
	}
	nh, err := NewHubFrom(nl, mh.cfg, got)
	if err != nil {
		_ = nl.Close()
		mh.t.Fatal(err)
	}
	a := nl.Addr().String()
	mh.addr.Store(&a)
	if err := mh.hub.Close(ctx); err != nil {
		mh.t.Fatal(err)
	}
	mh.old = append(mh.old, mh.hub)
	mh.hub = nh
	if err := nh.Continue(); err != nil {
		mh.t.Fatal(err)
	}
	return st, b
}

// TestHubMoveThroughCodec moves a real hub through the encoding: clients with permissions, a
// queue group, and a publish held by a subscriber across the move. The held publish's outcome
// counts every subscriber, and the publishes after the move reach the subscriptions, within the
// permissions, under the identity Authenticate gave.
func TestHubMoveThroughCodec(t *testing.T) {
	base := runtime.NumGoroutine()
	ctx := testCtx(t)
	perms := map[string]*Permissions{
		"pub": {Identity: "the publisher", Publish: Rules{Allow: []string{"room.>", "jobs"}, Deny: []string{"room.secret"}}},
		"sub": {Subscribe: Rules{Allow: []string{"room.>", "jobs"}, Deny: []string{"room.secret"}}},
		"all": nil,
	}
	var calls atomic.Int32
	mh := startMovingHub(t, HubConfig{Authenticate: byToken(&calls, perms)})
	pub := mh.dialAs("pub", "pub")
	holder := mh.dialAs("holder", "sub")
	spy := mh.dialAs("spy", "all")
	clients := []*Client{pub, holder, spy}
	entered, release := make(chan struct{}), make(chan struct{})
	var released sync.Once
	free := func() { released.Do(func() { close(release) }) }
	defer func() {
		free() // (a test that fails with the publish held must not hang on it)
		for _, c := range clients {
			c.Abort()
		}
		for _, c := range clients {
			<-c.Done()
		}
		mh.close()
		testkit.CheckGoroutines(t, base)
	}()

	holderRec, spyRec, jobsRec := newRecorder(), newRecorder(), newRecorder()
	if _, err := holder.Subscribe("room.>", func(ctx context.Context, m *Msg) error {
		if string(m.Data) == "hold" {
			close(entered)
			<-release
		}
		return holderRec.handle(ctx, m)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Subscribe("jobs", jobsRec.handle, Queue("workers")); err != nil {
		t.Fatal(err)
	}
	if _, err := spy.Subscribe("room.*", spyRec.handle); err != nil {
		t.Fatal(err)
	}

	held, err := pub.Publish(ctx, "room.1", []byte("hold"), AckProcessed, ReportDelivered())
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	spyRec.waitFor(t, 1)
	select { // (PROGRESS: both subscribers have it)
	case <-held.Delivered():
	case <-ctx.Done():
		t.Fatal("the held publish was never delivered")
	}

	st, b := mh.moveThroughCodec()
	if len(st.Members) != 3 || len(st.Publishes) != 1 {
		t.Fatalf("exported %d members and %d publishes, want 3 and 1", len(st.Members), len(st.Publishes))
	}
	if p := st.Publishes[0]; p.Level != AckProcessed || !p.Report || !p.Reported || p.Matched != 2 || len(p.Shares) == 0 {
		t.Fatalf("the held publish exported as %+v", p)
	}
	var decoded HubState
	if err := decoded.UnmarshalLayer(b); err != nil {
		t.Fatal(err)
	}
	if b2, err := decoded.MarshalLayer(); err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("the decoded state encodes differently (%v)", err)
	}
	var withPerms int
	for _, m := range decoded.Members {
		if m.Permissions != nil {
			withPerms++
			if !reflect.DeepEqual(m.Permissions, perms["pub"]) && !reflect.DeepEqual(m.Permissions, perms["sub"]) {
				t.Errorf("member %d: permissions %+v", m.Session, *m.Permissions)
			}
		}
	}
	if withPerms != 2 {
		t.Errorf("%d members with permissions, want 2", withPerms)
	}
	checkTruncations(t, b)

	free()
	if out, err := held.Wait(ctx); err != nil || out.Matched != 2 || out.Delivered != 2 || out.Processed != 2 {
		t.Fatalf("the held publish: %+v, %v; want 2 matched, delivered, processed", out, err)
	}
	after, err := pub.Publish(ctx, "room.2", []byte("after"), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := after.Wait(ctx); err != nil || out.Matched != 2 || out.Processed != 2 {
		t.Fatalf("a publish after the move: %+v, %v", out, err)
	}
	if got := holderRec.waitFor(t, 2); fmt.Sprint(got) != "[room.1=hold from the publisher room.2=after from the publisher]" {
		t.Errorf("the holder got %q", got)
	}
	if got := spyRec.waitFor(t, 2); got[1] != "room.2=after from the publisher" {
		t.Errorf("the spy got %q", got)
	}
	job, err := pub.Publish(ctx, "jobs", []byte("work"), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := job.Wait(ctx); err != nil || out.Matched != 1 || out.Processed != 1 {
		t.Fatalf("a job after the move: %+v, %v", out, err)
	}
	denied, err := pub.Publish(ctx, "room.secret", []byte("no"), AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := denied.Wait(ctx); !errors.Is(err, ErrPermission) {
		t.Fatalf("a denied publish after the move: %v, want ErrPermission", err)
	}
}

// benchHubState is a hub's state with members clients of subs subscriptions each, two in
// queue groups, and a publish in flight per ten members.
func benchHubState(members, subs int) HubState {
	st := HubState{RoundRobin: 12345, Published: 1 << 30, Sent: 1 << 32, SlowDropped: 17}
	for i := range members {
		m := MemberState{Session: uint64(i + 1), Connected: true, Identity: fmt.Sprintf("client-%d", i),
			Inbox: fmt.Sprintf("_INBOX.%024x", i*7919)}
		if i%4 == 0 {
			m.Permissions = &Permissions{Identity: m.Identity, Publish: Rules{Allow: []string{"room.>"}}, Subscribe: Rules{Deny: []string{"room.secret"}}}
		}
		for j := range subs {
			s := SubscriptionState{SID: uint64(j + 1), Subject: fmt.Sprintf("room.%d.>", (i+j)%50)}
			if j%3 == 2 {
				s.Queue = "workers"
			}
			m.Subscriptions = append(m.Subscriptions, s)
		}
		st.Members = append(st.Members, m)
		if i%10 == 0 {
			st.Publishes = append(st.Publishes, PublishState{Publisher: uint64(i + 1), PubID: uint64(i), Level: AckProcessed,
				Subject: "room.1.x", Payload: make([]byte, 64), Matched: 3, Delivered: 1,
				Shares: []ShareState{{Subscriber: 2, SID: 1, Ticket: 99}, {Subscriber: 3, SID: 3, Ticket: 100, Group: "workers", Tried: []uint64{4}}}})
		}
	}
	return st
}

// BenchmarkHubStateCodec encodes and decodes the state of a hub of 1000 members with 3
// subscriptions each.
func BenchmarkHubStateCodec(b *testing.B) {
	st := benchHubState(1000, 3)
	enc, err := st.MarshalLayer()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Marshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			if _, err := st.MarshalLayer(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			var got HubState
			if err := got.UnmarshalLayer(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
