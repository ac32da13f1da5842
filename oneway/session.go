package oneway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// Session is one end of a one-way session. Both ends are the same once connected. All methods
// are safe for concurrent use.
type Session struct {
	cs  *core.Session
	cfg *Config // shared with the listener's other sessions: never changed
	id  uint64
	// ev is made when the application first asks for events, and ctx when it first calls
	// Handle: a server's thousands of idle sessions need neither (both guarded by mu).
	ev     atomic.Pointer[events.Dispatcher]
	ctx    context.Context // ends with the session: handlers see it
	cancel context.CancelFunc

	// turn lets one Send at a time through: a ticket is registered under its message ID
	// before the message exists, so no acknowledgement can arrive for a ticket not yet known.
	turn sendTurn
	// roomWait: the sender holding the turn waits for room. A non-blocking sender that meets it
	// fails at once (the buffer is full); one that meets a sender not waiting waits its turn.
	roomWait atomic.Bool

	mu sync.Mutex
	// Guarded by mu: the tickets of sent messages, by message ID.
	tq          ticketQueue
	ackDone     uint64 // the acked, delivered and processed marks applied to tickets so far
	delDone     uint64
	procDone    uint64
	outstanding int  // tickets not yet ended
	closing     bool // Close was called: no new messages
	ended       bool
	endErr      error
	drained     chan struct{}     // closed when closing and no ticket is outstanding
	wasDown     bool              // the connection died since the last resume
	onClose     func(error)       // OnClose's
	onConn      func(bool, error) // OnConnectionChange's
	endedWith   []endedTicket     // tickets just ended whose OnEnd is still to call
	// Migration (export.go): set by the listener's Export; moved is closed, and exported set,
	// once the core session moved and the tickets it left were taken.
	exporting bool
	moved     chan struct{}
	exported  *SessionState
	lis       *Listener // the listener that accepted it, if any

	// Receive side, guarded by rmu. inFlight is the bound on deliveries held at once (the core
	// session's MaxInFlight); at 1 the paper's rule holds: each Recv settles the previous delivery.
	rmu      sync.Mutex
	inFlight int
	// current, with inFlight 1, is the delivery the last Recv returned, if open: written under
	// rmu, and read without it by Recv, which at a higher inFlight need not lock to find it nil.
	current     atomic.Pointer[Delivery]
	redelivered map[uint64]int // requeued messages: the attempts they have had
	// heldAttempts: the failed attempts of the deliveries held now that are not first attempts.
	heldAttempts map[uint64]int
	handling     bool
	handlerW     sync.WaitGroup
	// A listener's Pause closes the gate on Handle: gate, while closed, is a channel closed when
	// it opens; handing counts the handler calls under way, and idle hears the last one end.
	gate    chan struct{}
	handing int
	idle    chan struct{}

	doneOnce sync.Once
	done     chan struct{}
}

