package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ftsl-go/ftsl/naming"
	"github.com/ftsl-go/ftsl/oneway"
)

// serverConfig configures a game server.
type serverConfig struct {
	name     string         // the name players dial, bound in the naming service
	naming   *naming.Client // where the name is bound
	tickRate int            // ticks a second
	ftsl     oneway.Config
	// snapshotDir is where a migration writes its snapshot file (removed once read back).
	// Default "": os.TempDir().
	snapshotDir string
	logf        func(format string, args ...any) // the server's story, a line a call
}

// maxReadsPerTick bounds the messages a tick takes from one session, so that a player flooding
// inputs cannot stall the others' ticks; what is left waits for the next tick (and, once the
// session's receive window is full, in the player's own sent buffer).
const maxReadsPerTick = 64

// acceptQueue bounds the sessions accepted and not yet taken by the loop.
const acceptQueue = 64

// server runs the game: its loop goroutine owns the world, the sessions and the tickets (run),
// and everything else asks the loop to act (do).
type server struct {
	cfg serverConfig

	reqs chan func()   // work for the loop (do)
	done chan struct{} // closed when run returns

	// Owned by the loop goroutine.
	ln         *oneway.Listener
	bound      uint64 // the version of the name's binding this server made last
	world      *world
	conns      map[uint64]*conn // by session ID
	accepted   chan *oneway.Session
	stopAccept func() // stops the goroutine taking sessions from ln.Accept, and waits for it
	scoringOn  bool
	migrations []migration
	waiters    []waiter
	view       state  // reused for every STATE
	buf        []byte // reused for every EVENT (Send copies it)
}

// conn is one player's session.
type conn struct {
	s       *oneway.Session
	p       *player          // nil until its JOIN is processed
	pending []*oneway.Ticket // its EVENT tickets not yet ended, in order
}

// waiter is closed by the loop once cond holds after a tick.
type waiter struct {
	cond func() bool
	ch   chan struct{}
}

// newServer makes a server for a new game, w, on ln, and starts accepting players; run plays.
// With ln nil, restore must give it a listener and a world first.
func newServer(cfg serverConfig, ln *oneway.Listener, w *world) *server {
	s := &server{cfg: cfg, reqs: make(chan func()), done: make(chan struct{}), ln: ln, world: w,
		scoringOn: true, conns: make(map[uint64]*conn), stopAccept: func() {}}
	if ln != nil {
		s.startAccepting()
	}
	return s
}

// run is the server loop: every tick it reads what players sent, advances the world, and tells
// the players. It returns when ctx ends, leaving the listener open: the caller closes it.
func (s *server) run(ctx context.Context) {
	defer close(s.done)
	defer func() { s.stopAccept() }()
	t := time.NewTicker(time.Second / time.Duration(s.cfg.tickRate))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-s.reqs:
			f()
		case <-t.C:
			s.tick()
		}
	}
}

// errServerStopped is do's error once the loop has returned.
var errServerStopped = errors.New("ftsl: game: the server loop stopped")

// do runs f on the loop goroutine and waits for it: f may touch everything the loop owns.
func (s *server) do(ctx context.Context, f func()) error {
	ran := make(chan struct{})
	select {
	case s.reqs <- func() { f(); close(ran) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errServerStopped
	}
	<-ran
	return nil
}

// await waits until cond (run on the loop) holds after a tick.
func (s *server) await(ctx context.Context, cond func() bool) error {
	ch := make(chan struct{})
	if err := s.do(ctx, func() { s.waiters = append(s.waiters, waiter{cond, ch}) }); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return errServerStopped
	}
}

// startAccepting starts the goroutine that hands the loop the sessions ln accepts.
func (s *server) startAccepting() {
	ctx, cancel := context.WithCancel(context.Background())
	ln, out, stopped := s.ln, make(chan *oneway.Session, acceptQueue), make(chan struct{})
	s.accepted = out
	go func() {
		defer close(stopped)
		for {
			sess, err := ln.Accept(ctx)
			if err != nil {
				return // ctx ended, or the listener closed
			}
			select {
			case out <- sess:
			case <-ctx.Done():
				// Not lost: a migration brings it back (NewListenerFrom returns the sessions
				// accepted), and a server that stops aborts it with its listener.
				return
			}
		}
	}()
	s.stopAccept = func() { cancel(); <-stopped }
}

// adopt takes sessions as players' connections.
func (s *server) adopt(sessions []*oneway.Session) {
	for _, sess := range sessions {
		c := &conn{s: sess, p: s.world.player(sess.ID()), pending: sess.Tickets()}
		s.conns[sess.ID()] = c
	}
}

// tick is one turn of the loop.
func (s *server) tick() {
	for more := true; more; {
		select {
		case sess := <-s.accepted:
			s.adopt([]*oneway.Session{sess})
		default:
			more = false
		}
	}
	for id, c := range s.conns {
		if !s.read(c) {
			s.follow(c)
			if c.p != nil {
				c.p.gone = true
				if err := c.s.Err(); err != nil {
					s.cfg.logf("%s left (session %d): %v", c.p.name, id, err)
				} else {
					s.cfg.logf("%s left (session %d)", c.p.name, id)
				}
			}
			delete(s.conns, id)
		}
	}
	sc, scored := s.world.step(s.scoringOn)
	s.broadcastState()
	if scored {
		s.announce(sc)
	}
	for _, c := range s.conns {
		s.follow(c)
	}
	s.wake()
}

