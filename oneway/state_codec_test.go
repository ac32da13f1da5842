package oneway

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/testkit"
)

// Tests of the binary encoding of this layer's part of ListenerState (state_codec.go).

// randomState fills the oneway part by reflection (testkit.Filler); Core stays empty (it is not
// this layer's to encode).
func randomState(tb testing.TB, r *mrand.Rand, sessions int) ListenerState {
	f := testkit.Filler{TB: tb, R: r, Custom: func(f *testkit.Filler, v reflect.Value) bool {
		if v.Type() != reflect.TypeFor[AckLevel]() {
			return false
		}
		v.SetUint(uint64(f.R.IntN(int(AckProcessed) + 1)))
		return true
	}}
	var st ListenerState
	if sessions > 0 {
		st.Sessions = make([]SessionState, sessions)
		for i := range st.Sessions {
			f.Fill(reflect.ValueOf(&st.Sessions[i]).Elem(), fmt.Sprintf("Sessions[%d]", i))
		}
	}
	return st
}

func roundTrip(t *testing.T, st ListenerState) []byte {
	t.Helper()
	b, err := st.MarshalLayer()
	if err != nil {
		t.Fatal(err)
	}
	got := ListenerState{Core: core.ListenerState{Sessions: []core.SessionState{{ID: 9}}}}
	if err := got.UnmarshalLayer(b); err != nil {
		t.Fatalf("decoding what was encoded: %v", err)
	}
	if len(got.Core.Sessions) != 1 || got.Core.Sessions[0].ID != 9 {
		t.Fatal("UnmarshalLayer changed Core")
	}
	got.Core = st.Core
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, st)
	}
	b2, err := got.MarshalLayer()
	if err != nil || !bytes.Equal(b2, b) {
		t.Fatalf("encoded again differently (%v)", err)
	}
	return b
}

func TestStateCodecRoundTrip(t *testing.T) {
	roundTrip(t, ListenerState{})
	r := mrand.New(mrand.NewPCG(5, 6))
	for i := range 300 {
		roundTrip(t, randomState(t, r, i%4))
	}
	// Core is not this layer's: it is neither encoded nor changed.
	st := randomState(t, r, 2)
	b := roundTrip(t, st)
	st.Core.Sessions = []core.SessionState{{ID: 1}, {ID: 2}}
	if b2, _ := st.MarshalLayer(); !bytes.Equal(b2, b) {
		t.Fatal("Core went into the oneway encoding")
	}
}

func TestStateCodecMinSizes(t *testing.T) {
	enc := func(ss SessionState) int {
		b, err := (&ListenerState{Sessions: []SessionState{ss}}).MarshalLayer()
		if err != nil {
			t.Fatal(err)
		}
		return len(b) - 2
	}
	if n := enc(SessionState{}); n != minSessionLen {
		t.Errorf("an empty session takes %d bytes, minSessionLen is %d", n, minSessionLen)
	}
	if n := enc(SessionState{Tickets: make([]TicketState, 1)}) - minSessionLen; n != minTicketLen {
		t.Errorf("an empty ticket takes %d bytes, minTicketLen is %d", n, minTicketLen)
	}
	if n := enc(SessionState{Attempts: make([]AttemptState, 1)}) - minSessionLen; n != minAttemptLen {
		t.Errorf("an empty attempt takes %d bytes, minAttemptLen is %d", n, minAttemptLen)
	}
}

