package core

import (
	"container/list"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/rs/zerolog"
)

// Listener accepts sessions on a server. It also owns every session it accepted: it takes their
// resumes on new connections and forgets them when they end or expire.
type Listener struct {
	cfg    Config
	ln     net.Listener
	log    zerolog.Logger
	accept chan *Session
	// backlog holds one token per new session in accept or on its way there, taken before the
	// session is made, so a session that got WELCOME always finds room in accept.
	backlog chan struct{}
	busy    chan struct{} // one token per busy answer under way
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the accept loop, handshakes and busy answers
	// quiet rate-limits the log about strangers (connections not yet a client): [0] warnings,
	// [1] debug lines, so a flood of failed handshakes does not hide the warnings.
	quiet [2]logLimiter

	sendMem memBudget // the sessions' sent buffers, bounded by MaxSendMemory

	// moveMu makes Pause, Continue, Export and Shutdown take turns. Lock order: moveMu first.
	moveMu sync.Mutex

	mu         sync.Mutex // lock order: Session.mu before Listener.mu
	sessions   map[uint64]*Session
	handshakes map[*handshake]struct{} // every handshake goroutine running, evicted or not
	places     int                     // handshakes not evicted: those that count against MaxHandshakes
	sources    map[netip.Addr]*source  // the sources with a handshake that holds a place
	closed     bool
	phase      phase
	// working counts the handshakes past the phase check (enterHandshake): those that may still
	// change a session. Pause waits for it to drop to zero; idle is closed when it does.
	working int
	idle    chan struct{}
	// pausing is closed when a pause begins: a new session waiting for its client's first frame
	// stops waiting (openSession).
	pausing chan struct{}
}

// phase is where a listener is between serving, migration and shutdown.
type phase uint8

const (
	phaseServing  phase = iota
	phasePausing        // Pause began (and may have returned early): handshakes are refused
	phasePaused         // Pause completed: nothing changes the sessions' protocol state
	phaseExported       // Export was taken: the sessions live elsewhere
	phaseShutdown       // Shutdown: no new sessions; resumes are taken, so sessions can close
)

// handshake is an accepted connection that carries no session yet. Its fields after c are
// guarded by Listener.mu.
type handshake struct {
	c       net.Conn // the accepted connection, beneath TLS if any: closing it ends the handshake
	src     netip.Addr
	start   time.Time
	fresh   *list.Element // in its source's fresh list until the first frame comes
	evicted bool
}

// source is one remote address's share of the handshakes.
type source struct {
	places int
	fresh  list.List // its *handshake that sent no first frame yet, oldest first
}

// busyLinger bounds how long a busy answer waits for the client to read it and hang up.
const busyLinger = time.Second

// minSpare is the least number of goroutines a listener keeps for busy answers under way, and
// for evicted handshakes winding down, however small MaxHandshakes: a listener with few
// handshakes is the one that answers busy and evicts most.
const minSpare = 64

// busyDrain bounds the bytes a busy answer reads and discards meanwhile: a HELLO, a RESUME or a
// TLS ClientHello fit many times over.
const busyDrain = 16 << 10

// Listen listens on the TCP address addr and accepts sessions there.
func Listen(addr string, cfg Config) (*Listener, error) {
	if _, err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l, err := NewListener(ln, cfg)
	if err != nil {
		_ = ln.Close()
	}
	return l, err
}

// NewListener accepts sessions on connections from ln, which it closes when it is closed.
func NewListener(ln net.Listener, cfg Config) (*Listener, error) {
	l, err := newListener(ln, cfg)
	if err != nil {
		return nil, err
	}
	l.start()
	return l, nil
}

// newListener makes a listener that does not serve yet: start does that.
func newListener(ln net.Listener, cfg Config) (*Listener, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Listener{
		cfg:        cfg,
		ln:         ln,
		log:        cfg.Logger,
		accept:     make(chan *Session, cfg.AcceptBacklog),
		backlog:    make(chan struct{}, cfg.AcceptBacklog),
		busy:       make(chan struct{}, max(cfg.MaxHandshakes, minSpare)),
		sessions:   make(map[uint64]*Session),
		handshakes: make(map[*handshake]struct{}),
		sources:    make(map[netip.Addr]*source),
		pausing:    make(chan struct{}),
	}
	l.sendMem.limit = int64(cfg.MaxSendMemory)
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l, nil
}

func (l *Listener) start() {
	l.wg.Add(1)
	go l.acceptLoop()
}