func newSession(cs *core.Session, cfg *Config) *Session {
	s := &Session{
		cs:       cs,
		cfg:      cfg,
		id:       cs.ID(),
		inFlight: cfg.Core.MaxInFlight,
		drained:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.tq.init(1)
	s.turn.init()
	cs.Observe(observer{s})
	// The session may have ended between the handshake and now; its observer missed that.
	if st := cs.State(); st == core.StateClosed || st == core.StateLost {
		observer{s}.StateChanged(st, cs.Err())
	}
	return s
}

// eventCallbackPanicked logs a panic raised by an OnEvent callback (the dispatcher recovered it
// and delivers the rest), then hands it to the application's own Config.Events.OnPanic.
func (s *Session) eventCallbackPanicked(e events.Event, v any, stack []byte) {
	s.cfg.Core.Logger.Error().Uint64("session", s.id).Stringer("event", e).Str("panic", fmt.Sprint(v)).
		Bytes("stack", stack).Msg("event callback panicked")
	if f := s.cfg.Events.OnPanic; f != nil {
		f(e, v, stack)
	}
}

// ID is the session ID, the same on both ends.
func (s *Session) ID() uint64 { return s.id }

// State is the state of the session underneath.
func (s *Session) State() core.State { return s.cs.State() }

// Stats returns the counters of the session underneath.
func (s *Session) Stats() core.Stats { return s.cs.Stats() }

// Err reports why the session ended (see core.Session.Err).
func (s *Session) Err() error { return s.cs.Err() }

// RemoteAddr is the peer's address on the current (or last) connection.
func (s *Session) RemoteAddr() net.Addr { return s.cs.RemoteAddr() }

// LocalAddr is this side's address on the current (or last) connection.
func (s *Session) LocalAddr() net.Addr { return s.cs.LocalAddr() }

// ConnectionState is the TLS state of the current (or last) connection: with mutual TLS, the
// peer's certificates (see core.Session.ConnectionState).
func (s *Session) ConnectionState() (tls.ConnectionState, bool) { return s.cs.ConnectionState() }

// Events returns the channel of the session's events (see events.Dispatcher). It is bounded:
// events the application does not read in time are dropped and counted by EventsDropped, never
// waited for. It is closed after the session's last event.
func (s *Session) Events() <-chan events.Event { return s.dispatcher().Channel() }

// OnEvent registers a callback for the session's events. Callbacks run one at a time, in the
// order things happened, on a goroutine of the session's own (never the network reader's).
func (s *Session) OnEvent(f func(events.Event)) { s.dispatcher().OnEvent(f) }

// EventsDropped reports how many events were dropped because nobody read them in time.
func (s *Session) EventsDropped() uint64 {
	if d := s.ev.Load(); d != nil {
		return d.Dropped()
	}
	return 0
}

// dispatcher returns the session's event dispatcher, made on the first call; one made after the
// session ended is closed at once, its channel closed with nothing in it.
func (s *Session) dispatcher() *events.Dispatcher {
	if d := s.ev.Load(); d != nil {
		return d
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.ev.Load(); d != nil {
		return d
	}
	evCfg := s.cfg.Events
	evCfg.OnPanic = s.eventCallbackPanicked
	d := events.New(evCfg)
	if s.ended {
		d.Close()
	}
	s.ev.Store(d)
	return d
}

// handlerContext returns the context handlers get, made on the first call: it ends with the
// session.
func (s *Session) handlerContext() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		if s.ended {
			s.cancel()
		}
	}
	return s.ctx
}

// Done is closed when the session has ended and all its goroutines (network, handler, event
// delivery) have returned.
func (s *Session) Done() <-chan struct{} {
	s.doneOnce.Do(func() {
		go func() {
			<-s.cs.Done()
			s.handlerW.Wait()
			if d := s.ev.Load(); d != nil { // (one made from now on is closed at once)
				<-d.Done()
			}
			close(s.done)
		}()
	})
	return s.done
}

func (s *Session) publish(k events.Kind, mid uint64, st Status, err error) {
	if d := s.ev.Load(); d != nil && d.Subscribed() {
		d.Publish(events.Event{Kind: k, Session: s.id, Message: mid, Status: st, Err: err, Time: now()})
	}
}

// Send queues data as one message asking for acknowledgement level, and returns its ticket once
// the message is in the sent buffer; data may be reused at once. Send blocks only while the sent
// buffer is full (raising a BufferFull event), until ctx ends.
func (s *Session) Send(ctx context.Context, data []byte, level AckLevel) (*Ticket, error) {
	return s.send(ctx, nil, data, level, true, false)
}

// TrySend is Send that never blocks: it returns ErrBufferFull when the message does not fit now.
func (s *Session) TrySend(data []byte, level AckLevel) (*Ticket, error) {
	return s.send(context.Background(), nil, data, level, false, false)
}

// SendParts is Send of the message prefix followed by data, both copied: a caller with a header
// and a body need not join them first.
func (s *Session) SendParts(ctx context.Context, prefix, data []byte, level AckLevel) (*Ticket, error) {
	return s.send(ctx, prefix, data, level, true, false)
}

// TrySendParts is SendParts that never blocks: it returns ErrBufferFull when the message does not
// fit now.
func (s *Session) TrySendParts(prefix, data []byte, level AckLevel) (*Ticket, error) {
	return s.send(context.Background(), prefix, data, level, false, false)
}

// SendShared is Send for a message sent to many sessions at once (a fan-out): the message is
// prefix followed by shared; prefix is copied, shared is kept by reference, once for all of them,
// not copied into each session's sent buffer (see core.Session.SendShared). The caller must never
// change shared afterwards.
func (s *Session) SendShared(ctx context.Context, prefix, shared []byte, level AckLevel) (*Ticket, error) {
	return s.send(ctx, prefix, shared, level, true, true)
}

// TrySendShared is SendShared that never blocks: it returns ErrBufferFull when the message does
// not fit now, so one slow receiver never holds up a fan-out to the others.
func (s *Session) TrySendShared(prefix, shared []byte, level AckLevel) (*Ticket, error) {
	return s.send(context.Background(), prefix, shared, level, false, true)
}

