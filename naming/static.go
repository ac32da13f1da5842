package naming

import (
	"context"
	"sync"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// StaticResolver resolves names from a map that the application changes at run time with Set
// and Delete. It implements core.WatchingResolver, so a client waiting to reconnect tries the
// new address the moment Set moves its name: a naming service for tests, or for an application
// that learns of moves its own way. All methods are safe for concurrent use.
type StaticResolver struct {
	mu    sync.Mutex
	names map[string]*staticName
}

// staticName is one name's entry. Names asked about with Changed but never set get one too, so
// that a later Set wakes the waiter: the application chooses the names, so they are bounded.
type staticName struct {
	addr     string // "" while not set
	gen      uint64 // counts the changes of addr
	resolved uint64 // gen as Resolve returned it last
	changed  chan struct{}
}

// NewStaticResolver returns a StaticResolver holding a copy of addrs (name to host:port). It
// fails if an address is not host:port.
func NewStaticResolver(addrs map[string]string) (*StaticResolver, error) {
	s := &StaticResolver{names: make(map[string]*staticName, len(addrs))}
	for name, addr := range addrs {
		if err := s.Set(name, addr); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Set points name at addr (host:port), closing name's Changed channel if the address differs.
// Names are free-form here (a client dials by the name it asks about), addresses are checked.
func (s *StaticResolver) Set(name, addr string) error {
	if err := validAddr(addr); err != nil {
		return ftslerr.Errorf("%w (setting %q)", err, truncate(name))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changeLocked(name, addr)
	return nil
}

// Delete removes name, closing its Changed channel if it was set: Resolve then fails with
// ErrNotFound.
func (s *StaticResolver) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.names[name]; e != nil && e.addr != "" {
		s.changeLocked(name, "")
	}
}

func (s *StaticResolver) changeLocked(name, addr string) {
	e := s.entryLocked(name)
	if e.addr == addr {
		return
	}
	e.addr = addr
	e.gen++
	close(e.changed)
	e.changed = make(chan struct{})
}

func (s *StaticResolver) entryLocked(name string) *staticName {
	e := s.names[name]
	if e == nil {
		e = &staticName{changed: make(chan struct{})}
		s.names[name] = e
	}
	return e
}

// Resolve returns the address name is set to, or fails with ErrNotFound.
func (s *StaticResolver) Resolve(_ context.Context, name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.names[name]
	if e == nil {
		return "", ftslerr.Errorf("%w: resolve %q: not set", ErrNotFound, truncate(name))
	}
	e.resolved = e.gen
	if e.addr == "" {
		return "", ftslerr.Errorf("%w: resolve %q: deleted", ErrNotFound, truncate(name))
	}
	return e.addr, nil
}

// Changed returns a channel that is closed once name's address differs from what Resolve
// returned last (closed already if it does).
func (s *StaticResolver) Changed(name string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryLocked(name)
	if e.gen != e.resolved {
		return closedChan
	}
	return e.changed
}