// Addr is the address the listener listens on.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Accept waits for a new session. Resumed sessions never come out of Accept: they carry on
// where they were. A session imported (NewListenerFrom) that the application of the exporting
// listener had not accepted yet comes out of Accept once its client has resumed.
func (l *Listener) Accept(ctx context.Context) (*Session, error) {
	for {
		select {
		case s := <-l.accept:
			<-l.backlog
			if s.markAccepted() {
				return s, nil
			}
			// Exported while it waited here: it is the importer's to accept.
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-l.ctx.Done():
			return nil, ftslerr.Errorf("ftsl: accept: %w", net.ErrClosed)
		}
	}
}

// markAccepted records that Accept hands s out, unless s moved away.
func (s *Session) markAccepted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == StateMoved {
		return false
	}
	s.accepted = true
	return true
}

// Sessions reports how many sessions the listener holds, connected or waiting for a resume.
func (l *Listener) Sessions() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sessions)
}

// Close stops listening and aborts every session of the listener at once (their peers are
// told, and what they had not received is lost), then waits for their goroutines to return.
// Shutdown is the graceful way. Sessions exported (Export) are no longer the listener's:
// closing it afterwards tells their peers nothing, and they resume where the state was
// imported. Safe to call twice.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.cancel()
	err := l.ln.Close()
	for hs := range l.handshakes {
		_ = hs.c.Close()
	}
	sessions := make([]*Session, 0, len(l.sessions))
	for _, s := range l.sessions {
		sessions = append(sessions, s)
	}
	l.mu.Unlock()
	l.wg.Wait()
	for _, s := range sessions {
		s.abort(abortListener, "the server is shutting down")
	}
	for _, s := range sessions {
		<-s.Done()
	}
	for {
		select {
		case s := <-l.accept:
			<-s.Done() // aborted above: it was registered
		default:
			return err
		}
	}
}

// Shutdown ends the listener gracefully, where Close aborts: it stops taking new sessions
// (HELLO is refused as closing) and closes every session as Session.Close does, all at once,
// so each peer gets everything already sent, then CLOSE and CLOSED. Resumes are still taken
// meanwhile, so a session whose connection broke can finish too. Once every session has ended,
// or ctx ends first, Shutdown closes the listener as Close does, aborting the sessions still
// open; it returns ctx's error in the second case. Messages received and not read stay
// readable by Recv. A paused listener cannot reach its peers: Shutdown refuses it with
// ErrListenerPaused (Continue first, or Close). After Export, Shutdown is Close.
func (l *Listener) Shutdown(ctx context.Context) error {
	l.moveMu.Lock()
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		l.moveMu.Unlock()
		return nil
	case l.phase == phasePausing || l.phase == phasePaused:
		l.mu.Unlock()
		l.moveMu.Unlock()
		return ftslerr.Errorf("ftsl: shutdown: %w", ErrListenerPaused)
	case l.phase == phaseExported:
		l.mu.Unlock()
		l.moveMu.Unlock()
		return l.Close()
	}
	l.phase = phaseShutdown
	sessions := l.sessionsLocked() // register refuses new ones from now on
	l.mu.Unlock()
	l.moveMu.Unlock()
	// Start every close before waiting for any: they proceed side by side, with no goroutine of
	// their own.
	for _, s := range sessions {
		s.startClose()
	}
	for _, s := range sessions {
		select {
		case <-s.ended:
		case <-ctx.Done():
			_ = l.Close()
			return ftslerr.Errorf("ftsl: shutdown: %w", ctx.Err())
		}
	}
	return l.Close()
}

