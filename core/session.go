package core

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/rs/zerolog"
)

// State is where a session is in its life.
type State int32

// Session states.
const (
	// StateConnected: a connection is up and carrying the session.
	StateConnected State = iota + 1
	// StateDisconnected: the connection died. A client is reconnecting; a server waits for the
	// client to resume, for at most ResumeWindow. Send still buffers.
	StateDisconnected
	// StateClosing: Close was called on either side; no new messages are accepted.
	StateClosing
	// StateClosed: the session ended by Close or Abort, on either side.
	StateClosed
	// StateLost: the session ended because it could not be resumed.
	StateLost
	// StateMoved: the server's listener exported the session (Listener.Export); it carries on
	// in the process that imported it. This copy is inert: its calls fail with ErrSessionMoved.
	// Observers hear it last, after every note the session made before the export, and must
	// not take it as an end of the session's messages: they moved with it.
	StateMoved
)

func (s State) String() string {
	switch s {
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateClosing:
		return "closing"
	case StateClosed:
		return "closed"
	case StateLost:
		return "lost"
	case StateMoved:
		return "moved"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

func (s State) ended() bool { return s == StateClosed || s == StateLost || s == StateMoved }

// Progress is how far the peer has got with the messages this side sent. Every field is a
// message ID and only grows: all messages up to it reached that stage.
type Progress struct {
	// Acked: the peer's session layer has every packet of these messages; they left the sent buffer.
	Acked uint64
	// Delivered: the peer application was handed these messages (dMID).
	Delivered uint64
	// Processed: the peer application settled these messages (pMID): confirmed, or failed (and
	// then Observer.Failed was called first), or they did not ask for AckProcessed.
	Processed uint64
}

// Observer hears what becomes of a session's sent messages, and of the session. The layers
// above core (oneway, pubsub) implement it. Calls for one session come one at a time, in the
// order things happened, from the session's own goroutines or from the goroutine that changed
// its state; they must return quickly and must not call Send.
type Observer interface {
	// Progress reports that the peer's progress moved.
	Progress(p Progress)
	// Failed reports that the peer application failed message mid for good. It comes before
	// the Progress whose Processed covers mid, exactly once, even across connection crashes.
	Failed(mid uint64, reason string)
	// StateChanged reports a new state; err says why a session ended (nil after a clean Close).
	StateChanged(st State, err error)
}

// Stats are a session's counters. The buffers grow on demand up to their bounds; after a
// heartbeat interval with nothing to send, or nothing coming, and at once when the connection
// is lost, an emptied buffer gives its memory back.
type Stats struct {
	MessagesSent, MessagesReceived uint64        // whole messages, accepted by Send / returned by Recv
	BytesSent, BytesReceived       uint64        // message bytes, headers excluded
	FramesResent                   uint64        // DATA frames sent again after a connection broke
	Reconnects                     uint64        // connections after the first one
	SendBuffered, RecvBuffered     int           // bytes in the sent and received buffers now
	BufferMemory                   int           // bytes those buffers have allocated
	RTT                            time.Duration // the last heartbeat's round trip
	ObserverPanics                 uint64        // observer calls that panicked (and were recovered)
}

// Session is one end of an FTSL session: a message stream each way that outlives any number
// of TCP connections. Get one from Dial (client) or Listener.Accept (server); once connected
// both ends are the same. All methods are safe for concurrent use.
type Session struct {
	cfg    *Config // shared with the listener's other sessions: never changed
	log    zerolog.Logger
	client bool
	name   string    // client: the address given to Dial, asked of the Resolver
	lis    *Listener // server: the listener that owns it
	id     uint64
	token  [tokenLen]byte

	kick     chan struct{} // wakes the writer; capacity 1
	timer    *time.Timer   // the writer's alarm: delayed acks and heartbeats; reset under mu
	recvKick chan struct{} // wakes a Recv waiting for a message; capacity 1
	ended    chan struct{} // closed when the state becomes Closed or Lost
	done     chan struct{} // closed once ended and every goroutine of the session returned
	ctx      context.Context
	cancel   context.CancelFunc // cancels ctx when the session ends: stops reconnect attempts
	// resumeSem lets one resume at a time work on a server session.
	resumeSem chan struct{}

	// rd is the receive state that the reader goroutine of the current link owns. Nothing else
	// touches it while a reader runs; between links, the handshake code does, holding mu. It sits
	// on cache lines of its own: the reader runs on another core than Recv and Send.
	_  cacheLinePad
	rd readState
	_  cacheLinePad

	mu sync.Mutex
	// Everything below is guarded by mu.

	state State
	err   error       // why the session ended
	obs   []*Observer // replaced, never modified, when one is added or removed; empty: notes are dropped
	peer  peerParams
	link  *link // the current connection; nil while disconnected
	// The addresses and TLS state of the current connection, or of the last one while
	// disconnected.
	remote, local net.Addr
	tlsState      *tls.ConnectionState
	gen           uint64
	running       int // goroutines of this session that have not returned
	expiry        *time.Timer
	// resumeBusy: a resume is moving the session to a new connection; it must not expire.
	resumeBusy bool
	// unconfirmed, on a new server session, is closed when the first frame from the client
	// arrives: proof that the client got WELCOME. Accept hands out only confirmed sessions.
	unconfirmed chan struct{}

	// Send side. sbuf holds the DATA frames not yet acknowledged, exactly as they go on the
	// wire without ack block; offsets in it are credit cost offsets.
	sbuf     ring
	sHead    uint64 // offset of the oldest frame kept
	sTail    uint64 // end of the last frame appended
	sHeadPID uint64 // PID of the frame at sHead
	nextPID  uint64
	nextMID  uint64
	writeOff uint64 // next byte the writer sends on the current link
	// ackWait is when frames written on the current link last began waiting for an ack, or an ack
	// last moved while some waited: a peer that acknowledges nothing for DeadPeerTimeout while
	// frames wait is not reading, even if it keeps writing.
	ackWait     time.Time
	sentOff     uint64 // the writer is done with every byte below: its Write returned
	highOff     uint64 // end of everything ever handed to a Write: frames below it are resends
	peerAck     ackBlock
	ackedMID    uint64
	streamOpen  bool       // a MessageWriter is appending; other messages wait
	sentCharged int        // what sbuf took from the listener's budget (sendBudget)
	ext         []extFrame // the external frames in the sent buffer, from ext[extHead], in order
	extHead     int
	extTotal    uint64 // external payload bytes ever appended (the last ext frame's cum)
	extFreed    uint64 // ...and freed (the cum of the last one dropped)
	waiters     []*sendWaiter

	// Receive side. rbuf holds the messages' bytes from rHead to the reader's tail. Message mid
	// has descriptor mid-1 (every message gets one, in order, cancelled ones too). Descriptors
	// below dRel are released and their bytes free; [dRel, dTake) were handed out by Recv and are
	// settled or released in any order; [dTake, dDone) are complete and wait for Recv. dSettle
	// is the end of the settled prefix (pMID), dTake the last message handed out (dMID).
	rbuf                        ring
	rHead                       uint64 // start of message dRel+1's bytes
	rTake                       uint64 // start of message dTake+1's bytes
	rDone                       uint64
	descs                       []recDesc
	dRel, dSettle, dTake, dDone uint64
	held                        int // messages handed out and not yet settled
	maxInFlight                 int
	requeued                    []Message // held messages given back, handed out again first
	wrapBuf                     []byte    // Data of a message that straddles the ring's end
	wrapMID                     uint64    // the held message using wrapBuf, or 0
	rPID                        uint64    // published copies of the reader's counters
	recvCost                    uint64
	releasedCost                uint64 // cost of every message released; the credit we grant is this + window
	discard                     bool   // aborted: buffered messages are dropped
	recvWaiting                 int
	arrival                     func() // OnArrival's, called by the reader after a batch made messages ready
	fails                       []failReport
	failWritten                 int // how many of fails were written on the current link
	nextFSeq                    uint64
	peerFSeq                    uint64 // last FAIL sequence applied from the peer

	// Writer bookkeeping. One write at a time is under way on a link: the writer goroutine's, or
	// an inline one from Send (writingOn says on which link); pending is an inline batch (the
	// link's own) the socket could not take at once, which that link's writer finishes.
	writerIdle  bool
	writingOn   *link // the link a write is under way on, if any
	pending     *writeBatch
	pendingOn   *link
	alarmAt     time.Time // when the writer's timer rings
	sentAck     ackBlock  // the last ack block written on the current link
	sentAckCost uint64    // recvCost when it was written
	ackPending  bool      // ack state moved since sentAck
	ackUrgent   bool      // ...and should go now
	ackDue      time.Time
	lastWrite   time.Time
	pongPending bool
	pongValue   uint64
	pingSent    time.Time
	closing     closing
	abortFrame  []byte // ABORT to write, then drop the link: set when the session ends with one
	// deferIn is the Flusher whose Flush wakes the writer for frames that deferred sends
	// appended (nil if none waits); deferBytes is their cost since the writer was last woken.
	deferIn    *Flusher
	deferBytes uint64

	notes     []note
	spare     []note
	notifying bool

	stats Stats

	// Migration and the accept queue (export.go, listener.go).
	accepted bool // Accept handed the session to the application
	// acceptOnResume: the application has not accepted the session yet, and it is not in the
	// accept queue: it goes there when its client resumes, which proves the client has it. It
	// holds a place in the queue meanwhile.
	acceptOnResume bool
	streamLevel    AckLevel // the open MessageWriter's level: an export cancels the message with it
	peerOffer      hello    // what the peer offered in its handshake: an import settles it again
	paused         bool     // its listener paused it (and set resumeBusy, which stops the resume window)
}

type cacheLinePad [64]byte

// closing is where a session is in its graceful close (PROTOCOL.md: CLOSE and CLOSED).
type closing uint8

const (
	notClosing  closing = iota
	closeWanted         // Close was called here: CLOSE goes once everything sent is acknowledged
	closeSent           // ...and went on this connection: the peer's CLOSED ends the session
	peerClosing         // the peer sent CLOSE: CLOSED goes once everything is acknowledged, and ends the session
	bothWanted          // both sides closed at once: CLOSE, and CLOSED for the peer's; then as closeSent
	bothSent            // ...our CLOSE went on this connection: CLOSED for the peer's is still owed
)

// local reports whether Close was called on this side.
func (c closing) local() bool { return c != notClosing && c != peerClosing }

// closeCalled is the phase once Close is called here.
func (c closing) closeCalled() closing {
	switch c {
	case notClosing:
		return closeWanted
	case peerClosing:
		return bothWanted
	}
	return c
}

// closeReceived is the phase once the peer's CLOSE arrives.
func (c closing) closeReceived() closing {
	switch c {
	case notClosing:
		return peerClosing
	case closeWanted:
		return bothWanted
	case closeSent:
		return bothSent
	}
	return c
}

// newConnection is the phase on a new connection: a CLOSE written on the old one goes again.
func (c closing) newConnection() closing {
	switch c {
	case closeSent:
		return closeWanted
	case bothSent:
		return bothWanted
	}
	return c
}

// peerParams is what the handshake settled.
type peerParams struct {
	version    uint8
	maxMessage int           // largest message this side may send
	window     uint64        // credit this side grants
	heartbeat  time.Duration // write something at least this often
	deadPeer   time.Duration // declare the link dead after this much silence
	ackBytes   uint64        // ack at once when this much arrived since the last ack
}

type sendWaiter struct {
	ch     chan struct{}
	need   uint64
	stream bool // the open MessageWriter, which goes first
}

type noteKind uint8

const (
	noteProgress noteKind = iota
	noteFailed
	noteState
)

type note struct {
	kind   noteKind
	p      Progress
	mid    uint64
	reason string
	state  State
	err    error
}

// recDesc flags besides the level bits.
const (
	abortGrace      = 200 * time.Millisecond
	ackUrgentFactor = 4 // acks that free a quarter of a window go at once
)

func newSession(cfg *Config, client bool) *Session {
	s := &Session{
		cfg:         cfg,
		log:         cfg.Logger,
		client:      client,
		kick:        make(chan struct{}, 1),
		recvKick:    make(chan struct{}, 1),
		resumeSem:   make(chan struct{}, 1),
		ended:       make(chan struct{}),
		done:        make(chan struct{}),
		nextPID:     1,
		nextMID:     1,
		sHeadPID:    1,
		nextFSeq:    1,
		state:       StateConnected,
		maxInFlight: cfg.MaxInFlight,
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.timer = time.NewTimer(time.Hour)
	s.timer.Stop()
	return s
}

// setPeer applies what the handshake settled. Called with mu held, or before the session is shared.
func (s *Session) setPeer(version uint8, h hello) {
	s.peerOffer = h
	s.peer = peerParams{
		version:    version,
		maxMessage: int(min(uint32(s.cfg.MaxMessageSize), h.maxMessage)), // int(u32) overflows on 32-bit
		window:     uint64(s.cfg.ReceiveBufferBytes),
		deadPeer:   s.cfg.DeadPeerTimeout,
		heartbeat:  min(s.cfg.HeartbeatInterval, max(time.Duration(h.deadPeerMs)*time.Millisecond/3, s.cfg.HeartbeatFloor)),
		// A quarter of what the peer can have in flight: it never waits on a delayed ack.
		ackBytes: min(uint64(s.cfg.ReceiveBufferBytes), uint64(h.sendBuffer)) / ackUrgentFactor,
	}
}

// ID is the session ID the server gave the session: the same on both ends, for its whole life.
func (s *Session) ID() uint64 { return s.id }

// State reports the session's state now.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Err reports why the session ended: nil while it lives and after a clean Close, an error
// matching ErrSessionClosed or ErrSessionLost otherwise.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == StateClosed && s.closing.local() && errors.Is(s.err, errClosedCleanly) {
		return nil
	}
	return s.err
}

// Done is closed when the session has ended and all its goroutines have returned.
func (s *Session) Done() <-chan struct{} { return s.done }

// RemoteAddr is the peer's address on the current connection, or on the last one while the
// session is disconnected. A client that reconnects may come from another address.
func (s *Session) RemoteAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remote
}

