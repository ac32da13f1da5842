package main

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The game's messages, each one FTSL message whose first byte says what it is. All integers
// are big-endian.
//
//	JOIN   player -> server, AckProcessed  kind 1, n u8, name (n bytes)
//	INPUT  player -> server, AckNone       kind 2, seq u32, dx i8, dy i8
//	STATE  server -> player, AckNone       kind 3, tick u32, targetX u8, targetY u8, n u8,
//	                                       n x (session u64, x u8, y u8, score u32)
//	EVENT  server -> player, AckProcessed  kind 4, seq u64, tick u32, score u32, n u8, scorer name
//
// Players are known by their session ID, which both ends of a session share: a player finds
// itself in STATE by it, so the server needs no message to tell a player who it is.

// kind is a message's first byte.
type kind byte

const (
	kindJoin  kind = 1
	kindInput kind = 2
	kindState kind = 3
	kindEvent kind = 4
)

const (
	maxNameLen    = 32
	inputLen      = 1 + 4 + 1 + 1
	stateHdrLen   = 1 + 4 + 1 + 1 + 1
	statePlayer   = 8 + 1 + 1 + 4
	eventFixedLen = 1 + 8 + 4 + 4 + 1
)

// errBadMessage matches every decoding error: the peer sent something this protocol does not
// allow.
var errBadMessage = errors.New("ftsl: game: bad message")

func badMessage(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errBadMessage}, args...)...)
}

// kindOf returns the kind of message b, or an error if b is empty or of no known kind.
func kindOf(b []byte) (kind, error) {
	if len(b) == 0 {
		return 0, badMessage("empty")
	}
	k := kind(b[0])
	if k < kindJoin || k > kindEvent {
		return 0, badMessage("unknown kind %d", b[0])
	}
	return k, nil
}

// checkName refuses a name that could not be printed on one line: 1 to 32 bytes of printable
// ASCII without spaces.
func checkName(name string) error {
	if len(name) == 0 || len(name) > maxNameLen {
		return fmt.Errorf("ftsl: game: name of %d bytes, want 1 to %d", len(name), maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] > '~' {
			return fmt.Errorf("ftsl: game: name has byte %#x at %d, want printable ASCII without spaces", name[i], i)
		}
	}
	return nil
}

func appendJoin(b []byte, name string) []byte {
	b = append(b, byte(kindJoin), byte(len(name)))
	return append(b, name...)
}

func decodeJoin(b []byte) (string, error) {
	if len(b) < 2 || kind(b[0]) != kindJoin {
		return "", badMessage("JOIN of %d bytes", len(b))
	}
	if n := int(b[1]); len(b) != 2+n {
		return "", badMessage("JOIN name of %d bytes in %d", n, len(b)-2)
	}
	name := string(b[2:])
	if err := checkName(name); err != nil {
		return "", badMessage("JOIN: %v", err)
	}
	return name, nil
}

// input is a player's wish to move by (dx, dy), each -1, 0 or 1; seq counts the inputs a
// player sent, from 1.
type input struct {
	seq    uint32
	dx, dy int8
}

func appendInput(b []byte, in input) []byte {
	b = append(b, byte(kindInput))
	b = binary.BigEndian.AppendUint32(b, in.seq)
	return append(b, byte(in.dx), byte(in.dy))
}

func decodeInput(b []byte) (input, error) {
	if len(b) != inputLen || kind(b[0]) != kindInput {
		return input{}, badMessage("INPUT of %d bytes, want %d", len(b), inputLen)
	}
	in := input{seq: binary.BigEndian.Uint32(b[1:]), dx: int8(b[5]), dy: int8(b[6])}
	if in.seq == 0 || !unitStep(in.dx) || !unitStep(in.dy) {
		return input{}, badMessage("INPUT seq %d, move (%d, %d)", in.seq, in.dx, in.dy)
	}
	return in, nil
}

func unitStep(d int8) bool { return d >= -1 && d <= 1 }

// state is what every player sees of the world after a tick.
type state struct {
	tick    uint32
	target  point
	players []playerView
}

// playerView is one player in a STATE.
type playerView struct {
	id    uint64 // session ID
	at    point
	score uint32
}

func appendState(b []byte, st *state) []byte {
	b = append(b, byte(kindState))
	b = binary.BigEndian.AppendUint32(b, st.tick)
	b = append(b, st.target.x, st.target.y, byte(len(st.players)))
	for _, p := range st.players {
		b = binary.BigEndian.AppendUint64(b, p.id)
		b = append(b, p.at.x, p.at.y)
		b = binary.BigEndian.AppendUint32(b, p.score)
	}
	return b
}

// decodeState decodes b into st, reusing st.players.
func decodeState(b []byte, st *state) error {
	if len(b) < stateHdrLen || kind(b[0]) != kindState {
		return badMessage("STATE of %d bytes", len(b))
	}
	n := int(b[7])
	if n > maxPlayers || len(b) != stateHdrLen+n*statePlayer {
		return badMessage("STATE of %d bytes for %d players", len(b), n)
	}
	st.tick = binary.BigEndian.Uint32(b[1:])
	st.target = point{b[5], b[6]}
	if !st.target.onGrid() {
		return badMessage("STATE target %v off the grid", st.target)
	}
	st.players = st.players[:0]
	for p := b[stateHdrLen:]; len(p) > 0; p = p[statePlayer:] {
		v := playerView{id: binary.BigEndian.Uint64(p), at: point{p[8], p[9]}, score: binary.BigEndian.Uint32(p[10:])}
		if !v.at.onGrid() {
			return badMessage("STATE player %d at %v, off the grid", v.id, v.at)
		}
		st.players = append(st.players, v)
	}
	return nil
}

// event is an important event: a player scored. seq numbers the events sent to one player
// session, from 1, so the player can tell a lost one (a gap) and a duplicate (a repeat).
type event struct {
	seq    uint64
	tick   uint32
	score  uint32 // the scorer's score after scoring
	scorer string // the scorer's name
}

func appendEvent(b []byte, e event) []byte {
	b = append(b, byte(kindEvent))
	b = binary.BigEndian.AppendUint64(b, e.seq)
	b = binary.BigEndian.AppendUint32(b, e.tick)
	b = binary.BigEndian.AppendUint32(b, e.score)
	b = append(b, byte(len(e.scorer)))
	return append(b, e.scorer...)
}

func decodeEvent(b []byte) (event, error) {
	if len(b) < eventFixedLen || kind(b[0]) != kindEvent {
		return event{}, badMessage("EVENT of %d bytes", len(b))
	}
	n := int(b[eventFixedLen-1])
	if len(b) != eventFixedLen+n {
		return event{}, badMessage("EVENT scorer of %d bytes in %d", n, len(b)-eventFixedLen)
	}
	e := event{seq: binary.BigEndian.Uint64(b[1:]), tick: binary.BigEndian.Uint32(b[9:]),
		score: binary.BigEndian.Uint32(b[13:]), scorer: string(b[eventFixedLen:])}
	if e.seq == 0 {
		return event{}, badMessage("EVENT seq 0")
	}
	if err := checkName(e.scorer); err != nil {
		return event{}, badMessage("EVENT: %v", err)
	}
	return e, nil
}