// Pause freezes the listener for a migration (PAPER III-C: no state may follow the
// checkpoint). It closes every session's connection without a word to the peer (no ABORT, no
// CLOSE), as a network failure would; clients then try to resume. While paused, a RESUME is
// answered RejectMoving (the client keeps its session, asks its Resolver again and retries) and
// a HELLO is refused as busy. Pause returns once no handshake is under way and every session's
// reader and writer have returned: from then on nothing but the application changes the
// sessions' state, and no timer runs (resume windows and heartbeats are stopped). If ctx ends
// first, Pause returns its error and the listener stays pausing: call Pause again to wait, or
// Continue.
//
// The application may go on using a paused session: Send and MessageWriter fill the sent
// buffer (and block when it is full), Recv returns the messages already received, Settle and
// Requeue record their verdicts; Close waits. All of it is in what Export then takes. After
// Export, such calls fail with ErrSessionMoved. Export cancels a MessageWriter still open.
// Then Export the state, or Continue to serve again here.
func (l *Listener) Pause(ctx context.Context) error {
	l.moveMu.Lock()
	defer l.moveMu.Unlock()
	l.mu.Lock()
	switch {
	case l.closed || l.phase == phaseShutdown:
		l.mu.Unlock()
		return ftslerr.Errorf("ftsl: pause: %w", net.ErrClosed)
	case l.phase == phaseExported:
		l.mu.Unlock()
		return ftslerr.Errorf("ftsl: pause: %w", ErrSessionMoved)
	case l.phase == phasePaused:
		l.mu.Unlock()
		return nil
	case l.phase == phaseServing:
		l.phase = phasePausing
		close(l.pausing)
	}
	// Handshakes already past the check finish first: a resume under way starts its connection,
	// which is cut below.
	for l.working > 0 {
		if l.idle == nil {
			l.idle = make(chan struct{})
		}
		idle := l.idle
		l.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return ftslerr.Errorf("ftsl: pause: handshakes still under way: %w", ctx.Err())
		}
		l.mu.Lock()
	}
	sessions := l.sessionsLocked()
	l.mu.Unlock()
	var links []*link
	for _, s := range sessions {
		if k := s.pause(); k != nil {
			links = append(links, k)
		}
	}
	for _, k := range links {
		select {
		case <-k.done:
		case <-ctx.Done():
			return ftslerr.Errorf("ftsl: pause: connections still closing: %w", ctx.Err())
		}
	}
	l.mu.Lock()
	if l.phase == phasePausing {
		l.phase = phasePaused
	}
	l.mu.Unlock()
	return nil
}

// Continue undoes a pause, or starts a listener made by NewListenerFrom: the listener serves
// again, and each detached session waits for its client for a whole ResumeWindow from now. It
// fails with ErrSessionMoved once Export was taken. Without a pause it does nothing.
func (l *Listener) Continue() error {
	l.moveMu.Lock()
	defer l.moveMu.Unlock()
	l.mu.Lock()
	switch l.phase {
	case phaseExported:
		l.mu.Unlock()
		return ftslerr.Errorf("ftsl: continue: the sessions were exported: %w", ErrSessionMoved)
	case phasePausing, phasePaused:
	default:
		l.mu.Unlock()
		return nil
	}
	sessions := l.sessionsLocked()
	l.mu.Unlock()
	// Still pausing, so no resume can work on a session while its window is rearmed.
	for _, s := range sessions {
		s.unpause()
	}
	l.mu.Lock()
	l.phase = phaseServing
	l.pausing = make(chan struct{})
	l.mu.Unlock()
	return nil
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http does, then retry.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn().Err(err).Dur("retry_in", delay).Msg("accept failed")
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		hs, evicted, busy, open := l.admit(c)
		if evicted != nil {
			// An abortive close (RST): the kernel keeps no state for a stranger's connection.
			if lc, ok := evicted.c.(interface{ SetLinger(int) error }); ok {
				_ = lc.SetLinger(0)
			}
			_ = evicted.c.Close()
			if e := l.stranger(zerolog.WarnLevel); e != nil {
				e.Str("remote", evicted.c.RemoteAddr().String()).Dur("age", time.Since(evicted.start)).
					Msg("too many handshakes; evicted one without a first frame")
			}
		}
		switch {
		case !open:
			_ = c.Close()
			return
		case hs != nil:
			go func() {
				defer l.wg.Done()
				l.serverHandshake(hs)
				l.release(hs)
			}()
		case busy != "":
			if e := l.stranger(zerolog.WarnLevel); e != nil {
				e.Str("remote", c.RemoteAddr().String()).Msg(busy + "; connection refused as busy")
			}
			l.answerBusy(c, busy)
		default:
			if e := l.stranger(zerolog.WarnLevel); e != nil {
				e.Str("remote", c.RemoteAddr().String()).Msg("too many handshakes winding down; connection closed")
			}
			_ = c.Close()
		}
	}
}