// LocalAddr is this side's address on the current connection, or on the last one.
func (s *Session) LocalAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.local
}

// ConnectionState is the TLS state of the current connection, or of the last one, and false if
// the session does not use TLS. With mutual TLS, a server finds the client's certificates in
// PeerCertificates (and VerifiedChains) to tell who the client is. A client that resumes may
// present other certificates on its new connection: the state is the latest one's.
func (s *Session) ConnectionState() (tls.ConnectionState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tlsState == nil {
		return tls.ConnectionState{}, false
	}
	return *s.tlsState, true
}

// Stats returns the session's counters.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.SendBuffered = int(s.bufferedLocked())
	st.RecvBuffered = int(s.rDone - s.rHead)
	st.BufferMemory = len(s.sbuf.buf) + len(s.rbuf.buf) + len(s.descs)*recDescSize
	return st
}

// Observe adds o to the observers that hear of the session's progress and state, and returns a
// function that removes it. Add it before the first Send, so no progress is missed; a session
// reports no progress on messages it did not send. Each layer above core and the application may
// observe side by side: each observer hears every note, in the order they happened, one observer
// at a time. An observer that panics is logged and counted (Stats.ObserverPanics); the session
// and the other observers carry on.
func (s *Session) Observe(o Observer) (remove func()) {
	p := &o // the pointer identifies this registration, even if o is added twice
	s.mu.Lock()
	s.obs = append(s.obs[:len(s.obs):len(s.obs)], p)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, x := range s.obs {
			if x == p {
				obs := make([]*Observer, 0, len(s.obs)-1)
				s.obs = append(append(obs, s.obs[:i]...), s.obs[i+1:]...)
				return
			}
		}
	}
}

