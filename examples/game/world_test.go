package main

import (
	"bytes"
	"errors"
	"testing"
)

func TestPointMoved(t *testing.T) {
	const last = gridSize - 1
	for _, tc := range []struct {
		from   point
		dx, dy int8
		want   point
	}{
		{point{3, 3}, 1, -1, point{4, 2}},
		{point{0, 0}, -1, -1, point{0, 0}},
		{point{last, last}, 1, 1, point{last, last}},
		{point{0, last}, 1, 1, point{1, last}},
		{point{5, 5}, 0, 0, point{5, 5}},
	} {
		if got := tc.from.moved(tc.dx, tc.dy); got != tc.want {
			t.Errorf("%v moved (%d, %d) = %v, want %v", tc.from, tc.dx, tc.dy, got, tc.want)
		}
	}
}

// TestWorldScoring: players move by their last input, one cell a tick; the first (in join
// order) on the target scores, and the target moves elsewhere.
func TestWorldScoring(t *testing.T) {
	w := newWorld(7)
	a, _ := w.join(1, "a")
	b, _ := w.join(2, "b")
	a.at, b.at = w.target, w.target
	target := w.target
	sc, ok := w.step(true)
	if !ok || sc.p != a || sc.score != 1 || sc.tick != 1 || a.score != 1 || b.score != 0 {
		t.Fatalf("step: %+v %v; scores a %d b %d", sc, ok, a.score, b.score)
	}
	if w.target == target || !w.target.onGrid() {
		t.Errorf("the target stayed at %v, or left the grid: %v", target, w.target)
	}
	// b stands where the target was: no one scores now, nor while scoring is off.
	b.at = w.target
	if _, ok := w.step(false); ok {
		t.Error("someone scored with scoring off")
	}
	a.at = point{0, 0}
	if err := a.input(input{seq: 1, dx: 1, dy: 1}); err != nil {
		t.Fatal(err)
	}
	w.step(true)
	if a.at != (point{1, 1}) {
		t.Errorf("a at %v after moving (1, 1) from (0, 0)", a.at)
	}
	w.step(true)
	if a.at != (point{1, 1}) {
		t.Errorf("a moved to %v without an input", a.at)
	}
}

