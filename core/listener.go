package core

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	sem    chan struct{} // one token per handshake under way
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and handshakes

	mu         sync.Mutex // lock order: Session.mu before Listener.mu
	sessions   map[uint64]*Session
	handshakes map[net.Conn]struct{}
	closed     bool
}

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
		sem:        make(chan struct{}, cfg.MaxHandshakes),
		sessions:   make(map[uint64]*Session),
		handshakes: make(map[net.Conn]struct{}),
	}
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
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.ctx.Done():
		return nil, fmt.Errorf("ftsl/core: accept: %w", net.ErrClosed)
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
	for c := range l.handshakes {
		_ = c.Close()
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
		select {
		case l.sem <- struct{}{}:
		default:
			// Too many handshakes at once (a flood of half-open connections, say): drop it.
			l.log.Warn().Str("remote", c.RemoteAddr().String()).Msg("too many handshakes; connection dropped")
			_ = c.Close()
			continue
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = c.Close()
			<-l.sem
			return
		}
		l.handshakes[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			l.serverHandshake(c)
			l.mu.Lock()
			delete(l.handshakes, c)
			l.mu.Unlock()
			<-l.sem
		}()
	}
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
