package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
)

// The world: players move on a small grid; the first to reach the target scores, and the target
// moves to a place drawn from a generator seeded once, so a game is reproducible from its seed
// and its inputs. One goroutine owns a world (the server loop); nothing in it is locked.

const (
	gridSize = 16
	// maxPlayers bounds the players a world holds, those gone included (their counts are the
	// summary's); when it is full, a newcomer takes the place of the first player gone.
	maxPlayers = 64
)

var errWorldFull = errors.New("ftsl: game: the world is full")

// point is a cell of the grid.
type point struct{ x, y uint8 }

func (p point) onGrid() bool { return p.x < gridSize && p.y < gridSize }

func (p point) String() string { return fmt.Sprintf("(%d,%d)", p.x, p.y) }

// moved is p moved by (dx, dy), kept on the grid.
func (p point) moved(dx, dy int8) point {
	step := func(v uint8, d int8) uint8 {
		switch {
		case d < 0 && v > 0:
			return v - 1
		case d > 0 && v < gridSize-1:
			return v + 1
		}
		return v
	}
	return point{step(p.x, dx), step(p.y, dy)}
}

// player is one player as the server knows it, by its session ID.
type player struct {
	id    uint64
	name  string
	at    point
	score uint32
	// move is the last input received since the last tick: a tick moves the player one cell.
	move    input
	lastSeq uint32 // the last input's seq
	inputs  uint64 // inputs received
	// The player's important events: sent (the last seq used), and the tickets that ended
	// processed or failed. The server follows the tickets; these counts move with the world.
	sent, processed, failed uint64
	gone                    bool // its session ended
}

// world is the game's state: everything a migration must carry besides the sessions.
type world struct {
	rng     *rand.PCG
	tick    uint32
	target  point
	players []*player // in the order they joined
}

// scoring is a player scoring at a tick.
type scoring struct {
	p     *player
	tick  uint32
	score uint32
}

func newWorld(seed uint64) *world {
	w := &world{rng: rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)}
	w.target = w.randomPoint()
	return w
}

func (w *world) randomPoint() point {
	v := w.rng.Uint64()
	return point{uint8(v % gridSize), uint8((v >> 32) % gridSize)}
}

func (w *world) player(id uint64) *player {
	for _, p := range w.players {
		if p.id == id {
			return p
		}
	}
	return nil
}

// join adds the player of session id. A second JOIN from the same session is refused, as is a
// name another player in the game has.
func (w *world) join(id uint64, name string) (*player, error) {
	if w.player(id) != nil {
		return nil, fmt.Errorf("ftsl: game: session %d joined already", id)
	}
	for _, p := range w.players {
		if !p.gone && p.name == name {
			return nil, fmt.Errorf("ftsl: game: the name %q is taken", name)
		}
	}
	if len(w.players) == maxPlayers {
		i := 0
		for i < len(w.players) && !w.players[i].gone {
			i++
		}
		if i == len(w.players) {
			return nil, fmt.Errorf("%w: %d players", errWorldFull, maxPlayers)
		}
		w.players = append(w.players[:i], w.players[i+1:]...)
	}
	p := &player{id: id, name: name, at: w.randomPoint()}
	w.players = append(w.players, p)
	return p, nil
}

// input records p's input for the next tick. Inputs come in order, exactly once (FTSL's
// guarantee), so a seq that does not follow the last is the player's bug, or a broken session.
func (p *player) input(in input) error {
	if in.seq != p.lastSeq+1 {
		return fmt.Errorf("ftsl: game: player %s: input %d after %d", p.name, in.seq, p.lastSeq)
	}
	p.lastSeq, p.move = in.seq, in
	p.inputs++
	return nil
}

// step advances the world one tick: each player moves by its last input, then the first player
// (in join order) on the target scores and the target moves. It returns who scored, if anyone.
func (w *world) step(scoringOn bool) (scoring, bool) {
	w.tick++
	for _, p := range w.players {
		if !p.gone {
			p.at = p.at.moved(p.move.dx, p.move.dy)
			p.move = input{}
		}
	}
	if !scoringOn {
		return scoring{}, false
	}
	for _, p := range w.players {
		if !p.gone && p.at == w.target {
			p.score++
			for t := w.target; t == w.target; {
				w.target = w.randomPoint()
			}
			return scoring{p: p, tick: w.tick, score: p.score}, true
		}
	}
	return scoring{}, false
}

// view fills st with what the players see.
func (w *world) view(st *state) {
	st.tick, st.target, st.players = w.tick, w.target, st.players[:0]
	for _, p := range w.players {
		if !p.gone {
			st.players = append(st.players, playerView{id: p.id, at: p.at, score: p.score})
		}
	}
}

