package oneway

import (
	"context"
	"net"
	"slices"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// This file moves a oneway listener's sessions to another process with their tickets (PAPER
// III-C): core moves the protocol state (core.Listener.Export), this layer adds what it keeps
// above it, the tickets not yet ended and the attempts of messages that failed.

// ListenerState is a paused oneway listener's state, as Listener.Export takes it and
// NewListenerFrom rebuilds it: core's, and each session's tickets and attempts. It holds each
// session's resume token: keep it as secret as the server's memory.
type ListenerState struct {
	Core     core.ListenerState
	Sessions []SessionState // one per session of Core, in the same order
}

// SessionState is what a oneway session keeps above its core session.
type SessionState struct {
	ID uint64 // the core session's
	// The acked, delivered and processed marks the tickets had reached: every ticket at or below
	// them had ended.
	AckDone, DelDone, ProcDone uint64
	Tickets                    []TicketState  // the tickets not ended, in message order
	Attempts                   []AttemptState // received messages with failed attempts, by ID
}

// TicketState is a ticket that had not ended.
type TicketState struct {
	ID        uint64
	Level     AckLevel
	Delivered bool // the receiver had the message (StatusDelivered)
}

// AttemptState is a received message whose attempts failed Failed times so far; it is handed
// out again with Redelivered set and attempt Failed+1.
type AttemptState struct {
	ID     uint64
	Failed int
}

// exportWait bounds how long Export waits for a session to hear it moved: the notes go out as
// soon as whoever holds the session's lock lets go.
const exportWait = 10 * time.Second

// Pause freezes the listener's sessions for a move, as core.Listener.Pause does: the
// application may go on sending (the sent buffers fill) and settling what it received; nothing
// reaches the peers until Continue, or Export moves the state elsewhere. Handlers (Handle) start
// no new call, and Pause waits for the calls under way to return, so that none has handled a
// message the state says is not: a delivery the application holds from Recv goes with the state,
// and is handed out again, Redelivered, where the state is imported.
func (l *Listener) Pause(ctx context.Context) error {
	if err := l.ln.Pause(ctx); err != nil {
		return err
	}
	for _, s := range l.registered() {
		if err := s.closeGate(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Continue undoes a Pause, or starts serving a listener made by NewListenerFrom.
func (l *Listener) Continue() error {
	if err := l.ln.Continue(); err != nil {
		return err
	}
	for _, s := range l.registered() {
		s.openGate()
	}
	return nil
}

// Shutdown ends the listener gracefully (see core.Listener.Shutdown).
func (l *Listener) Shutdown(ctx context.Context) error { return l.ln.Shutdown(ctx) }

// Export takes the state of the paused listener's sessions, core's and this layer's, for
// NewListenerFrom to rebuild elsewhere. From the moment Export begins, sends on the sessions fail
// with ErrSessionMoved; the tickets not ended go with the state (here they fail with
// ErrSessionMoved), as do the attempts of received messages. See core.Listener.Export.
func (l *Listener) Export() (ListenerState, error) {
	live := l.registered()
	for _, s := range live {
		s.mu.Lock()
		if !s.ended {
			s.exporting, s.moved = true, make(chan struct{})
		}
		s.mu.Unlock()
	}
	cst, err := l.ln.Export()
	if err != nil {
		for _, s := range live {
			s.mu.Lock()
			if !s.ended {
				s.exporting, s.moved = false, nil
			}
			s.mu.Unlock()
		}
		return ListenerState{}, err
	}
	byID := make(map[uint64]*Session, len(live))
	for _, s := range live {
		byID[s.id] = s
	}
	st := ListenerState{Core: cst, Sessions: make([]SessionState, 0, len(cst.Sessions))}
	for i := range cst.Sessions {
		id := cst.Sessions[i].ID
		s := byID[id]
		if s == nil {
			// Never accepted here: what it carries over from an import, if anything, or nothing.
			l.mu.Lock()
			im, ok := l.pending[id]
			l.mu.Unlock()
			if !ok {
				im.ss = SessionState{ID: id}
			}
			st.Sessions = append(st.Sessions, im.ss)
			continue
		}
		ss, err := s.awaitExport()
		if err != nil {
			return ListenerState{}, err
		}
		// A send under way when the core session moved had its ticket queued, and then failed
		// with ErrSessionMoved: its caller got the error, and the message is not in the state.
		next := cst.Sessions[i].Send.NextMID
		ss.Tickets = slices.DeleteFunc(ss.Tickets, func(t TicketState) bool { return t.ID >= next })
		st.Sessions = append(st.Sessions, ss)
	}
	return st, nil
}

// awaitExport waits for the session's core to report the move, then adds its attempts.
func (s *Session) awaitExport() (SessionState, error) {
	s.mu.Lock()
	moved := s.moved
	s.mu.Unlock()
	if moved == nil {
		return SessionState{}, ftslerr.Errorf("ftsl: oneway export: session %d was not being exported", s.id)
	}
	t := time.NewTimer(exportWait)
	defer t.Stop()
	select {
	case <-moved:
	case <-t.C:
		return SessionState{}, ftslerr.Errorf("ftsl: oneway export: session %d did not report its move in %v", s.id, exportWait)
	}
	s.mu.Lock()
	ss := *s.exported
	s.mu.Unlock()
	s.rmu.Lock()
	for id, n := range s.redelivered {
		ss.Attempts = append(ss.Attempts, AttemptState{ID: id, Failed: n})
	}
	for id, n := range s.heldAttempts {
		ss.Attempts = append(ss.Attempts, AttemptState{ID: id, Failed: n})
	}
	s.rmu.Unlock()
	slices.SortFunc(ss.Attempts, func(a, b AttemptState) int { return compareU64(a.ID, b.ID) })
	return ss, nil
}

func compareU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// captureLocked takes the tickets as the core session moves: every note before the move has been
// applied, so they match the core state exported.
func (s *Session) captureLocked() {
	ss := &SessionState{ID: s.id, AckDone: s.ackDone, DelDone: s.delDone, ProcDone: s.procDone}
	for mid := s.tq.head; mid < s.tq.tail; mid++ {
		if t := s.tq.at(mid); t != nil && !t.ended() {
			ss.Tickets = append(ss.Tickets, TicketState{ID: mid, Level: t.level, Delivered: t.Status() == StatusDelivered})
		}
	}
	s.exported = ss
	close(s.moved)
}

// NewListenerFrom rebuilds the sessions of st (taken by Export, maybe in another process) on
// connections from ln, as core.NewListenerFrom does, with their tickets: Session.Tickets lists
// them, and they end as the peers' acknowledgements come. The listener starts paused: Continue
// serves. It returns the sessions the exporting application had accepted; the others come out of
// Accept once their client has resumed. A state that is corrupt or inconsistent is refused with
// an error matching core.ErrInvalidState, and nothing is imported; ln is then left open.
func NewListenerFrom(ln net.Listener, cfg Config, st ListenerState) (*Listener, []*Session, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	if len(st.Sessions) != len(st.Core.Sessions) {
		return nil, nil, invalidState("%d oneway sessions for %d core sessions", len(st.Sessions), len(st.Core.Sessions))
	}
	for i := range st.Sessions {
		if err := st.Sessions[i].check(&st.Core.Sessions[i]); err != nil {
			return nil, nil, err
		}
	}
	cl, accepted, err := core.NewListenerFrom(ln, cfg.Core, st.Core)
	if err != nil {
		return nil, nil, err
	}
	l := &Listener{ln: cl, cfg: cfg}
	l.pending = make(map[uint64]imported, len(st.Sessions))
	for i := range st.Sessions {
		cs := &st.Core.Sessions[i]
		im := imported{ss: st.Sessions[i], next: cs.Send.NextMID, inFlight: cs.Recv.MaxInFlight,
			marks: core.Progress{Acked: cs.Send.AckedMID, Delivered: cs.Send.PeerAck.DMID, Processed: cs.Send.PeerAck.PMID}}
		for _, m := range cs.Recv.Messages {
			if m.Delivered && !m.Settled {
				im.held = append(im.held, m.ID)
			}
		}
		l.pending[cs.ID] = im
	}
	sessions := make([]*Session, 0, len(accepted))
	for _, cs := range accepted {
		sessions = append(sessions, l.wrap(cs))
	}
	return l, sessions, nil
}

// imported is what an imported session's oneway layer needs, kept until the session is wrapped.
type imported struct {
	ss       SessionState
	next     uint64   // the core session's next message ID
	inFlight int      // its MaxInFlight
	held     []uint64 // the messages its application held
	marks    core.Progress
}

func invalidState(format string, args ...any) error {
	return ftslerr.Errorf("ftsl: oneway import: %w: "+format, append([]any{core.ErrInvalidState}, args...)...)
}

// check refuses a state that does not fit its core session's.
func (ss *SessionState) check(cs *core.SessionState) error {
	if ss.ID != cs.ID {
		return invalidState("session %d where core has %d", ss.ID, cs.ID)
	}
	next := cs.Send.NextMID
	if ss.AckDone >= next || ss.DelDone >= next || ss.ProcDone >= next {
		return invalidState("session %d: marks %d/%d/%d at or past the next message %d", ss.ID, ss.AckDone, ss.DelDone, ss.ProcDone, next)
	}
	first := min(ss.AckDone, ss.DelDone, ss.ProcDone) + 1
	if n := next - first; n > uint64(cs.Params.SendBufferBytes) {
		return invalidState("session %d: %d messages between its marks and the next", ss.ID, n) // each costs bytes
	}
	last := uint64(0)
	for _, t := range ss.Tickets {
		switch {
		case t.ID <= last:
			return invalidState("session %d: ticket %d out of order", ss.ID, t.ID)
		case t.ID < first || t.ID >= next:
			return invalidState("session %d: ticket %d outside [%d, %d)", ss.ID, t.ID, first, next)
		case t.Level > AckProcessed:
			return invalidState("session %d: ticket %d: level %d", ss.ID, t.ID, t.Level)
		}
		last = t.ID
	}
	last = 0
	for _, a := range ss.Attempts {
		if a.ID <= last || a.Failed < 0 || a.ID > cs.Recv.Released+uint64(len(cs.Recv.Messages)) || a.ID <= cs.Recv.Released {
			return invalidState("session %d: attempts of message %d", ss.ID, a.ID)
		}
		last = a.ID
	}
	return nil
}

// wrap makes the oneway session over an imported core session, with its state if it has one.
func (l *Listener) wrap(cs *core.Session) *Session {
	s := newSession(cs, &l.cfg)
	l.mu.Lock()
	im, ok := l.pending[cs.ID()]
	delete(l.pending, cs.ID())
	l.mu.Unlock()
	if ok {
		s.restore(&im)
	}
	l.register(s)
	return s
}

// restore applies an exported state to a session just made over its imported core session,
// before anything can happen to it (its listener is paused).
func (s *Session) restore(im *imported) {
	ss, next := &im.ss, im.next
	s.mu.Lock()
	s.ackDone, s.delDone, s.procDone = ss.AckDone, ss.DelDone, ss.ProcDone
	s.tq.init(min(ss.AckDone, ss.DelDone, ss.ProcDone) + 1)
	k := 0
	for mid := s.tq.head; mid < next; mid++ {
		var t *Ticket
		if k < len(ss.Tickets) && ss.Tickets[k].ID == mid {
			ts := ss.Tickets[k]
			k++
			t = &Ticket{mid: mid, level: ts.Level}
			if ts.Delivered {
				t.advance(StatusDelivered)
				t.delivered = true
			}
			s.outstanding++
		}
		s.tq.push(t)
	}
	s.mu.Unlock()
	// Normally nothing: the tickets were taken at the core's marks. (A session imported, never
	// accepted and exported again may have had acknowledgements meanwhile.)
	observer{s}.Progress(im.marks)
	s.rmu.Lock()
	if im.inFlight > 0 {
		s.inFlight = im.inFlight
	}
	for _, a := range ss.Attempts {
		if s.redelivered == nil {
			s.redelivered = make(map[uint64]int)
		}
		s.redelivered[a.ID] = a.Failed
	}
	// A message the application held when the state was taken comes out of Recv again: it may
	// have been seen, so it says Redelivered.
	for _, id := range im.held {
		if _, ok := s.redelivered[id]; !ok {
			if s.redelivered == nil {
				s.redelivered = make(map[uint64]int)
			}
			s.redelivered[id] = 0
		}
	}
	s.rmu.Unlock()
}

// Tickets returns the session's tickets that have not ended, in message order: after
// NewListenerFrom, the tickets the exporting process's application was following.
func (s *Session) Tickets() []*Ticket {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ts []*Ticket
	for mid := s.tq.head; mid < s.tq.tail; mid++ {
		if t := s.tq.at(mid); t != nil && !t.ended() {
			ts = append(ts, t)
		}
	}
	return ts
}

// registered returns the sessions the listener handed out that have not ended.
func (l *Listener) registered() []*Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	ss := make([]*Session, 0, len(l.sessions))
	for _, s := range l.sessions {
		ss = append(ss, s)
	}
	return ss
}

func (l *Listener) register(s *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return // (it could have ended already: nothing to export)
	}
	s.lis = l
	l.mu.Lock()
	if l.sessions == nil {
		l.sessions = make(map[uint64]*Session)
	}
	l.sessions[s.id] = s
	l.mu.Unlock()
}

// forget drops an ended session. Called with s.mu held (the listener's lock comes after).
func (l *Listener) forget(s *Session) {
	l.mu.Lock()
	delete(l.sessions, s.id)
	l.mu.Unlock()
}
