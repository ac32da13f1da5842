package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/oneway"
)

// playerConfig configures a bot player.
type playerConfig struct {
	name      string // the player's name, as JOIN says it
	game      string // the name of the game server, as the Resolver knows it
	seed      uint64 // the bot's own moves: a reproducible wander toward the target
	inputRate int    // inputs a second
	ftsl      oneway.Config
	// onEvent, if set, hears every important event as it comes (on the receiving goroutine).
	onEvent func(e event)
	// onResume, if set, hears how long each resume took (on the session's event goroutine).
	onResume func(d time.Duration)
}

// bot is a player the program plays: it heads for the target, with a random step now and then.
// Its session's receiving goroutine (recvLoop) records STATEs and EVENTs; its input loop (play)
// sends inputs; the session's event callback times its resumes.
type bot struct {
	cfg      playerConfig
	s        *oneway.Session
	recvDone chan struct{}

	mu          sync.Mutex
	view        state // the last STATE
	rec         eventRecord
	bad         int // messages refused
	inputs      uint64
	reconnectAt time.Time
	resumes     []time.Duration // from each SessionReconnecting to its SessionResumed
}

// errJoin is a JOIN the server refused.
var errJoin = errors.New("ftsl: game: join refused")

// joinPlayer dials the game server and joins the game; it returns once the server has
// processed the JOIN.
func joinPlayer(ctx context.Context, cfg playerConfig) (*bot, error) {
	if err := checkName(cfg.name); err != nil {
		return nil, err
	}
	s, err := oneway.Dial(ctx, cfg.game, cfg.ftsl)
	if err != nil {
		return nil, fmt.Errorf("ftsl: game: dial %q: %w", cfg.game, err)
	}
	b := &bot{cfg: cfg, s: s, recvDone: make(chan struct{})}
	s.OnEvent(b.sessionEvent)
	go b.recvLoop()
	t, err := s.Send(ctx, appendJoin(nil, cfg.name), oneway.AckProcessed)
	if err == nil {
		_, err = t.Wait(ctx)
		if errors.Is(err, oneway.ErrRejected) {
			err = fmt.Errorf("%w: %v", errJoin, err)
		}
	}
	if err != nil {
		s.Abort()
		<-b.recvDone
		return nil, err
	}
	return b, nil
}

// sessionEvent times the session's resumes. It runs on the session's event goroutine.
func (b *bot) sessionEvent(e events.Event) {
	b.mu.Lock()
	var took time.Duration
	switch e.Kind {
	case events.SessionReconnecting:
		b.reconnectAt = e.Time
	case events.SessionResumed:
		if !b.reconnectAt.IsZero() {
			took = e.Time.Sub(b.reconnectAt)
			b.resumes = append(b.resumes, took)
			b.reconnectAt = time.Time{}
		}
	}
	b.mu.Unlock()
	if took > 0 && b.cfg.onResume != nil {
		b.cfg.onResume(took)
	}
}

// recvLoop takes what the server sends until the session ends.
func (b *bot) recvLoop() {
	defer close(b.recvDone)
	var st state
	for {
		d, err := b.s.Recv(context.Background()) // it ends with the session
		if err != nil {
			return
		}
		if err := b.take(d.Data, &st); err != nil {
			_ = d.Refuse(err)
			continue
		}
		// Confirmed once recorded: an event is processed when the player has it, exactly once.
		_ = d.Confirm()
	}
}

// take records one message from the server; st is scratch space for decoding.
func (b *bot) take(msg []byte, st *state) error {
	k, err := kindOf(msg)
	if err != nil {
		b.refused()
		return err
	}
	switch k {
	case kindState:
		if err := decodeState(msg, st); err != nil {
			b.refused()
			return err
		}
		b.mu.Lock()
		b.view, *st = *st, b.view // swap: both buffers are reused
		b.mu.Unlock()
		return nil
	case kindEvent:
		e, err := decodeEvent(msg)
		if err != nil {
			b.refused()
			return err
		}
		b.mu.Lock()
		b.rec.add(e.seq)
		b.mu.Unlock()
		if b.cfg.onEvent != nil {
			b.cfg.onEvent(e)
		}
		return nil
	}
	b.refused()
	return badMessage("the server sent a %d, which only players send", k)
}

