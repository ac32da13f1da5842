package core

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// link is one TCP (or TLS) connection carrying a session. A session has at most one at a time;
// each link has one reader and one writer goroutine.
type link struct {
	conn       net.Conn
	closer     net.Conn   // what fail closes: the TCP connection under TLS, so no alert is written
	raw        *rawWriter // for non-blocking inline writes; nil unless conn is a plain TCP socket
	rawr       *rawReader // for reads that hold no buffer while waiting; nil likewise
	gen        uint64
	dead       chan struct{} // closed by fail
	done       chan struct{} // closed when both goroutines returned
	readerDone chan struct{} // closed when the reader returned
	alive      atomic.Int32
	once       sync.Once
	err        error // why it failed; written once before dead is closed
	// inline is the batch Send writes on this connection itself (see writeInlineLocked). It
	// belongs to the connection, not the session: a write still under way on a dead connection
	// must not share its batch with the next connection's.
	inline writeBatch
}

func newLink(c net.Conn, gen uint64) *link {
	l := &link{conn: c, closer: c, gen: gen, dead: make(chan struct{}), done: make(chan struct{}),
		readerDone: make(chan struct{})}
	if tc, ok := c.(*tls.Conn); ok {
		l.closer = tc.NetConn()
	}
	l.raw = newRawWriter(c)
	l.rawr = newRawReader(c)
	l.alive.Store(2)
	return l
}

// fail closes the connection; the first caller's error is kept. Callers may hold the session's
// mutex, so it must not write: over TLS it closes the TCP connection underneath rather than the
// TLS connection, whose Close writes a close_notify alert and can wait seconds for a peer that
// does not read. (FTSL's own CLOSE and CLOSED, inside TLS, already say that a session ended well.)
func (l *link) fail(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.dead)
		_ = l.closer.Close()
	})
}

// linger lets the peer read the last frames written (an ABORT or a CLOSED) before the connection
// closes: closing a socket with bytes still unread in it sends a reset, and a peer hit by a reset
// loses what it had not read yet, so it would see a broken connection instead of the end of the
// session. It waits, at most abortGrace, for the peer to close its side once it has read them
// (the reader sees EOF and returns), having closed the write side first where it can.
func (l *link) linger() {
	if cw, ok := l.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	t := time.NewTimer(abortGrace)
	defer t.Stop()
	select {
	case <-l.readerDone:
	case <-t.C:
	}
}

// read reads from the connection into (*buf)[w:], making a buffer if *buf is nil. On Linux TCP
// the buffer comes from a pool and goes back while the connection is idle (see rawReader).
func (l *link) read(buf *[]byte, w int) (int, error) {
	if l.rawr != nil {
		return l.rawr.read(buf, w)
	}
	if *buf == nil {
		*buf = make([]byte, minReadBuf)
	}
	return l.conn.Read((*buf)[w:])
}

// readBufs holds idle connections' read buffers of the smallest size.
var readBufs = sync.Pool{New: func() any { return new([minReadBuf]byte) }}

func getReadBuf() []byte { return readBufs.Get().(*[minReadBuf]byte)[:] }

// putReadBuf gives back a buffer of minReadBuf bytes; bigger ones are left to the collector.
func putReadBuf(b []byte) {
	if len(b) == minReadBuf {
		readBufs.Put((*[minReadBuf]byte)(b))
	}
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
		s.releaseDetachedLocked()
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
