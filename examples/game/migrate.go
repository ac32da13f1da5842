package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/snapshot"
)

// Migration (PAPER III-C): the server freezes its sessions, writes them and the world to a
// snapshot file, rebuilds both from the file on another address, rebinds its name there, and
// plays on. The players' sessions see their connection die and resume at the new address the
// moment their Resolver hears of the rebind; nothing they sent or were sent is lost or repeated.

// appSection is the snapshot section that holds the world.
const appSection = "app"

// errNotFrozen matches a migration's error when the server could not be frozen: it serves on
// where it was.
var errNotFrozen = errors.New("ftsl: game: not frozen, serving on")

// migration is one move of the server.
type migration struct {
	from, to string
	pause    time.Duration // from the freeze to Continue at the new address
	size     int           // bytes of the snapshot file
}

// migrate moves the server, in this process, to a new port on the same host. It runs on the
// loop goroutine. An error before the sessions are exported leaves the server serving where it
// was; one after it (the new address cannot be had, the name not rebound) is fatal: the
// sessions are then in the snapshot only.
func (s *server) migrate(ctx context.Context) (migration, error) {
	start := time.Now()
	m := migration{from: s.ln.Addr().String()}
	snap, err := s.freeze(ctx)
	if err != nil {
		return m, err
	}
	m.size = snap.Size()
	// The round trip through a file is the point of the demo: it is what a move to another
	// machine does. Should the file fail, the snapshot in memory is as good.
	if read, err := roundTrip(snap, s.cfg.snapshotDir); err != nil {
		s.cfg.logf("snapshot file: %v; restoring from memory", err)
	} else {
		snap = read
	}
	host, _, err := net.SplitHostPort(m.from)
	if err != nil {
		return m, err
	}
	if err := s.restore(ctx, snap, net.JoinHostPort(host, "0")); err != nil {
		return m, err
	}
	m.to = s.ln.Addr().String()
	m.pause = time.Since(start)
	s.migrations = append(s.migrations, m)
	return m, nil
}

// freeze pauses the listener and takes its sessions and the world into a snapshot. From the
// Export on, the sessions live only in the snapshot; an error before that leaves the server
// serving.
func (s *server) freeze(ctx context.Context) (*snapshot.Snapshot, error) {
	s.stopAccept()
	if err := s.ln.Pause(ctx); err != nil {
		s.startAccepting()
		return nil, fmt.Errorf("%w: pause: %w", errNotFrozen, err)
	}
	st, err := s.ln.Export()
	if err != nil {
		_ = s.ln.Continue()
		s.startAccepting()
		return nil, fmt.Errorf("%w: export: %w", errNotFrozen, err)
	}
	s.settleMoved(&st)
	snap := new(snapshot.Snapshot)
	if err := snapshot.PutOneway(snap, &st); err != nil {
		return nil, err
	}
	app, err := s.world.marshal()
	if err != nil {
		return nil, err
	}
	if err := snap.PutBytes(appSection, app); err != nil {
		return nil, err
	}
	return snap, nil
}

// settleMoved counts the outcome of every ticket that ended before the export. The others went
// with the state, and the sessions rebuilt from it follow them (Session.Tickets); here they end
// failed with ErrSessionMoved, which is no outcome.
func (s *server) settleMoved(st *oneway.ListenerState) {
	moved := make(map[uint64]map[uint64]bool, len(st.Sessions))
	for _, ss := range st.Sessions {
		ids := make(map[uint64]bool, len(ss.Tickets))
		for _, t := range ss.Tickets {
			ids[t.ID] = true
		}
		moved[ss.ID] = ids
	}
	for id, c := range s.conns {
		for _, t := range c.pending {
			if !moved[id][t.ID()] && !s.settled(c.p, t) {
				s.cfg.logf("session %d: ticket %d neither ended nor moved", id, t.ID())
			}
		}
		c.pending = nil
	}
}

// roundTrip writes snap to a new file in dir and reads it back.
func roundTrip(snap *snapshot.Snapshot, dir string) (*snapshot.Snapshot, error) {
	f, err := os.CreateTemp(dir, "game-*.snap")
	if err != nil {
		return nil, err
	}
	path := f.Name()
	_ = f.Close()
	defer os.Remove(path)
	if err := snap.WriteFile(path); err != nil {
		return nil, err
	}
	return snapshot.ReadFile(path)
}

// restore rebuilds the sessions and the world of snap on a new listener at addr, serves, rebinds
// the name there, and closes the old listener if there is one. It runs on the loop
// goroutine, or before the loop starts. Past NewListenerFrom, an error leaves the server
// without a listener that serves: it is fatal.
func (s *server) restore(ctx context.Context, snap *snapshot.Snapshot, addr string) error {
	st, err := snapshot.Oneway(snap)
	if err != nil {
		return err
	}
	app, err := snap.Bytes(appSection)
	if err != nil {
		return err
	}
	w, err := unmarshalWorld(app)
	if err != nil {
		return err
	}
	nl, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("ftsl: game: restore: %w", err)
	}
	ln, sessions, err := oneway.NewListenerFrom(nl, s.cfg.ftsl, st)
	if err != nil {
		_ = nl.Close()
		return err
	}
	old := s.ln
	s.ln, s.world, s.conns = ln, w, make(map[uint64]*conn, len(sessions))
	// The tickets are taken now, while the listener is paused: once it serves, a player's
	// RESUME may carry the confirmations it made meanwhile, and its tickets end in the
	// handshake, before a later Tickets() could list them.
	s.adopt(sessions)
	for _, p := range w.players {
		if s.conns[p.id] == nil {
			p.gone = true // its session ended before the freeze
		}
	}
	// Serve first, then move the name: a player woken by the rebind comes straight in, instead
	// of being told to wait and backing off.
	if err := ln.Continue(); err != nil {
		return err
	}
	s.startAccepting()
	b, err := s.cfg.naming.Rebind(ctx, s.cfg.name, ln.Addr().String())
	if err != nil {
		return fmt.Errorf("ftsl: game: rebind %q: %w", s.cfg.name, err)
	}
	s.bound = b.Version
	if old != nil {
		_ = old.Close() // its sessions were exported: it tells their players nothing
	}
	return nil
}
