package core

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// Dial opens a new session with the server at addr. addr is also the name the client asks
// cfg.Resolver about before each reconnection, so a server that moves can be found again.
// Dial returns once the handshake completed; from then on the session reconnects by itself
// whenever its connection breaks, until it is closed or lost.
//
// A busy server (RejectBusy) and connections refused, reset or closed during the handshake are
// tried again, with the jittered backoff of reconnections (BackoffMin to BackoffMax), until ctx
// ends; if ctx has no deadline, Dial gives up after HandshakeTimeout in all. It then returns the
// last of those failures (a *RejectError for busy), wrapped so that it also matches ctx's error.
// Other failures, other rejections among them, return at once.
func Dial(ctx context.Context, addr string, cfg Config) (*Session, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.HandshakeTimeout)
		defer cancel()
	}
	s := newSession(&cfg, true)
	s.name = addr
	c, w, err := s.connectNew(ctx)
	if err != nil {
		s.cancel()
		return nil, inContext("dial "+addr, err)
	}
	s.id, s.token = w.sid, w.token
	s.setPeer(w.version, w.params())
	s.peerAck.credit = w.acks.credit
	s.mu.Lock()
	l := s.startLinkLocked(c, false)
	// Confirm the session at once: the server hands it to Accept only when it hears from us.
	s.sentAck = ackBlock{}
	s.ackPending, s.ackUrgent = true, true
	s.running++
	s.mu.Unlock()
	go s.supervise(l)
	return s, nil
}

// connectNew runs new-session handshakes until one succeeds, one fails for good, or ctx ends.
// ctx has a deadline.
func (s *Session) connectNew(ctx context.Context) (net.Conn, welcome, error) {
	deadline, _ := ctx.Deadline()
	// ended is ctx's error, or DeadlineExceeded as soon as the deadline passed: a connection's
	// own deadline, set to the same instant, may cut an attempt short before ctx's timer fires.
	ended := func() error {
		if err := ctx.Err(); err != nil || time.Now().Before(deadline) {
			return err
		}
		return context.DeadlineExceeded
	}
	backoff := s.cfg.BackoffMin
	var last error // the last failure worth another try
	for {
		c, w, err := s.connect(ctx, false)
		switch {
		case err == nil:
			return c, w, nil
		case retryable(err):
			last = err
		case last == nil || ended() == nil:
			return nil, welcome{}, err
		}
		// Once ctx ends, what the server said last tells more than the deadline cutting an
		// attempt short.
		if end := ended(); end != nil {
			return nil, welcome{}, ftslerr.Errorf("%w; gave up: %w", last, end)
		}
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, s.cfg.BackoffMax)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, welcome{}, ftslerr.Errorf("%w; gave up: %w", last, ctx.Err())
		}
	}
}

// retryable reports whether a new-session handshake that failed with err may succeed if tried
// again: the server was busy, or the connection failed the way it does against a server that is
// full (it closed or reset connections it could not take) or restarting.
func retryable(err error) bool {
	var rej *RejectError
	if errors.As(err, &rej) {
		return rej.Code == RejectBusy || rej.Code == RejectMoving
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE)
}

// supervise is the client's per-session goroutine: it is the writer of each link, and between
// links it reconnects.
func (s *Session) supervise(l *link) {
	defer s.goroutineExited()
	for l != nil {
		s.writeLoop(l)
		l.exited(func() { s.linkGone(l) })
		<-l.done
		l = s.reconnect()
	}
}

// reconnect dials again, with backoff and jitter, until the server takes the resume, refuses it,
// or ResumeWindow passes. It returns the new link, or nil once the session has ended.
func (s *Session) reconnect() *link {
	giveUp := time.Now().Add(s.cfg.ResumeWindow)
	backoff := s.cfg.BackoffMin
	var last error
	watch, _ := s.cfg.Resolver.(WatchingResolver)
	var moved <-chan struct{} // nil, never ready, unless the resolver can tell
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// Full jitter in [backoff/2, backoff): clients cut off together do not return together.
			d := backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, s.cfg.BackoffMax)
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-moved: // the server may be somewhere new: try there now
				t.Stop()
				backoff = s.cfg.BackoffMin
			case <-s.ended:
				t.Stop()
				return nil
			}
		}
		if s.ctx.Err() != nil {
			return nil
		}
		if time.Now().After(giveUp) {
			s.mu.Lock()
			s.endLocked(StateLost, ftslerr.Errorf("%w: no connection within ResumeWindow %v (last error: %v)",
				ErrSessionLost, s.cfg.ResumeWindow, last), endDrop, "")
			s.unlockNotify()
			return nil
		}
		if watch != nil {
			// Asked before the attempt resolves: a move during the attempt is news to this
			// session even if another session sharing the resolver has seen it since.
			moved = watch.Changed(s.name)
		}
		c, w, err := s.connect(s.ctx, true)
		if err != nil {
			last = err
			// Every other failure is tried again, RejectBusy and RejectMoving among them: a
			// moving server still holds the session, and the next attempt asks the Resolver
			// again, which names the new place once the server has moved.
			var rej *RejectError
			if errors.As(err, &rej) && (errors.Is(rej, ErrSessionLost) || errors.Is(rej, ErrSessionClosed)) {
				s.mu.Lock()
				s.endLocked(StateLost, errorWithCause(ErrSessionLost, "resume refused", err), endDrop, "")
				s.unlockNotify()
				return nil
			}
			if watch != nil && errors.As(err, &rej) && rej.Code == RejectMoving {
				// The resolver will say when the server has moved: asking the old place again
				// meanwhile only loads it (a thousand clients polling a server that is busy
				// writing its snapshot slow the move for all). Wait for the news, or the
				// longest backoff in case it never comes.
				backoff = s.cfg.BackoffMax
			}
			s.log.Debug().Uint64("session", s.id).Err(err).Int("attempt", attempt).Msg("reconnect failed")
			continue
		}
		s.mu.Lock()
		if s.state.ended() {
			s.mu.Unlock()
			_ = c.Close()
			return nil
		}
		if err := s.resyncLocked(w.acks); err != nil {
			s.endLocked(StateLost, err, endDrop, "")
			s.unlockNotify()
			_ = c.Close()
			return nil
		}
		s.stats.Reconnects++
		l := s.startLinkLocked(c, false)
		s.unlockNotify()
		s.log.Debug().Uint64("session", s.id).Int("attempt", attempt).Msg("session resumed")
		return l
	}
}
