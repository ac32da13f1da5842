package faultnet

import (
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Plan says when a Conn breaks by itself, so a test can place a failure at an
// exact byte offset (for instance in the middle of a frame header) without
// racing the code under test. Zero values mean never.
type Plan struct {
	// ReadBudget is how many bytes may be read before the conn breaks. A
	// Read returns fewer bytes than asked when needed to hit the budget
	// exactly; the Read after that breaks the conn.
	ReadBudget int64
	// WriteBudget is how many bytes may be written before the conn breaks.
	// The bytes up to the budget are written to the underlying conn and the
	// rest are not; the Write that crosses the budget returns the short
	// count and an error (or, with Stall, reports full success).
	WriteBudget int64
	// Stall breaks the conn by stalling it (see Conn.Stall) instead of
	// cutting it, because a silent peer and a reset peer are handled by
	// different code paths (timeouts versus errors).
	Stall bool
}

// Conn wraps a net.Conn and breaks it on command or after a byte budget.
// It implements net.Conn; deadlines and addresses pass through to the
// wrapped conn. It starts no goroutines, so a test that forgets to close it
// leaks nothing but the socket.
type Conn struct {
	c    net.Conn
	plan Plan

	// rmu and wmu serialise Reads and Writes so the budgets are exact even
	// when the code under test reads or writes from several goroutines.
	rmu, wmu sync.Mutex

	mu      sync.Mutex
	nread   int64
	nwrite  int64
	cut     bool
	stalled bool
	closed  bool
	// rdl is kept here because a stalled Read never reaches the wrapped
	// conn, yet must still honour the deadline the caller set.
	rdl time.Time
	// wake is closed (and cleared) whenever something a stalled Read waits
	// on changes: the deadline, a cut, or Close. It is made lazily so that
	// conns that never stall pay nothing on SetReadDeadline.
	wake chan struct{}
}

var _ net.Conn = (*Conn)(nil)

// Wrap returns a Conn over c following plan. The Conn owns c from then on:
// closing the Conn closes c.
func Wrap(c net.Conn, plan Plan) *Conn {
	return &Conn{c: c, plan: plan}
}

// faultError is what the code under test sees from a conn that faultnet cut.
// It unwraps to ECONNRESET because that is what a real peer reset looks like,
// so error classification in the code under test takes its production path.
type faultError struct{}

func (faultError) Error() string   { return "connection reset by faultnet" }
func (faultError) Unwrap() error   { return syscall.ECONNRESET }
func (faultError) Timeout() bool   { return false }
func (faultError) Temporary() bool { return false }

func (c *Conn) opError(op string, err error) error {
	e := &net.OpError{Op: op, Source: c.c.LocalAddr(), Addr: c.c.RemoteAddr(), Err: err}
	if a := c.c.LocalAddr(); a != nil {
		e.Net = a.Network()
	}
	return e
}

// notifyLocked wakes every stalled Read so it re-examines the conn's state.
// c.mu must be held.
func (c *Conn) notifyLocked() {
	if c.wake != nil {
		close(c.wake)
		c.wake = nil
	}
}

// Read implements net.Conn.
func (c *Conn) Read(b []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()

	c.mu.Lock()
	switch {
	case c.stalled:
		c.mu.Unlock()
		return c.stallRead()
	case c.cut:
		c.mu.Unlock()
		return 0, c.opError("read", faultError{})
	case c.closed:
		c.mu.Unlock()
		return c.c.Read(b)
	}
	limit := len(b)
	if c.plan.ReadBudget > 0 {
		rem := c.plan.ReadBudget - c.nread
		if rem <= 0 {
			c.mu.Unlock()
			return 0, c.breakByPlan("read")
		}
		if int64(limit) > rem {
			limit = int(rem)
		}
	}
	c.mu.Unlock()

	n, err := c.c.Read(b[:limit])

	c.mu.Lock()
	c.nread += int64(n)
	stalled := c.stalled
	c.mu.Unlock()
	if stalled {
		// Stall was called while this Read was blocked: whatever arrived
		// is lost, as it would be on a dead link.
		return c.stallRead()
	}
	return n, err
}

// breakByPlan breaks the conn when a budget runs out and returns what the
// breaking Read or Write reports. It is called with rmu or wmu held.
func (c *Conn) breakByPlan(op string) error {
	if c.plan.Stall {
		c.Stall()
		if op == "read" {
			_, err := c.stallRead()
			return err
		}
		return nil
	}
	c.Cut()
	return c.opError(op, faultError{})
}

// stallRead blocks like a Read on a link that carries nothing any more,
// ending only when the caller could have ended a real Read: deadline, Close,
// or a Cut.
func (c *Conn) stallRead() (int, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return 0, c.opError("read", net.ErrClosed)
		}
		if c.cut {
			c.mu.Unlock()
			return 0, c.opError("read", faultError{})
		}
		if c.wake == nil {
			c.wake = make(chan struct{})
		}
		wake, dl := c.wake, c.rdl
		c.mu.Unlock()

		if dl.IsZero() {
			<-wake
			continue
		}
		d := time.Until(dl)
		if d <= 0 {
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		}
		t := time.NewTimer(d)
		select {
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// Write implements net.Conn.
func (c *Conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()

	c.mu.Lock()
	switch {
	case c.stalled:
		c.mu.Unlock()
		return len(b), nil
	case c.cut:
		c.mu.Unlock()
		return 0, c.opError("write", faultError{})
	case c.closed:
		c.mu.Unlock()
		return c.c.Write(b)
	}
	limit, over := len(b), false
	if c.plan.WriteBudget > 0 {
		rem := c.plan.WriteBudget - c.nwrite
		if rem <= 0 {
			c.mu.Unlock()
			if err := c.breakByPlan("write"); err != nil {
				return 0, err
			}
			return len(b), nil
		}
		if int64(limit) > rem {
			limit, over = int(rem), true
		}
	}
	c.mu.Unlock()

	n, err := c.c.Write(b[:limit])

	c.mu.Lock()
	c.nwrite += int64(n)
	c.mu.Unlock()
	if err != nil || !over {
		return n, err
	}
	if !c.plan.Stall {
		// The reset would discard whatever is still queued: wait
		// until the peer has the prefix, so the cut lands exactly at
		// the budget.
		drain(c.c, nil)
	}
	if err := c.breakByPlan("write"); err != nil {
		return n, err
	}
	return len(b), nil
}

// Cut closes the underlying connection now. On TCP it sets SO_LINGER to 0
// first so the peer sees a reset rather than an orderly end of stream: the
// point is to test the error path, not the EOF path. Later Reads and Writes
// on c fail with an error that unwraps to syscall.ECONNRESET.
func (c *Conn) Cut() {
	c.mu.Lock()
	if c.cut || c.closed {
		c.mu.Unlock()
		return
	}
	c.cut = true
	c.notifyLocked()
	c.mu.Unlock()
	abort(c.c)
}

// Stall makes the conn silent from now on, like a pulled cable: Read blocks
// until the read deadline or Close (returning an error satisfying
// os.ErrDeadlineExceeded and net.Error.Timeout on a deadline), and Write
// discards its data and reports success. Neither side sees an error, only
// the absence of bytes, which is what keepalive and timeout logic must catch.
// The underlying conn stays open until Close.
func (c *Conn) Stall() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut || c.closed || c.stalled {
		return
	}
	c.stalled = true
	c.notifyLocked()
}

// Broken reports whether the conn was cut or stalled, so a test can tell
// whether the fault it planned has fired yet.
func (c *Conn) Broken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut || c.stalled
}

// Close implements net.Conn. Closing a conn that was cut returns nil: the
// code under test did nothing wrong by closing it.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.c.Close()
	}
	c.closed = true
	wasCut := c.cut
	c.notifyLocked()
	c.mu.Unlock()
	if wasCut {
		return nil
	}
	return c.c.Close()
}

// LocalAddr implements net.Conn.
func (c *Conn) LocalAddr() net.Addr { return c.c.LocalAddr() }

// RemoteAddr implements net.Conn.
func (c *Conn) RemoteAddr() net.Addr { return c.c.RemoteAddr() }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.c.SetDeadline(t)
}

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.c.SetReadDeadline(t)
}

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	return c.c.SetWriteDeadline(t)
}

func (c *Conn) setReadDeadline(t time.Time) {
	c.mu.Lock()
	c.rdl = t
	c.notifyLocked()
	c.mu.Unlock()
}

// abort closes c so that, on TCP, the peer sees a reset (RST) instead of a
// FIN: SO_LINGER 0 makes close discard the socket at once.
func abort(c net.Conn) {
	if l, ok := c.(interface{ SetLinger(int) error }); ok {
		_ = l.SetLinger(0)
	}
	_ = c.Close()
}