// The world's snapshot section ("app"), version 1, big-endian:
//
//	version u8 (1), rng n u8 + n bytes (rand.PCG's binary form), tick u32, target x u8 y u8,
//	players u8, then for each: session u64, name n u8 + n bytes, x u8, y u8, score u32,
//	lastSeq u32, inputs u64, sent u64, processed u64, failed u64, gone u8 (0 or 1)
const worldVersion = 1

// errBadWorld matches every error decoding a world.
var errBadWorld = errors.New("ftsl: game: bad world state")

func (w *world) marshal() ([]byte, error) {
	rng, err := w.rng.MarshalBinary()
	if err != nil {
		return nil, err
	}
	b := append([]byte{worldVersion, byte(len(rng))}, rng...)
	b = binary.BigEndian.AppendUint32(b, w.tick)
	b = append(b, w.target.x, w.target.y, byte(len(w.players)))
	for _, p := range w.players {
		b = binary.BigEndian.AppendUint64(b, p.id)
		b = append(b, byte(len(p.name)))
		b = append(b, p.name...)
		b = append(b, p.at.x, p.at.y)
		b = binary.BigEndian.AppendUint32(b, p.score)
		b = binary.BigEndian.AppendUint32(b, p.lastSeq)
		for _, v := range []uint64{p.inputs, p.sent, p.processed, p.failed} {
			b = binary.BigEndian.AppendUint64(b, v)
		}
		gone := byte(0)
		if p.gone {
			gone = 1
		}
		b = append(b, gone)
	}
	return b, nil
}

// unmarshalWorld decodes a world marshal made, checking every field: a damaged or forged
// section is an error, never a panic or a world that breaks the rules.
func unmarshalWorld(b []byte) (*world, error) {
	d := decoder{b: b}
	if v := d.u8("version"); d.err == nil && v != worldVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", errBadWorld, v, worldVersion)
	}
	w := &world{rng: &rand.PCG{}}
	rng := d.bytes("rng", int(d.u8("rng length")))
	if d.err == nil {
		if err := w.rng.UnmarshalBinary(rng); err != nil {
			return nil, fmt.Errorf("%w: rng: %v", errBadWorld, err)
		}
	}
	w.tick = d.u32("tick")
	w.target = point{d.u8("target"), d.u8("target")}
	n := int(d.u8("players"))
	if d.err == nil && (n > maxPlayers || !w.target.onGrid()) {
		return nil, fmt.Errorf("%w: %d players, target %v", errBadWorld, n, w.target)
	}
	for i := 0; i < n && d.err == nil; i++ {
		p := &player{id: d.u64("session")}
		p.name = string(d.bytes("name", int(d.u8("name length"))))
		p.at = point{d.u8("x"), d.u8("y")}
		p.score, p.lastSeq = d.u32("score"), d.u32("last seq")
		p.inputs, p.sent, p.processed, p.failed = d.u64("inputs"), d.u64("sent"), d.u64("processed"), d.u64("failed")
		gone := d.u8("gone")
		if d.err != nil {
			break
		}
		var bad string
		switch {
		case p.id == 0:
			bad = "session 0"
		case w.player(p.id) != nil:
			bad = "a second player of the session"
		case checkName(p.name) != nil:
			bad = checkName(p.name).Error()
		case !p.at.onGrid():
			bad = fmt.Sprintf("at %v, off the grid", p.at)
		case p.processed > p.sent || p.failed > p.sent-p.processed: // (in this order: no underflow)
			bad = fmt.Sprintf("%d events processed and %d failed of %d sent", p.processed, p.failed, p.sent)
		case gone > 1:
			bad = fmt.Sprintf("gone %d", gone)
		}
		if bad != "" {
			return nil, fmt.Errorf("%w: player %d of %d (session %d): %s", errBadWorld, i+1, n, p.id, bad)
		}
		p.gone = gone == 1
		w.players = append(w.players, p)
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last player", errBadWorld, len(d.b))
	}
	return w, nil
}

// decoder reads big-endian fields and remembers the first field that did not fit.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(field string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("%w: cut short in %s (%d bytes left, %d needed)", errBadWorld, field, len(d.b), n)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(field string, n int) []byte { return d.take(field, n) }

func (d *decoder) u8(field string) uint8 {
	if v := d.take(field, 1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u32(field string) uint32 {
	if v := d.take(field, 4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64(field string) uint64 {
	if v := d.take(field, 8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}