func TestStateCodecRejects(t *testing.T) {
	sample := ListenerState{Sessions: []SessionState{{ID: 7, AckDone: 3, DelDone: 2, ProcDone: 1,
		Tickets:  []TicketState{{ID: 4, Level: AckProcessed, Delivered: true}, {ID: 6, Level: AckDelivered}},
		Attempts: []AttemptState{{ID: 2, Failed: 1}}}}}
	valid, err := sample.MarshalLayer()
	if err != nil {
		t.Fatal(err)
	}
	// valid: 1 | 1 | 7 3 2 1 | 2 | 4 0x06 | 6 0x01 | 1 | 2 1
	if want := []byte{1, 1, 7, 3, 2, 1, 2, 4, 6, 6, 1, 1, 2, 1}; !bytes.Equal(valid, want) {
		t.Fatalf("encoded % x, want % x", valid, want)
	}
	with := func(off int, repl ...byte) []byte {
		b := bytes.Clone(valid)
		return append(b[:off], append(repl, b[off+len(repl):]...)...)
	}
	for name, tc := range map[string]struct {
		in   []byte
		want string
	}{
		"empty":          {nil, "empty input"},
		"version":        {with(0, 2), "format version 2"},
		"huge count":     {append(binary.AppendUvarint([]byte{1}, 1<<60), make([]byte, 20)...), "count 1152921504606846976"},
		"tickets count":  {with(6, 5), "Sessions[0].Tickets at byte 6: count 5"},
		"ticket flags":   {with(8, 0x0a), "Sessions[0].Tickets[0].flags"},
		"ticket level":   {with(10, 0x03), "Sessions[0].Tickets[1].flags at byte 10: level 3"},
		"padded":         {with(2, 0x87, 0x00), "shortest form"},
		"failed too big": {append(bytes.Clone(valid[:13]), binary.AppendUvarint(nil, math.MaxInt+1)...), "Attempts[0].Failed"},
		"trailing":       {append(bytes.Clone(valid), 0), "1 bytes after the last session"},
		"cut":            {valid[:len(valid)-1], "Sessions[0].Attempts at byte 11: count 1"},
	} {
		t.Run(name, func(t *testing.T) {
			st := sample
			err := st.UnmarshalLayer(tc.in)
			if !errors.Is(err, core.ErrInvalidState) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalidState about %q", err, tc.want)
			}
			if !reflect.DeepEqual(st, sample) {
				t.Fatal("a refused input changed the state")
			}
		})
	}
	var nilState *ListenerState
	if _, err := nilState.MarshalLayer(); !errors.Is(err, core.ErrInvalidState) {
		t.Fatalf("marshal nil: %v", err)
	}
	if err := nilState.UnmarshalLayer(valid); !errors.Is(err, core.ErrInvalidState) {
		t.Fatalf("unmarshal into nil: %v", err)
	}
	for n := range len(valid) {
		var st ListenerState
		if err := st.UnmarshalLayer(valid[:n]); !errors.Is(err, core.ErrInvalidState) {
			t.Fatalf("prefix of %d bytes: got %v", n, err)
		}
	}
	for name, ss := range map[string]SessionState{
		"Tickets[0]: level 3":               {Tickets: []TicketState{{Level: 3}}},
		"Attempts[1].Failed -1 is negative": {Attempts: []AttemptState{{}, {Failed: -1}}},
	} {
		if _, err := (&ListenerState{Sessions: []SessionState{ss}}).MarshalLayer(); !errors.Is(err, core.ErrInvalidState) || !strings.Contains(err.Error(), name) {
			t.Errorf("marshal %s: got %v", name, err)
		}
	}
}

// liveState exports a listener whose session has tickets pending and delivered, and received
// messages with failed attempts.
func liveState(tb testing.TB) ListenerState {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fatal := func(err error) {
		if err != nil {
			tb.Helper()
			tb.Fatal(err)
		}
	}
	cfg := Config{MaxInFlight: 4}
	ln, err := Listen("127.0.0.1:0", cfg)
	fatal(err)
	defer ln.Close()
	c, err := Dial(ctx, ln.Addr().String(), cfg)
	fatal(err)
	defer func() { c.Abort(); <-c.Done() }()
	s, err := ln.Accept(ctx)
	fatal(err)
	for i := range 4 {
		_, err := s.Send(ctx, []byte{byte(i)}, AckProcessed)
		fatal(err)
		_, err = c.Send(ctx, []byte{byte(i)}, AckProcessed)
		fatal(err)
	}
	d, err := c.Recv(ctx) // the server's first ticket: delivered
	fatal(err)
	_ = d
	for range 2 {
		d, err := s.Recv(ctx)
		fatal(err)
		fatal(d.Reject(errors.New("later")))
	}
	fatal(ln.Pause(ctx))
	st, err := ln.Export()
	fatal(err)
	return st
}

func FuzzOnewayStateDecode(f *testing.F) {
	r := mrand.New(mrand.NewPCG(7, 8))
	live := liveState(f)
	if len(live.Sessions) != 1 || len(live.Sessions[0].Tickets) == 0 || len(live.Sessions[0].Attempts) == 0 {
		f.Fatalf("the live state has no tickets or attempts: %+v", live.Sessions)
	}
	for _, st := range []ListenerState{{}, live, randomState(f, r, 1), randomState(f, r, 3)} {
		b, err := st.MarshalLayer()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var st ListenerState
		if err := st.UnmarshalLayer(b); err != nil {
			if !errors.Is(err, core.ErrInvalidState) {
				t.Fatalf("refused with %v, not ErrInvalidState", err)
			}
			return
		}
		out, err := st.MarshalLayer()
		if err != nil {
			t.Fatalf("a decoded state does not encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("decoded %x, encoded back as %x", b, out)
		}
		var again ListenerState
		if err := again.UnmarshalLayer(out); err != nil || !reflect.DeepEqual(again, st) {
			t.Fatalf("decoded again differently (%v)", err)
		}
	})
}
