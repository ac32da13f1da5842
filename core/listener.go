package core

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

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

	mu         sync.Mutex // lock order: Session.mu before Listener.mu
	sessions   map[uint64]*Session
	handshakes map[*handshake]struct{} // every handshake goroutine running, evicted or not
	places     int                     // handshakes not evicted: those that count against MaxHandshakes
	sources    map[netip.Addr]*source  // the sources with a handshake that holds a place
	closed     bool
}

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
	}
	l.sendMem.limit = int64(cfg.MaxSendMemory)
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// Addr is the address the listener listens on.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Accept waits for a new session. Resumed sessions never come out of Accept: they carry on
// where they were.
func (l *Listener) Accept(ctx context.Context) (*Session, error) {
	select {
	case s := <-l.accept:
		<-l.backlog
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.ctx.Done():
		return nil, fmt.Errorf("ftsl: accept: %w", net.ErrClosed)
	}
}

// Sessions reports how many sessions the listener holds, connected or waiting for a resume.
func (l *Listener) Sessions() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sessions)
}

// Close stops listening and aborts every session of the listener (their peers are told), then
// waits for their goroutines to return. Safe to call twice.
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

// register gives s a fresh session ID and adds it to the table, unless the listener is closed.
func (l *Listener) register(s *Session) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	for {
		id := newID()
		if _, taken := l.sessions[id]; !taken {
			s.id = id
			l.sessions[id] = s
			return true
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
}