// admit gives c a place among the handshakes. If c's source has no place left, its oldest
// handshake that has sent no first frame yet gives up its place; if the listener has none left,
// the source holding the most places gives up one so (evictionLocked). admit returns the
// evicted handshake, for the caller to close outside the lock. A handshake that sent its first
// frame is a client at work and keeps its place; if no place can be freed, admit returns no
// handshake and why c must be refused as busy. While the goroutines of evicted handshakes are
// still winding down, as many as MaxHandshakes (or minSpare), it returns neither handshake nor
// reason: c is to be closed unanswered, as a busy answer would take a goroutine too. open is
// false once the listener is closed.
func (l *Listener) admit(c net.Conn) (hs, evicted *handshake, busy string, open bool) {
	src := sourceOf(c)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, nil, "", false
	}
	if len(l.handshakes)-l.places >= max(l.cfg.MaxHandshakes, minSpare) {
		return nil, nil, "", true
	}
	sh := l.sources[src]
	switch {
	case sh != nil && sh.places >= l.cfg.MaxHandshakesPerSource:
		if sh.fresh.Len() == 0 {
			return nil, nil, "too many handshakes from this address", true
		}
		evicted = sh.fresh.Front().Value.(*handshake)
	case l.places >= l.cfg.MaxHandshakes:
		if evicted = l.evictionLocked(); evicted == nil {
			return nil, nil, "too many handshakes", true
		}
	}
	if evicted != nil {
		evicted.evicted = true
		l.leaveLocked(evicted)
		sh = l.sources[src] // evicting may have emptied and dropped it
	}
	if sh == nil {
		sh = &source{}
		l.sources[src] = sh
	}
	hs = &handshake{c: c, src: src, start: time.Now()}
	hs.fresh = sh.fresh.PushBack(hs)
	sh.places++
	l.places++
	l.handshakes[hs] = struct{}{}
	l.wg.Add(1)
	return hs, evicted, "", true
}

// evictionLocked picks the handshake to evict when the listener is full: the oldest without a
// first frame of the source that holds the most places (of two that hold as many, the one whose
// such handshake is older). Taking from the heaviest source rather than the oldest handshake of
// all keeps a flood from a few addresses, however fast, from evicting other addresses' clients
// before they could speak; a flood from many addresses with a place or two each comes down to
// the oldest of all. The scan is over at most MaxHandshakes sources.
func (l *Listener) evictionLocked() *handshake {
	var heaviest *source
	var oldest *handshake
	for _, sh := range l.sources {
		if sh.fresh.Len() == 0 {
			continue
		}
		hs := sh.fresh.Front().Value.(*handshake)
		if heaviest == nil || sh.places > heaviest.places ||
			sh.places == heaviest.places && hs.start.Before(oldest.start) {
			heaviest, oldest = sh, hs
		}
	}
	return oldest
}

// leaveLocked gives up hs's place: once, when it is evicted or its goroutine returns.
func (l *Listener) leaveLocked(hs *handshake) {
	sh := l.sources[hs.src]
	sh.settle(hs)
	l.places--
	if sh.places--; sh.places == 0 {
		delete(l.sources, hs.src)
	}
}

// settle takes hs off sh's list of handshakes that may be evicted. Called with Listener.mu held.
func (sh *source) settle(hs *handshake) {
	if hs.fresh != nil {
		sh.fresh.Remove(hs.fresh)
		hs.fresh = nil
	}
}

// firstFrame records that hs read a valid first frame, so it is never evicted from then on. It
// reports false if hs was evicted already: its connection is closed, and the handshake is over.
func (l *Listener) firstFrame(hs *handshake) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if hs.evicted {
		return false
	}
	l.sources[hs.src].settle(hs)
	return true
}

// release forgets hs once its goroutine is done with it.
func (l *Listener) release(hs *handshake) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.handshakes, hs)
	if !hs.evicted {
		l.leaveLocked(hs)
	}
}