func (b *bot) refused() {
	b.mu.Lock()
	b.bad++
	b.mu.Unlock()
}

// play sends inputs at the input rate until ctx ends, or the session does.
func (b *bot) play(ctx context.Context) error {
	rng := rand.New(rand.NewPCG(b.cfg.seed, 0x5eed))
	t := time.NewTicker(time.Second / time.Duration(b.cfg.inputRate))
	defer t.Stop()
	var buf []byte
	for seq := uint32(1); ; seq++ {
		select {
		case <-ctx.Done():
			return nil
		case <-b.recvDone:
			return b.s.Err()
		case <-t.C:
		}
		in := b.decide(rng)
		in.seq = seq
		buf = appendInput(buf[:0], in)
		// AckNone: an input is stale a tick later, so nobody follows it; still, FTSL delivers
		// each exactly once and in order, across the migration too.
		if _, err := b.s.Send(ctx, buf, oneway.AckNone); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		b.mu.Lock()
		b.inputs++
		b.mu.Unlock()
	}
}

// decide picks the next move: toward the target, or one time in four a random one.
func (b *bot) decide(rng *rand.Rand) input {
	if rng.IntN(4) == 0 {
		return input{dx: int8(rng.IntN(3) - 1), dy: int8(rng.IntN(3) - 1)}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.view.players {
		if p.id == b.s.ID() {
			return input{dx: sign(int(b.view.target.x) - int(p.at.x)), dy: sign(int(b.view.target.y) - int(p.at.y))}
		}
	}
	return input{}
}

func sign(v int) int8 {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// close ends the session gracefully: once everything the player sent is acknowledged.
func (b *bot) close(ctx context.Context) error {
	err := b.s.Close(ctx)
	<-b.recvDone
	return err
}

// botReport is what a player tells of its game.
type botReport struct {
	name    string
	id      uint64
	inputs  uint64
	events  eventRecord
	bad     int
	resumes []time.Duration
	err     error // why the session ended, if it did
}

func (b *bot) report() botReport {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := botReport{name: b.cfg.name, id: b.s.ID(), inputs: b.inputs, events: b.rec, bad: b.bad,
		resumes: append([]time.Duration(nil), b.resumes...)}
	r.events.above = maps.Clone(b.rec.above) // (at most maxAbove)
	select {
	case <-b.recvDone:
		r.err = b.s.Err()
	default:
	}
	return r
}

// eventRecord tells which event seqs a player received, in memory that does not grow with the
// game: FTSL delivers in order, so a run of seqs 1..upTo and a few seen beyond it (a gap before
// them, which is a loss if it stays) say it all.
type eventRecord struct {
	upTo       uint64          // every seq 1..upTo was received
	above      map[uint64]bool // received beyond upTo+1, out of order
	received   uint64          // events received, duplicates included
	duplicated uint64          // events received again
	untracked  uint64          // out-of-order seqs beyond maxAbove: counted, not remembered
	highest    uint64
}

// maxAbove bounds the seqs an eventRecord remembers out of order.
const maxAbove = 1024

func (r *eventRecord) add(seq uint64) {
	r.received++
	r.highest = max(r.highest, seq)
	switch {
	case seq <= r.upTo || r.above[seq]:
		r.duplicated++
	case seq == r.upTo+1:
		r.upTo++
		for r.above[r.upTo+1] {
			delete(r.above, r.upTo+1)
			r.upTo++
		}
	case len(r.above) >= maxAbove:
		r.untracked++
	default:
		if r.above == nil {
			r.above = make(map[uint64]bool)
		}
		r.above[seq] = true
	}
}

// distinct is the number of different seqs received.
func (r *eventRecord) distinct() uint64 { return r.upTo + uint64(len(r.above)) + r.untracked }

// missing is the number of seqs up to the highest received that were not.
func (r *eventRecord) missing() uint64 { return r.highest - min(r.highest, r.distinct()) }