// send queues data: it waits for room (and for its turn among senders) only if block, and keeps
// data by reference if shared.
func (s *Session) send(ctx context.Context, prefix, data []byte, level AckLevel, block, shared bool) (*Ticket, error) {
	return s.sendTicket(ctx, prefix, data, level, block, shared, true, nil)
}

// TrySendSharedDeferred is TrySendShared that leaves waking the session's writer to f (see
// Flusher): a sender fanning many messages out to many sessions wakes each writer once per
// burst. The caller must call f.Flush. With a nil f it is TrySendShared.
func (s *Session) TrySendSharedDeferred(f *Flusher, prefix, shared []byte, level AckLevel) (*Ticket, error) {
	return s.sendTicket(context.Background(), prefix, shared, level, false, true, true, f)
}

// PostShared is TrySendShared at AckNone without a ticket: fire and forget, for a sender that
// follows nothing (a pubsub hub fanning out a message nobody asked to hear about), so it pays
// for no ticket at all.
func (s *Session) PostShared(prefix, shared []byte) error {
	_, err := s.sendTicket(context.Background(), prefix, shared, AckNone, false, true, false, nil)
	return err
}

// PostSharedDeferred is PostShared that leaves waking the session's writer to f (see Flusher).
// The caller must call f.Flush. With a nil f it is PostShared.
func (s *Session) PostSharedDeferred(f *Flusher, prefix, shared []byte) error {
	_, err := s.sendTicket(context.Background(), prefix, shared, AckNone, false, true, false, f)
	return err
}

// takeTurn takes the turn for a non-blocking sender that found it taken. The holder either
// finishes soon (it only registers a ticket and copies a message) or waits for room, and then the
// buffer is full: this sender fails rather than wait for it.
func (s *Session) takeTurn() error {
	for {
		if s.roomWait.Load() {
			return ftslerr.Errorf("%w: another Send is waiting for room", ErrBufferFull)
		}
		runtime.Gosched()
		if s.turn.tryTake() {
			return nil
		}
	}
}

// sendTicket is send, making a ticket only if ticket, and leaving the writer's wake-up to f if
// it is not nil (never with block: a blocked send must not wait for a writer nobody woke).
func (s *Session) sendTicket(ctx context.Context, prefix, data []byte, level AckLevel, block, shared, ticket bool, f *Flusher) (*Ticket, error) {
	if !s.turn.tryTake() { // (taken: no other sender, the common case)
		if !block {
			if err := s.takeTurn(); err != nil {
				return nil, err
			}
		} else if err := s.turn.take(ctx); err != nil {
			return nil, err
		}
	}
	defer s.turn.give()
	if level > AckProcessed {
		return nil, ftslerr.Errorf("ftsl: invalid ack level %d", level)
	}
	s.mu.Lock()
	if err := s.sendableLocked(); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	want := s.tq.tail
	var t *Ticket
	if ticket {
		t = &Ticket{mid: want, level: level}
		s.outstanding++
	}
	s.tq.push(t) // nil without a ticket: the queue still has a slot per message ID
	s.mu.Unlock()

	var mid uint64
	var err error
	if shared {
		mid, err = s.cs.TrySendSharedDeferred(f, prefix, data, level)
	} else {
		mid, err = s.cs.TrySendParts(prefix, data, level)
	}
	if errors.Is(err, core.ErrBufferFull) {
		s.publish(events.BufferFull, 0, StatusPending, err)
		if block {
			s.roomWait.Store(true)
			if shared {
				mid, err = s.cs.SendShared(ctx, prefix, data, level)
			} else {
				mid, err = s.cs.SendParts(ctx, prefix, data, level)
			}
			s.roomWait.Store(false)
		}
	}
	if err == nil && mid != want {
		err = ftslerr.Errorf("ftsl: message ID %d, expected %d: is someone else sending on the core session?", mid, want)
	}
	if err != nil {
		s.mu.Lock()
		if s.tq.tail == want+1 && s.tq.at(want) == t {
			s.tq.pop()
		}
		if t != nil && !t.ended() {
			s.endTicketLocked(t, StatusFailed, err)
		}
		s.checkDrainedLocked()
		s.unlockRunEnded()
		return nil, err
	}
	return t, nil
}

func (s *Session) sendableLocked() error {
	if s.ended {
		return s.endErr
	}
	if s.exporting {
		return ftslerr.Errorf("%w: its listener is exporting it", ErrSessionMoved)
	}
	if s.closing {
		return ftslerr.Errorf("%w: no new messages once Close was called", ErrSessionClosed)
	}
	return nil
}

