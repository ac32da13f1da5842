package core

// Flusher defers the writer wake-ups of sends to many sessions until Flush. A caller that fans a
// burst of messages out to many sessions (a pubsub hub routing what one client published) then
// wakes each session's writer once for the burst, and each writer sends the burst in one write,
// instead of a wake-up, or an inline write, per message and session: the writers would otherwise
// contend with the caller for every session's lock, one message at a time. (nats-server's read
// loop does the same: it collects the clients that got data from one read buffer and signals
// each one's flusher once at its end.)
//
// A deferred send (Session.TrySendSharedDeferred) is in the session's sent buffer when it
// returns, as any send: a session that ends, resumes or is exported meanwhile treats it as any
// other sent message; only the wake-up of its writer waits. The caller must call Flush after its
// last deferred send, and before anything that can block: a wait for room in a session's buffer
// may need a writer whose wake-up waits in the Flusher. A session whose deferred bytes reach a
// bound (deferBound) has its writer woken at once, so a long burst never sits unsent in full.
//
// A Flusher is used by one goroutine at a time; it may be reused after Flush, and it allocates
// nothing once it has seen as many sessions as a burst reaches. The zero value is ready to use.
type Flusher struct {
	pending []*Session // sessions whose deferIn is this Flusher
}

// Flush wakes the writer of every session a deferred send through f appended to since the last
// Flush. It takes each session's lock in turn, so the caller must hold none of them.
func (f *Flusher) Flush() {
	for i, s := range f.pending {
		f.pending[i] = nil // a Flusher kept for reuse must not keep ended sessions alive
		s.mu.Lock()
		if s.deferIn == f {
			s.deferIn, s.deferBytes = nil, 0
			s.wakeWriterLocked()
		}
		s.mu.Unlock()
	}
	f.pending = f.pending[:0]
}

// maxDeferredBytes bounds what a session's deferred sends append before its writer is woken
// anyway, with a quarter of its sent buffer: the writer keeps the socket busy during a long burst,
// and a burst never fills the sent buffer unwritten.
const maxDeferredBytes = 64 << 10

// deferLocked leaves the wake-up for a frame of cost bytes, just appended, to f. A session already
// deferred by another Flusher stays with it: its Flush wakes the writer after this frame, which is
// in the buffer by then.
func (s *Session) deferLocked(f *Flusher, cost uint64) {
	if s.deferIn == nil {
		s.deferIn = f
		f.pending = append(f.pending, s)
	}
	s.deferBytes += cost
	if s.deferBytes >= min(maxDeferredBytes, uint64(s.cfg.SendBufferBytes)/4) {
		s.deferBytes = 0
		s.wakeWriterLocked()
	}
}