// once if urgent.
func (s *Session) ackMovedLocked(urgent bool) {
	if urgent && !s.ackUrgent {
		s.ackUrgent = true
		s.ackPending = true
		s.wakeWriterLocked()
		return
	}
	if !s.ackPending {
		s.ackPending = true
		if s.writerIdle && s.link != nil {
			// Rather than wake the writer now only for it to go back to sleep until the ack is
			// due, move its alarm: a busy writer sees the change on its own next pass.
			now := time.Now()
			if s.ackDue.IsZero() {
				s.ackDue = now.Add(s.cfg.AckDelay)
			}
			if s.alarmAt.After(s.ackDue) {
				s.setAlarmLocked(now, s.ackDue.Sub(now))
			}
		}
	}
}

// Close ends the session gracefully: it stops new messages, waits until the peer acknowledged
// everything sent (reconnecting if need be), tells the peer, and waits for its answer. If ctx
// ends first, the session is aborted and ctx's error returned. Messages received and not read
// stay readable by Recv. Close is safe to call twice and from any goroutine.
func (s *Session) Close(ctx context.Context) error {
	s.startClose()
	select {
	case <-s.ended:
	case <-ctx.Done():
		s.abort(abortByApplication, "close timed out")
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == StateClosed && (errors.Is(s.err, errClosedCleanly) || errors.Is(s.err, errClosedByPeer)) {
		return nil
	}
	if s.state == StateLost && (s.closing == closeSent || s.closing == bothSent) && s.sHead == s.sTail {
		// The peer had everything and may have ended the session before its CLOSED reached us.
		return nil
	}
	return s.err
}

// startClose is Close's first half: no new messages; the writer sends CLOSE once drained.
func (s *Session) startClose() {
	s.mu.Lock()
	if !s.state.ended() {
		s.closing = s.closing.closeCalled()
		if s.state != StateClosing {
			s.setStateLocked(StateClosing, nil)
		}
		s.wakeSendersLocked()
		s.wakeWriterLocked()
	}
	s.unlockNotify()
}

// Abort ends the session at once: pending sends fail with ErrSessionClosed, buffered messages are
// dropped, and the peer is told if a connection is up. Safe to call twice and from any goroutine.
func (s *Session) Abort() { s.abort(abortByApplication, "aborted by the application") }

// Abort codes.
const (
	abortByApplication = 0
	abortProtocol      = 1
	abortListener      = 2
)

var (
	errClosedCleanly = ftslerr.Errorf("%w by Close", ErrSessionClosed)
	errClosedByPeer  = ftslerr.Errorf("%w by the peer", ErrSessionClosed)
	errAborted       = ftslerr.Errorf("%w: aborted by this side", ErrSessionClosed)
)

func (s *Session) abort(code uint16, reason string) {
	s.mu.Lock()
	if s.state.ended() {
		s.mu.Unlock()
		return
	}
	err := errAborted
	if code == abortProtocol {
		err = ftslerr.Errorf("%w: %s", ErrProtocol, reason)
	}
	s.discard = true
	s.endLocked(StateClosed, err, int(code), reason)
	s.unlockNotify()
}

// setStateLocked changes the state and queues the note.
func (s *Session) setStateLocked(st State, err error) {
	s.state = st
	s.noteLocked(note{kind: noteState, state: st, err: err})
}

// How endLocked treats the link: an abort code >= 0 sends ABORT first, then closes it.
const (
	endDrop = -1 // close the link now
	endKeep = -2 // the writer closes it after what it is writing
)

// endLocked ends the session. If how >= 0 and a link is up, the writer sends ABORT with that code.
func (s *Session) endLocked(st State, err error, how int, reason string) {
	if s.state.ended() {
		return
	}
	s.err = err
	s.setStateLocked(st, cleanErr(err))
	close(s.ended)
	s.cancel()
	if s.expiry != nil {
		s.expiry.Stop()
	}
	for _, w := range s.waiters {
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
	if l := s.link; l != nil && how != endKeep {
		if how >= 0 {
			s.abortFrame = appendCodeReason(nil, frameAbort, uint16(how), reason)
			_ = l.conn.SetWriteDeadline(time.Now().Add(abortGrace))
			s.wakeWriterLocked()
			select { // the writer may be busy: make sure it looks again
			case s.kick <- struct{}{}:
			default:
			}
		} else {
			l.fail(err)
		}
	}
	s.releaseSentBudgetLocked() // nothing will be sent again
	if s.lis != nil {
		s.lis.forget(s)
	}
	s.log.Debug().Uint64("session", s.id).Str("state", st.String()).AnErr("err", err).Msg("session ended")
	if s.running == 0 {
		close(s.done)
	}
}

// cleanErr is what observers hear: nil for a clean local close.
func cleanErr(err error) error {
	if err == errClosedCleanly {
		return nil
	}
	return err
}

// goroutineExited is called by each of the session's goroutines as it returns.
func (s *Session) goroutineExited() {
	s.mu.Lock()
	s.running--
	if s.running == 0 && s.state.ended() {
		close(s.done)
	}
	s.mu.Unlock()
}

// releaseDetachedLocked gives back, once the session lost its connection, the buffers it does
// not need: a detached session has no writer to do it after a heartbeat, and a server may hold
// thousands of them waiting for their clients. What a resume needs stays: the frames not
// acknowledged, and the messages the application has not finished with (a half-received one
// included). Called with mu held, once the link's goroutines have returned.
func (s *Session) releaseDetachedLocked() {
	s.pending, s.pendingOn = nil, nil // a batch for a dead connection: it holds that link's memory
	if s.sHead == s.sTail && !s.streamOpen {
		s.dropSentRingLocked()
	}
	rd := &s.rd
	rd.restart() // a frame half read is sent again whole on the next connection
	if !rd.inMsg && s.dRel == rd.dTail && s.held == 0 && (rd.ring.buf != nil || rd.descs != nil) {
		rd.ring, rd.descs = ring{}, nil
		s.rbuf, s.descs = rd.ring, rd.descs
		s.wrapBuf = nil
		s.refreshViewLocked()
	}
}

// noteLocked queues a note for the observer. Progress notes merge, since they are cumulative.
func (s *Session) noteLocked(n note) {
	if len(s.obs) == 0 {
		return
	}
	if n.kind == noteProgress && len(s.notes) > 0 && s.notes[len(s.notes)-1].kind == noteProgress {
		s.notes[len(s.notes)-1] = n
		return
	}
	s.notes = append(s.notes, n)
}

// unlockNotify delivers queued notes, in order and one goroutine at a time, without holding mu,
// and unlocks. Whoever finds notes queued and nobody delivering becomes the deliverer.
func (s *Session) unlockNotify() {
	for len(s.notes) > 0 && !s.notifying && len(s.obs) > 0 {
		s.notifying = true
		notes, obs := s.notes, s.obs
		s.notes = s.spare[:0]
		s.mu.Unlock()
		panics := 0
		for i := range notes {
			for _, o := range obs {
				if !s.tell(*o, &notes[i]) {
					panics++
				}
			}
			notes[i] = note{}
		}
		s.mu.Lock()
		s.stats.ObserverPanics += uint64(panics)
		s.spare = notes[:0]
		s.notifying = false
	}
	s.mu.Unlock()
}

// tell gives one note to one observer. It reports false if the observer panicked: the panic is
// logged, not re-thrown, since it would take down the goroutine that happened to deliver the note
// (the connection's reader, say) and with it the session.
func (s *Session) tell(o Observer, n *note) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			ok = false
			s.log.Error().Uint64("session", s.id).Str("panic", fmt.Sprint(r)).Bytes("stack", debug.Stack()).
				Msg("session observer panicked")
		}
	}()
	switch n.kind {
	case noteProgress:
		o.Progress(n.p)
	case noteFailed:
		o.Failed(n.mid, n.reason)
	case noteState:
		o.StateChanged(n.state, n.err)
	}
	return true
}

// newID returns a random nonzero session ID.
func newID() uint64 {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

func newToken() (t [tokenLen]byte) {
	_, _ = rand.Read(t[:])
	return t
}