// Close ends the session gracefully: it stops new messages, waits until every ticket has ended
// (the peer acknowledged each message at the level it asked for, or failed it), then closes the
// session underneath (see core.Session.Close). If ctx ends first, the session is aborted, pending
// tickets fail with ErrSessionClosed, and ctx's error is returned. Safe to call twice.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.checkDrainedLocked()
	s.mu.Unlock()
	select {
	case <-s.drained:
	case <-ctx.Done():
		s.Abort()
		return ctx.Err()
	}
	return s.cs.Close(ctx)
}

// Abort ends the session at once; pending tickets fail with ErrSessionClosed. Safe to call twice.
func (s *Session) Abort() { s.cs.Abort() }

// deliveredLocked records that the receiver has t's message. Its OnDelivered function waits in
// s.endedWith to be called once mu is released, before any OnEnd queued after it.
func (s *Session) deliveredLocked(t *Ticket) {
	if t.level == AckNone {
		return
	}
	if f := t.deliveredNow(); f != nil {
		s.endedWith = append(s.endedWith, endedTicket{t, f})
	}
}

// endTicketLocked ends t, which is counted among the outstanding tickets until then. Its OnEnd
// function waits in s.endedWith to be called once mu is released (unlockRunEnded).
func (s *Session) endTicketLocked(t *Ticket, st Status, err error) {
	s.outstanding--
	if f := t.end(st, err); f != nil {
		s.endedWith = append(s.endedWith, endedTicket{t, f})
	}
}

type endedTicket struct {
	t *Ticket
	f func(*Ticket)
}

// unlockRunEnded unlocks mu and calls the OnEnd functions of the tickets that just ended, in
// order.
func (s *Session) unlockRunEnded() {
	if len(s.endedWith) == 0 {
		s.mu.Unlock()
		return
	}
	run := s.endedWith
	s.endedWith = nil
	s.mu.Unlock()
	for _, e := range run {
		e.f(e.t)
	}
}

func (s *Session) checkDrainedLocked() {
	if (s.closing || s.ended) && s.outstanding == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
}

// observer hears the core session's progress and state, and turns it into ticket outcomes and
// events. Its calls come one at a time, in order.
type observer struct{ s *Session }

func (o observer) Progress(p core.Progress) {
	s := o.s
	s.mu.Lock()
	last := s.tq.tail - 1
	for s.ackDone < min(p.Acked, last) {
		s.ackDone++
		if t := s.tq.at(s.ackDone); t != nil && t.level == AckNone && !t.ended() {
			s.endTicketLocked(t, StatusDelivered, nil)
		}
	}
	for s.delDone < min(p.Delivered, last) {
		s.delDone++
		t := s.tq.at(s.delDone)
		if t == nil || t.ended() || t.level == AckNone {
			continue
		}
		s.deliveredLocked(t)
		if t.level == AckDelivered {
			s.endTicketLocked(t, StatusDelivered, nil)
		} else {
			t.advance(StatusDelivered)
		}
		s.publish(events.MessageDelivered, t.mid, StatusDelivered, nil)
	}
	for s.procDone < min(p.Processed, last) {
		s.procDone++
		if t := s.tq.at(s.procDone); t != nil && t.level == AckProcessed && !t.ended() {
			if t.Status() == StatusPending { // processed implies delivered: keep the order of events
				s.deliveredLocked(t)
				t.advance(StatusDelivered)
				s.publish(events.MessageDelivered, t.mid, StatusDelivered, nil)
			}
			s.endTicketLocked(t, StatusProcessed, nil)
			s.publish(events.MessageProcessed, t.mid, StatusProcessed, nil)
		}
	}
	s.tq.drop(min(s.ackDone, s.delDone, s.procDone))
	s.checkDrainedLocked()
	s.unlockRunEnded()
}

func (o observer) Failed(mid uint64, reason string) {
	s := o.s
	s.mu.Lock()
	if t := s.tq.at(mid); t != nil && !t.ended() {
		if t.Status() == StatusPending {
			// The receiver had it (it tried and failed): delivered comes first, as for processed.
			s.deliveredLocked(t)
			t.advance(StatusDelivered)
			s.publish(events.MessageDelivered, mid, StatusDelivered, nil)
		}
		err := &RejectedError{Message: mid, Reason: reason}
		s.endTicketLocked(t, StatusFailed, err)
		s.publish(events.MessageFailed, mid, StatusFailed, err)
	}
	s.checkDrainedLocked()
	s.unlockRunEnded()
}

