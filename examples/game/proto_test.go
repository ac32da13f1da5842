package main

import (
	"bytes"
	"errors"
	"testing"
)

// TestProtoBytes pins the encoding of each message.
func TestProtoBytes(t *testing.T) {
	st := &state{tick: 0x01020304, target: point{5, 6}, players: []playerView{{id: 0x1112131415161718, at: point{7, 8}, score: 9}}}
	for _, tc := range []struct {
		name string
		got  []byte
		want []byte
	}{
		{"JOIN", appendJoin(nil, "p1"), []byte{1, 2, 'p', '1'}},
		{"INPUT", appendInput(nil, input{seq: 258, dx: -1, dy: 1}), []byte{2, 0, 0, 1, 2, 0xff, 1}},
		{"STATE", appendState(nil, st), []byte{3, 1, 2, 3, 4, 5, 6, 1, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 7, 8, 0, 0, 0, 9}},
		{"EVENT", appendEvent(nil, event{seq: 3, tick: 4, score: 5, scorer: "ab"}),
			[]byte{4, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 2, 'a', 'b'}},
	} {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s: % x, want % x", tc.name, tc.got, tc.want)
		}
	}
}

func TestProtoRoundTrip(t *testing.T) {
	name, err := decodeJoin(appendJoin(nil, "alice"))
	if err != nil || name != "alice" {
		t.Errorf("JOIN: %q, %v", name, err)
	}
	in := input{seq: 7, dx: 1, dy: -1}
	if got, err := decodeInput(appendInput(nil, in)); err != nil || got != in {
		t.Errorf("INPUT: %+v, %v", got, err)
	}
	st := state{tick: 9, target: point{gridSize - 1, 0}}
	for i := range maxPlayers {
		st.players = append(st.players, playerView{id: uint64(i + 1), at: point{uint8(i % gridSize), 3}, score: uint32(i)})
	}
	var got state
	if err := decodeState(appendState(nil, &st), &got); err != nil || got.tick != st.tick || got.target != st.target ||
		len(got.players) != len(st.players) || got.players[maxPlayers-1] != st.players[maxPlayers-1] {
		t.Errorf("STATE: %+v, %v", got, err)
	}
	e := event{seq: 1 << 40, tick: 3, score: 2, scorer: "bob"}
	if got, err := decodeEvent(appendEvent(nil, e)); err != nil || got != e {
		t.Errorf("EVENT: %+v, %v", got, err)
	}
}

// TestProtoBadInput feeds each decoder what a broken or hostile peer could send: each is an
// error matching errBadMessage, never a panic.
func TestProtoBadInput(t *testing.T) {
	long := string(bytes.Repeat([]byte{'x'}, maxNameLen+1))
	st := appendState(nil, &state{players: []playerView{{id: 1}}})
	for _, tc := range []struct {
		name   string
		decode func([]byte) error
		msg    []byte
	}{
		{"kind empty", kindErr, nil},
		{"kind 0", kindErr, []byte{0}},
		{"kind 5", kindErr, []byte{5, 1, 2}},
		{"JOIN empty", joinErr, []byte{}},
		{"JOIN not a join", joinErr, appendInput(nil, input{seq: 1})},
		{"JOIN length past the end", joinErr, []byte{1, 5, 'a'}},
		{"JOIN bytes after the name", joinErr, []byte{1, 1, 'a', 'b'}},
		{"JOIN empty name", joinErr, []byte{1, 0}},
		{"JOIN long name", joinErr, appendJoin(nil, long)},
		{"JOIN space in name", joinErr, appendJoin(nil, "a b")},
		{"JOIN control byte", joinErr, appendJoin(nil, "a\n")},
		{"JOIN non-ASCII", joinErr, appendJoin(nil, "é")},
		{"INPUT short", inputErr, []byte{2, 0, 0, 0, 1, 0}},
		{"INPUT long", inputErr, []byte{2, 0, 0, 0, 1, 0, 0, 0}},
		{"INPUT seq 0", inputErr, appendInput(nil, input{})},
		{"INPUT dx 2", inputErr, appendInput(nil, input{seq: 1, dx: 2})},
		{"INPUT dy -2", inputErr, appendInput(nil, input{seq: 1, dy: -2})},
		{"STATE short header", stateErr, []byte{3, 0, 0, 0, 0, 0, 0}},
		{"STATE count past the end", stateErr, append(bytes.Clone(st[:7]), 2)},
		{"STATE cut in a player", stateErr, st[:len(st)-1]},
		{"STATE byte after", stateErr, append(bytes.Clone(st), 0)},
		{"STATE too many players", stateErr, append([]byte{3, 0, 0, 0, 0, 0, 0, maxPlayers + 1}, make([]byte, (maxPlayers+1)*statePlayer)...)},
		{"STATE target off the grid", stateErr, []byte{3, 0, 0, 0, 0, gridSize, 0, 0}},
		{"STATE player off the grid", stateErr, appendState(nil, &state{players: []playerView{{id: 1, at: point{0, gridSize}}}})},
		{"EVENT short", eventErr, []byte{4, 0, 0}},
		{"EVENT seq 0", eventErr, appendEvent(nil, event{scorer: "a"})},
		{"EVENT name cut", eventErr, appendEvent(nil, event{seq: 1, scorer: "abc"})[:eventFixedLen+2]},
		{"EVENT empty scorer", eventErr, appendEvent(nil, event{seq: 1})},
		{"EVENT bad scorer", eventErr, appendEvent(nil, event{seq: 1, scorer: "a\x00"})},
	} {
		if err := tc.decode(tc.msg); !errors.Is(err, errBadMessage) {
			t.Errorf("%s: %v, want errBadMessage", tc.name, err)
		}
	}
}

func kindErr(b []byte) error  { _, err := kindOf(b); return err }
func joinErr(b []byte) error  { _, err := decodeJoin(b); return err }
func inputErr(b []byte) error { _, err := decodeInput(b); return err }
func stateErr(b []byte) error { var st state; return decodeState(b, &st) }
func eventErr(b []byte) error { _, err := decodeEvent(b); return err }

// FuzzDecode: any bytes decode without a panic, and what decodes encodes back to the same
// bytes.
func FuzzDecode(f *testing.F) {
	f.Add(appendJoin(nil, "p1"))
	f.Add(appendInput(nil, input{seq: 1, dx: -1, dy: 1}))
	f.Add(appendState(nil, &state{tick: 1, players: []playerView{{id: 2, at: point{3, 4}, score: 5}}}))
	f.Add(appendEvent(nil, event{seq: 1, tick: 2, score: 3, scorer: "p2"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := kindOf(b)
		if err != nil {
			return
		}
		var re []byte
		switch k {
		case kindJoin:
			name, err := decodeJoin(b)
			if err != nil {
				return
			}
			re = appendJoin(nil, name)
		case kindInput:
			in, err := decodeInput(b)
			if err != nil {
				return
			}
			re = appendInput(nil, in)
		case kindState:
			var st state
			if decodeState(b, &st) != nil {
				return
			}
			re = appendState(nil, &st)
		case kindEvent:
			e, err := decodeEvent(b)
			if err != nil {
				return
			}
			re = appendEvent(nil, e)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("% x decoded and encoded again is % x", b, re)
		}
	})
}
