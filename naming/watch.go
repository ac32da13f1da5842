package naming

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// This file answers GET: a lookup, or, with an index parameter, a watch, which is a lookup that
// waits until the answer may differ from the one the watcher had at that index. The protocol
// follows Consul's blocking queries: index=N, wait=T, the index to send next in a header, and a
// little random extra wait so that watchers who started together do not all come back together.

// get answers a lookup or a watch of name.
func (s *Server) get(w http.ResponseWriter, r *http.Request, name string) {
	q := r.URL.Query()
	if !q.Has("index") {
		s.mu.Lock()
		closed := s.closed
		b, bound, index := s.stateLocked(name)
		s.mu.Unlock()
		if closed {
			writeError(w, http.StatusServiceUnavailable, "server closed")
			return
		}
		writeState(w, name, b, bound, index)
		return
	}
	after, err := strconv.ParseUint(q.Get("index"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("index %q: want an unsigned integer", truncate(q.Get("index"))))
		return
	}
	wait := s.cfg.DefaultWait
	if q.Has("wait") {
		d, err := time.ParseDuration(q.Get("wait"))
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("wait %q: want a duration such as 30s or 5m", truncate(q.Get("wait"))))
			return
		}
		wait = min(d, s.cfg.MaxWait)
	}
	s.watch(w, r, name, after, wait)
}

// watch answers as soon as name's state may differ from what a watcher with index after has
// seen, or when wait (and up to a sixteenth more) has passed, with the state then.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, name string, after uint64, wait time.Duration) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "server closed")
		return
	}
	if s.changedLocked(name, after) || wait == 0 {
		b, bound, index := s.stateLocked(name)
		s.mu.Unlock()
		writeState(w, name, b, bound, index)
		return
	}
	if s.watchers >= s.cfg.MaxWatchers {
		s.mu.Unlock()
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("the server holds its maximum of %d waiting watches", s.cfg.MaxWatchers))
		return
	}
	ws := s.waits[name]
	if ws == nil {
		ws = &waitSet{ch: make(chan struct{})}
		s.waits[name] = ws
	}
	ws.n++
	s.watchers++
	hook := s.waiting
	s.mu.Unlock()
	if hook != nil {
		hook(name)
	}

	t := time.NewTimer(wait + rand.N(wait/16+1))
	closing, gone := false, false
	select {
	case <-ws.ch:
	case <-t.C:
	case <-s.done:
		closing = true
	case <-r.Context().Done():
		gone = true
	}
	t.Stop()

	s.mu.Lock()
	s.watchers--
	ws.n--
	if ws.n == 0 && s.waits[name] == ws {
		delete(s.waits, name)
	}
	b, bound, index := s.stateLocked(name)
	s.mu.Unlock()
	switch {
	case gone: // nobody to answer
	case closing:
		writeError(w, http.StatusServiceUnavailable, "server closed")
	default:
		writeState(w, name, b, bound, index)
	}
}

// changedLocked reports whether name's state may differ from what a watcher with index after
// saw: index 0 (a watcher that saw nothing), a binding newer than after, an unbind after it,
// or an index above the server's own (the server lost its data, or the watcher's index came
// from another server: either way it must look again, or it could wait for ever).
func (s *Server) changedLocked(name string, after uint64) bool {
	if after == 0 || after > max(s.index, 1) {
		return true
	}
	if b, ok := s.names[name]; ok {
		return b.Version > after
	}
	return s.tombs.unboundAfter(name, after)
}

// stateLocked is name's binding, if bound, and the index to send in the answer: the binding's
// version, or for a name not bound the version counter, at least 1 so that the next watch with
// it waits (index 0 asks for an answer at once).
func (s *Server) stateLocked(name string) (b Binding, bound bool, index uint64) {
	b, bound = s.names[name]
	if bound {
		return b, true, b.Version
	}
	return Binding{}, false, max(s.index, 1)
}

// writeState answers with name's state: its binding, or 404.
func writeState(w http.ResponseWriter, name string, b Binding, bound bool, index uint64) {
	if bound {
		writeBinding(w, http.StatusOK, b, index)
		return
	}
	w.Header().Set(IndexHeader, strconv.FormatUint(index, 10))
	writeError(w, http.StatusNotFound, fmt.Sprintf("name %q is not bound", name))
}