// sourceOf is the address a connection counts against for MaxHandshakesPerSource: the remote IP,
// whatever the port. Connections that are not TCP (pipes in tests) all share one source.
func sourceOf(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// answerBusy refuses c as busy without having read its first frame, in a way the client can
// read. Closing a socket that holds unread bytes (the client's HELLO or TLS ClientHello, sent
// without waiting) makes the kernel send RST, and a client hit by RST reports "connection reset"
// and may lose the REJECT it had not read yet. So REJECT is followed by FIN alone, and what the
// client sends is read and thrown away until it hangs up (it has read REJECT then), for at most
// busyLinger and busyDrain bytes. The REJECT goes in the clear even on a TLS listener: answering
// inside TLS would mean running the very handshake being refused; a TLS client recognises it
// (plainBusy). Busy answers are bounded like handshakes; beyond MaxHandshakes of them (or
// minSpare) the connection is just closed, which the client retries as well.
func (l *Listener) answerBusy(c net.Conn, reason string) {
	select {
	case l.busy <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	l.wg.Add(1) // the accept loop holds the group, so Close is not past Wait yet
	go func() {
		defer l.wg.Done()
		stop := context.AfterFunc(l.ctx, func() { _ = c.Close() })
		defer stop()
		_ = c.SetDeadline(time.Now().Add(min(busyLinger, l.cfg.FirstFrameTimeout)))
		if writeAll(c, appendCodeReason(nil, frameReject, uint16(RejectBusy), reason)) == nil {
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			_, _ = io.CopyN(io.Discard, c, busyDrain)
		}
		_ = c.Close()
		<-l.busy
	}()
}

// reserveBacklog takes a place in the accept queue for a session about to be made. The caller
// gives it back with releaseBacklog if the session never reaches the queue; Accept gives it back
// when it takes the session out.
func (l *Listener) reserveBacklog() bool {
	select {
	case l.backlog <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l *Listener) releaseBacklog() { <-l.backlog }

// stranger returns an event at level lvl (warn or debug) for the log about a connection that is
// not a client yet, or nil, which logs nothing, when too many came lately. The next event let
// through says how many were held back.
func (l *Listener) stranger(lvl zerolog.Level) *zerolog.Event {
	lim := &l.quiet[0]
	if lvl < zerolog.WarnLevel {
		lim = &l.quiet[1]
	}
	ok, held := lim.allow(time.Now())
	if !ok {
		return nil
	}
	e := l.log.WithLevel(lvl)
	if held > 0 {
		e = e.Int("suppressed", held)
	}
	return e
}

// logLimiter lets logBurst lines through per logPeriod and counts the rest: zerolog's
// BurstSampler does the same but cannot say how many it dropped.
type logLimiter struct {
	mu    sync.Mutex
	start time.Time // of the current period
	n     int       // lines let through in it
	held  int       // lines held back since the last one let through
}

const (
	logBurst  = 10
	logPeriod = time.Second
)

// allow reports whether a line may be logged at now, and how many were held back before it.
func (r *logLimiter) allow(now time.Time) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.start) >= logPeriod {
		r.start, r.n = now, 0
	}
	if r.n >= logBurst {
		r.held++
		return false, 0
	}
	r.n++
	held := r.held
	r.held = 0
	return true, held
}

// register gives s a fresh session ID and adds it to the table. If it cannot, it says why: the
// listener is closing, pausing, or holds MaxSessions.
func (l *Listener) register(s *Session) (RejectCode, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed || l.phase == phaseShutdown:
		return RejectClosed, "the listener is closing"
	case l.phase != phaseServing:
		return RejectBusy, "the server is moving; try again shortly"
	case len(l.sessions) >= l.cfg.MaxSessions:
		return RejectBusy, "too many sessions"
	}
	for {
		id := newID()
		if _, taken := l.sessions[id]; !taken {
			s.id = id
			l.sessions[id] = s
			return 0, ""
		}
	}
}

func (l *Listener) lookup(id uint64) *Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sessions[id]
}

// forget removes an ended session. Called with s.mu held (lock order: Session, then Listener).
func (l *Listener) forget(s *Session) {
	l.mu.Lock()
	if l.sessions[s.id] == s {
		delete(l.sessions, s.id)
	}
	l.mu.Unlock()
	if s.acceptOnResume {
		// It never reached the accept queue: give back the place it held there.
		s.acceptOnResume = false
		select {
		case <-l.backlog:
		default:
		}
	}
}

// sessionsLocked lists the sessions the listener holds.
func (l *Listener) sessionsLocked() []*Session {
	out := make([]*Session, 0, len(l.sessions))
	for _, s := range l.sessions {
		out = append(out, s)
	}
	return out
}

// enterHandshake lets a handshake that read its first frame go on to work on sessions, or says
// how to refuse it: while the listener pauses or moves, a RESUME gets RejectMoving (the client
// keeps its session and asks its Resolver again) and a HELLO is busy; while it shuts down, a
// HELLO is refused as closing but a RESUME goes on, so its session can close gracefully. A
// handshake let through calls leaveHandshake when done. It gets the channel closed when a pause
// begins.
func (l *Listener) enterHandshake(hello bool) (<-chan struct{}, RejectCode, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch l.phase {
	case phasePausing, phasePaused, phaseExported:
		if hello {
			return nil, RejectBusy, "the server is moving; try again shortly"
		}
		return nil, RejectMoving, "the server is moving; ask where it is and try again"
	case phaseShutdown:
		if hello {
			return nil, RejectClosed, "the listener is shutting down"
		}
	}
	l.working++
	return l.pausing, 0, ""
}

func (l *Listener) leaveHandshake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.working--; l.working == 0 && l.idle != nil {
		close(l.idle)
		l.idle = nil
	}
}