func (o observer) StateChanged(st core.State, err error) {
	s := o.s
	s.mu.Lock()
	var conn func(bool, error)
	up := st == core.StateConnected
	if s.onConn != nil && (st == core.StateDisconnected || up && s.wasDown) {
		conn = s.onConn
	}
	closed := s.stateChangedLocked(st, err)
	s.unlockRunEnded()
	if conn != nil {
		conn(up, err)
	}
	if closed != nil {
		closed(s.endErr)
	}
}

// stateChangedLocked applies a new state; it returns OnClose's function if the session just ended.
func (s *Session) stateChangedLocked(st core.State, err error) (closed func(error)) {
	switch st {
	case core.StateDisconnected:
		s.wasDown = true
		s.publish(events.SessionReconnecting, 0, StatusPending, err)
	case core.StateConnected:
		if s.wasDown {
			s.wasDown = false
			s.publish(events.SessionResumed, 0, StatusPending, nil)
		}
	case core.StateClosed, core.StateLost, core.StateMoved:
		// (A moved session goes on in the process that imported it; here it is over.)
		if s.ended {
			return nil
		}
		if st == core.StateMoved && s.exporting {
			s.captureLocked() // what the tickets are now goes on in the importing process
		}
		if s.lis != nil {
			s.lis.forget(s)
		}
		s.ended = true
		if err == nil {
			err = ftslerr.Errorf("%w by Close", ErrSessionClosed)
		}
		s.endErr = err
		// Every ticket still pending ends now: the session can no longer tell.
		for mid := s.tq.head; mid < s.tq.tail; mid++ {
			if t := s.tq.at(mid); t != nil && !t.ended() {
				s.endTicketLocked(t, StatusFailed, err)
				s.publish(events.MessageFailed, mid, StatusFailed, err)
			}
		}
		s.tq.drop(s.tq.tail - 1)
		kind := events.SessionClosed
		if st == core.StateLost {
			kind = events.SessionLost
		}
		s.publish(kind, 0, StatusPending, err)
		if d := s.ev.Load(); d != nil {
			d.Close()
		}
		if s.cancel != nil {
			s.cancel()
		}
		s.checkDrainedLocked()
		closed, s.onClose = s.onClose, nil
	}
	return closed
}

// OnClose has f called once when the session ends, closed or lost, with why (the error every
// pending ticket failed with): on the goroutine that ended it, with no lock held, after every
// pending ticket ended; or at once if it has ended. It lets code follow many sessions without a
// goroutine each. f must return quickly.
func (s *Session) OnClose(f func(err error)) {
	s.mu.Lock()
	if s.ended {
		err := s.endErr
		s.mu.Unlock()
		f(err)
		return
	}
	s.onClose = f
	s.mu.Unlock()
}

// OnConnectionChange has f called each time the session's connection dies and the session sets
// out to resume (connected false, err saying what broke), and each time a new connection carries
// it again with nothing lost (connected true): what a client shows as "reconnecting..." and
// "back". It runs on the goroutine that noticed, with no lock held, and must return quickly; the
// session's end is OnClose's. The same changes come as SessionReconnecting and SessionResumed
// events; this is for code that follows many sessions without a dispatcher each. nil removes it.
func (s *Session) OnConnectionChange(f func(connected bool, err error)) {
	s.mu.Lock()
	s.onConn = f
	s.mu.Unlock()
}

// ticketQueue holds tickets by message ID in a ring: IDs head to tail-1 are present (a slot may
// be nil once its ticket is no longer needed).
type ticketQueue struct {
	ring       []*Ticket
	head, tail uint64
}

func (q *ticketQueue) init(first uint64) {
	q.ring = make([]*Ticket, 16)
	q.head, q.tail = first, first
}

func (q *ticketQueue) push(t *Ticket) {
	if q.tail-q.head == uint64(len(q.ring)) {
		nr := make([]*Ticket, 2*len(q.ring))
		for id := q.head; id < q.tail; id++ {
			nr[id&uint64(len(nr)-1)] = q.ring[id&uint64(len(q.ring)-1)]
		}
		q.ring = nr
	}
	q.ring[q.tail&uint64(len(q.ring)-1)] = t
	q.tail++
}

// pop removes the last ticket pushed.
func (q *ticketQueue) pop() {
	q.tail--
	q.ring[q.tail&uint64(len(q.ring)-1)] = nil
}

func (q *ticketQueue) at(id uint64) *Ticket {
	if id < q.head || id >= q.tail {
		return nil
	}
	return q.ring[id&uint64(len(q.ring)-1)]
}

// drop forgets the tickets up to id.
func (q *ticketQueue) drop(id uint64) {
	for q.head <= id && q.head < q.tail {
		q.ring[q.head&uint64(len(q.ring)-1)] = nil
		q.head++
	}
}
