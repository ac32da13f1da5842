package core

import "fmt"

// newParseHarness returns a server-side session with default settings and no connection, whose
// frame parser can be fed bytes directly, as the reader goroutine would feed it. Fuzz tests and
// codec tests use it to push arbitrary input through the real receive path.
func newParseHarness() *Session {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		panic(err)
	}
	s := newSession(&cfg, false)
	s.setPeer(1, cfg.offer())
	s.peerAck.credit = s.peer.window
	s.rd.credit = s.peer.window
	return s
}

// feed pushes p through the parser in pieces of at most chunk bytes (as Reads would deliver
// them) and applies each batch. It returns the protocol error that ended the session, if any.
// Bytes that do not complete a frame stay pending, as in the reader.
func (s *Session) feed(p []byte, chunk int) error {
	if chunk <= 0 {
		chunk = len(p) + 1
	}
	var pending []byte
	var b readBatch
	for len(p) > 0 {
		n := min(chunk, len(p))
		pending = append(pending, p[:n]...)
		p = p[n:]
		b.reset()
		used := s.parse(&b, pending)
		if used < 0 || used > len(pending) {
			return fmt.Errorf("parse consumed %d of %d bytes", used, len(pending))
		}
		pending = append(pending[:0], pending[used:]...)
		s.mu.Lock()
		stop := s.applyLocked(&b)
		s.unlockNotify()
		if stop {
			s.mu.Lock()
			err := s.err
			s.mu.Unlock()
			return err
		}
	}
	return nil
}