// TestWorldDeterministic: the same seed and inputs make the same game.
func TestWorldDeterministic(t *testing.T) {
	play := func() []byte {
		w := newWorld(42)
		p, _ := w.join(1, "a")
		for i := range 500 {
			_ = p.input(input{seq: uint32(i + 1), dx: sign(int(w.target.x) - int(p.at.x)), dy: sign(int(w.target.y) - int(p.at.y))})
			w.step(true)
		}
		b, err := w.marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	one, two := play(), play()
	if !bytes.Equal(one, two) {
		t.Fatal("two games with the same seed and inputs differ")
	}
	w, _ := unmarshalWorld(one)
	if w.players[0].score == 0 {
		t.Error("a player heading for the target never scored in 500 ticks")
	}
}

func TestWorldJoin(t *testing.T) {
	w := newWorld(1)
	if _, err := w.join(1, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.join(1, "b"); err == nil {
		t.Error("a session joined twice")
	}
	if _, err := w.join(2, "a"); err == nil {
		t.Error("a name taken twice")
	}
	for id := uint64(2); id <= maxPlayers; id++ {
		if _, err := w.join(id, "p"+string(rune('A'+id%26))+string(rune('A'+id/26))); err != nil {
			t.Fatalf("join %d: %v", id, err)
		}
	}
	if _, err := w.join(100, "late"); !errors.Is(err, errWorldFull) {
		t.Fatalf("join into a full world: %v", err)
	}
	w.player(5).gone = true
	if _, err := w.join(100, "late"); err != nil || w.player(5) != nil || len(w.players) != maxPlayers {
		t.Fatalf("join in place of a player gone: %v; %d players", err, len(w.players))
	}
}

func TestPlayerInputOrder(t *testing.T) {
	p := &player{name: "a"}
	for _, seq := range []uint32{1, 2} {
		if err := p.input(input{seq: seq}); err != nil {
			t.Fatal(err)
		}
	}
	for _, seq := range []uint32{2, 4, 0} {
		if err := p.input(input{seq: seq}); err == nil {
			t.Errorf("input %d after 2 taken", seq)
		}
	}
	if p.inputs != 2 {
		t.Errorf("%d inputs counted, want 2", p.inputs)
	}
}

func sampleWorld(t testing.TB) *world {
	w := newWorld(3)
	a, _ := w.join(10, "alice")
	b, _ := w.join(20, "bob")
	a.score, a.sent, a.processed, a.failed, a.inputs, a.lastSeq = 4, 9, 7, 1, 100, 100
	b.gone = true
	for range 10 {
		w.step(true)
	}
	return w
}

func TestWorldMarshalRoundTrip(t *testing.T) {
	w := sampleWorld(t)
	b, err := w.marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := unmarshalWorld(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := got.marshal()
	if !bytes.Equal(b, b2) {
		t.Fatal("a world decoded and encoded again differs")
	}
	// The generator goes on where it was: both draw the same targets.
	if w.randomPoint() != got.randomPoint() {
		t.Error("the restored world's generator is not where the original's is")
	}
	if *got.players[0] != *w.players[0] || !got.players[1].gone {
		t.Errorf("players: %+v, want %+v", got.players[0], w.players[0])
	}
}

// TestWorldUnmarshalBad: a world section cut short, grown, or breaking a rule is refused with
// errBadWorld, never a panic.
func TestWorldUnmarshalBad(t *testing.T) {
	b, _ := sampleWorld(t).marshal()
	for n := range len(b) {
		if _, err := unmarshalWorld(b[:n]); !errors.Is(err, errBadWorld) {
			t.Fatalf("cut to %d bytes of %d: %v", n, len(b), err)
		}
	}
	if _, err := unmarshalWorld(append(bytes.Clone(b), 0)); !errors.Is(err, errBadWorld) {
		t.Errorf("a byte after the end: %v", err)
	}
	// Offsets of the fields to break, from the layout (see world.marshal).
	rngLen := int(b[1])
	first := 2 + rngLen + 4 + 2 + 1
	x := first + 8 + 1 + len("alice")
	processed := x + 2 + 4 + 4 + 8 + 8
	for _, tc := range []struct {
		name string
		at   int
		v    byte
	}{
		{"version", 0, 2},
		{"rng length", 1, byte(rngLen - 1)},
		{"target off the grid", first - 3, gridSize},
		{"too many players", first - 1, maxPlayers + 1},
		{"name empty", first + 8, 0},
		{"name with a space", first + 9, ' '},
		{"player off the grid", x, gridSize},
		{"processed beyond sent", processed + 7, 10},
		{"gone not a bool", processed + 16, 2},
	} {
		bad := bytes.Clone(b)
		bad[tc.at] = tc.v
		if _, err := unmarshalWorld(bad); !errors.Is(err, errBadWorld) {
			t.Errorf("%s (byte %d = %d): %v", tc.name, tc.at, tc.v, err)
		}
	}
	// Two players of one session.
	w := sampleWorld(t)
	w.players[1].id = w.players[0].id
	dup, _ := w.marshal()
	if _, err := unmarshalWorld(dup); !errors.Is(err, errBadWorld) {
		t.Errorf("two players of one session: %v", err)
	}
}

func FuzzUnmarshalWorld(f *testing.F) {
	b, _ := sampleWorld(f).marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := unmarshalWorld(b)
		if err != nil {
			if !errors.Is(err, errBadWorld) {
				t.Fatalf("error %v does not match errBadWorld", err)
			}
			return
		}
		re, err := w.marshal()
		if err != nil || !bytes.Equal(re, b) {
			t.Fatalf("decoded and encoded again: % x, %v", re, err)
		}
	})
}
