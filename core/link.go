package core

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// link is one TCP (or TLS) connection carrying a session. A session has at most one at a time;
// each link has one reader and one writer goroutine.
type link struct {
	conn  net.Conn
	raw   *rawWriter // for non-blocking inline writes; nil unless conn is a plain TCP socket
	gen   uint64
	dead  chan struct{} // closed by fail
	done  chan struct{} // closed when both goroutines returned
	alive atomic.Int32
	once  sync.Once
	err   error // why it failed; written once before dead is closed
}

func newLink(c net.Conn, gen uint64) *link {
	l := &link{conn: c, gen: gen, dead: make(chan struct{}), done: make(chan struct{})}
	l.raw = newRawWriter(c)
	l.alive.Store(2)
	return l
}

// fail closes the connection; the first caller's error is kept.
func (l *link) fail(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.dead)
		_ = l.conn.Close()
	})
}

// exited is called by the reader and by the writer as they return; the last one calls gone.
func (l *link) exited(gone func()) {
	if l.alive.Add(-1) == 0 {
		gone()
		close(l.done)
	}
}

// errLinkReplaced closes a link that a resume on a new connection took over.
var errLinkReplaced = errors.New("ftsl: connection replaced by a resume")

// linkGone runs when both goroutines of l have returned.
func (s *Session) linkGone(l *link) {
	s.mu.Lock()
	if s.link == l {
		s.link = nil
		s.writerIdle = false
		if !s.state.ended() {
			if s.state == StateConnected {
				s.setStateLocked(StateDisconnected, l.err)
			}
			if !s.client && !s.resumeBusy {
				gen := s.gen
				s.expiry = time.AfterFunc(s.cfg.ResumeWindow, func() { s.expire(gen) })
			}
		}
	}
	s.unlockNotify()
}

// expire ends a server session whose client did not come back in time.
func (s *Session) expire(gen uint64) {
	s.mu.Lock()
	if s.link == nil && s.gen == gen && !s.resumeBusy && !s.state.ended() {
		s.endLocked(StateLost, errorWithReason(ErrSessionLost, "the client did not resume within ResumeWindow", ""), endDrop, "")
	}
	s.unlockNotify()
}