// read takes what c's player sent since the last tick. It returns false once the session has
// ended and nothing is left to read.
func (s *server) read(c *conn) bool {
	for range maxReadsPerTick {
		d, ok, err := c.s.TryRecv()
		if err != nil {
			return false
		}
		if !ok {
			return true
		}
		if err := s.apply(c, d.Data); err != nil {
			// A message no attempt can process: its sender hears why (if it asked to).
			s.cfg.logf("session %d: %v", c.s.ID(), err)
			_ = d.Refuse(err)
			continue
		}
		_ = d.Confirm()
	}
	return true
}

// apply processes one message from c's player.
func (s *server) apply(c *conn, b []byte) error {
	k, err := kindOf(b)
	if err != nil {
		return err
	}
	switch k {
	case kindJoin:
		name, err := decodeJoin(b)
		if err != nil {
			return err
		}
		p, err := s.world.join(c.s.ID(), name)
		if err != nil {
			return err
		}
		c.p = p
		s.cfg.logf("%s joined (session %d)", name, c.s.ID())
		return nil
	case kindInput:
		in, err := decodeInput(b)
		if err != nil {
			return err
		}
		if c.p == nil {
			return fmt.Errorf("ftsl: game: INPUT before JOIN")
		}
		return c.p.input(in)
	}
	return badMessage("a player sent a %d, which only the server sends", k)
}

// broadcastState sends the world as the players see it to every player, without ticket nor
// copy: one buffer, shared by all sessions, each holding it until its player has it. A player
// whose sent buffer is full misses this STATE; the next one supersedes it anyway.
func (s *server) broadcastState() {
	s.world.view(&s.view)
	b := appendState(nil, &s.view) // fresh: the sessions keep it
	for _, c := range s.conns {
		if c.p != nil {
			_ = c.s.PostShared(nil, b)
		}
	}
}

// announce sends the important event sc to every player, asking each to confirm it.
func (s *server) announce(sc scoring) {
	for _, c := range s.conns {
		p := c.p
		if p == nil {
			continue
		}
		p.sent++
		s.buf = appendEvent(s.buf[:0], event{seq: p.sent, tick: sc.tick, score: sc.score, scorer: sc.p.name})
		// TrySend: the loop never waits for one player. A send refused (the player's sent
		// buffer is full: it has not read for megabytes) is an event that player never gets,
		// counted failed, and then lost in the summary.
		t, err := c.s.TrySend(s.buf, oneway.AckProcessed)
		if err != nil {
			p.failed++
			s.cfg.logf("event %d to %s not sent: %v", p.sent, p.name, err)
			continue
		}
		c.pending = append(c.pending, t)
	}
}

// follow counts the outcomes of c's tickets that ended.
func (s *server) follow(c *conn) {
	keep := c.pending[:0]
	for _, t := range c.pending {
		if !s.settled(c.p, t) {
			keep = append(keep, t)
		}
	}
	clear(c.pending[len(keep):])
	c.pending = keep
}

// settled counts t's outcome in p's counts if t has ended, and says whether it has.
func (s *server) settled(p *player, t *oneway.Ticket) bool {
	select {
	case <-t.Done():
	default:
		return false
	}
	if p == nil {
		return true // (a JOIN refused: there is no player to count for)
	}
	switch st, err := t.Status(), t.Err(); st {
	case oneway.StatusProcessed:
		p.processed++
	default:
		p.failed++
		s.cfg.logf("event to %s (message %d) %v: %v", p.name, t.ID(), st, err)
	}
	return true
}

// wake closes the waiters whose condition holds.
func (s *server) wake() {
	keep := s.waiters[:0]
	for _, w := range s.waiters {
		if w.cond() {
			close(w.ch)
		} else {
			keep = append(keep, w)
		}
	}
	clear(s.waiters[len(keep):])
	s.waiters = keep
}

// quiet reports that no event ticket is pending.
func (s *server) quiet() bool {
	for _, c := range s.conns {
		if len(c.pending) > 0 {
			return false
		}
	}
	return true
}

// finish ends the game: no one scores from now on, and finish returns once every event sent
// has ended (processed or failed), so every player has all it will get.
func (s *server) finish(ctx context.Context) error {
	if err := s.do(ctx, func() { s.scoringOn = false }); err != nil {
		return err
	}
	return s.await(ctx, s.quiet)
}

// empty reports that no player is connected.
func (s *server) empty() bool { return len(s.conns) == 0 }

// report is what the server tells of the game.
type report struct {
	addr       string
	ticks      uint32
	players    []player
	migrations []migration
}

// report returns the server's report; it runs on the loop (do), or once the loop is over.
func (s *server) report() report {
	r := report{addr: s.ln.Addr().String(), ticks: s.world.tick, migrations: s.migrations}
	for _, p := range s.world.players {
		r.players = append(r.players, *p)
	}
	return r
}
