package snapshot

import (
	"bytes"
	"context"
	"reflect"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/ftsl-go/ftsl/oneway"
)

// Layer is what each layer's state implements to go into a snapshot: core.ListenerState, and
// oneway.ListenerState for its own part. MarshalLayer's result belongs to the caller;
// UnmarshalLayer must not keep its argument, and must refuse, not panic on, any input.
type Layer interface {
	MarshalLayer() ([]byte, error)
	UnmarshalLayer([]byte) error
}

// Saver is a state that puts itself into a snapshot, in as many sections as it has layers: how
// a layer above oneway plugs into Freeze. A pubsub hub's state, for one, puts its oneway part with
// PutOneway and its own under "pubsub".
type Saver interface {
	SaveTo(s *Snapshot) error
}

// Exporter is a server that can be frozen: core.Listener and oneway.Listener are, and the
// servers built on them. S is the state Export returns.
type Exporter[S any] interface {
	Pause(ctx context.Context) error
	Export() (S, error)
}

// The sections this module's layers use. An application keeps its own data beside them under
// a name of its own, "app" by convention (PutBytes).
const (
	SectionCore   = "core"   // core.ListenerState
	SectionOneway = "oneway" // oneway.ListenerState's own part (its Core goes under SectionCore)
)

// maxNameLen bounds a section name, so the name length fits in a byte with room to spare.
const maxNameLen = 32

// Snapshot is a frozen server's state: named sections of bytes, in the order they were first
// put. The zero value is an empty snapshot, ready to use. A Snapshot is not safe for concurrent
// use while it is being changed.
type Snapshot struct {
	sections []section
}

type section struct {
	name string
	data []byte
}

// Put encodes l (MarshalLayer) into the section name, replacing a section of that name if there
// is one. A name is 1 to 32 bytes of [a-z0-9._-]; any other fails with ErrInvalidName.
func (s *Snapshot) Put(name string, l Layer) error {
	if err := checkName(name); err != nil {
		return err
	}
	if l == nil || isNilPointer(l) {
		return ftslerr.Errorf("ftsl: snapshot: section %q: no state to put (nil %T)", name, l)
	}
	b, err := l.MarshalLayer()
	if err != nil {
		return ftslerr.Errorf("ftsl: snapshot: section %q: %w", name, err)
	}
	s.set(name, b)
	return nil
}

// PutBytes puts a copy of b into the section name, as Put does: the application's own data
// (by convention under "app"), or a layer's that was encoded already.
func (s *Snapshot) PutBytes(name string, b []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	s.set(name, bytes.Clone(b))
	return nil
}

// Get decodes the section name into l (UnmarshalLayer). It fails with ErrNoSection if there is
// no such section, or with the layer's error, which names the section.
func (s *Snapshot) Get(name string, l Layer) error {
	b, err := s.Bytes(name)
	if err != nil {
		return err
	}
	if l == nil || isNilPointer(l) {
		return ftslerr.Errorf("ftsl: snapshot: section %q: no state to decode into (nil %T)", name, l)
	}
	if err := l.UnmarshalLayer(b); err != nil {
		return ftslerr.Errorf("ftsl: snapshot: section %q: %w", name, err)
	}
	return nil
}

// Bytes returns the contents of the section name, or ErrNoSection. The slice is the snapshot's
// own: the caller must not change it. It stays valid after the section is replaced.
func (s *Snapshot) Bytes(name string) ([]byte, error) {
	for i := range s.sections {
		if s.sections[i].name == name {
			return s.sections[i].data, nil
		}
	}
	return nil, ftslerr.Errorf("%w: %q", ErrNoSection, name)
}

// Names returns the names of the sections, in file order.
func (s *Snapshot) Names() []string {
	names := make([]string, len(s.sections))
	for i := range s.sections {
		names[i] = s.sections[i].name
	}
	return names
}

// Size returns the number of bytes WriteTo writes.
func (s *Snapshot) Size() int {
	n := headerLen + trailerLen
	for i := range s.sections {
		n += sectionOverhead + len(s.sections[i].name) + len(s.sections[i].data)
	}
	return n
}

func (s *Snapshot) set(name string, b []byte) {
	if len(b) == 0 {
		b = nil // as Read gives it back
	}
	for i := range s.sections {
		if s.sections[i].name == name {
			s.sections[i].data = b
			return
		}
	}
	s.sections = append(s.sections, section{name: name, data: b})
}

// checkName refuses a name that a file cannot hold or that would not survive being a key in
// other tools (lower case, no spaces or separators).
func checkName(name string) error {
	if len(name) == 0 || len(name) > maxNameLen {
		return ftslerr.Errorf("%w: %q has %d bytes, not 1 to %d", ErrInvalidName, name, len(name), maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return ftslerr.Errorf("%w: %q: byte %#02x at %d is not one of [a-z0-9._-]", ErrInvalidName, name, c, i)
		}
	}
	return nil
}

func isNilPointer(v any) bool {
	r := reflect.ValueOf(v)
	return r.Kind() == reflect.Pointer && r.IsNil()
}

// PutCore puts a core listener's state into the section "core".
func PutCore(s *Snapshot, st *core.ListenerState) error { return s.Put(SectionCore, st) }

// Core returns the core listener state of the section "core", for core.NewListenerFrom.
func Core(s *Snapshot) (core.ListenerState, error) {
	var st core.ListenerState
	err := s.Get(SectionCore, &st)
	return st, err
}

// PutOneway puts a oneway listener's state into two sections: its core sessions under "core",
// its tickets and attempts under "oneway". It puts both or neither.
func PutOneway(s *Snapshot, st *oneway.ListenerState) error {
	if st == nil {
		return ftslerr.Errorf("ftsl: snapshot: section %q: no state to put (nil %T)", SectionOneway, st)
	}
	c, err := st.Core.MarshalLayer()
	if err != nil {
		return ftslerr.Errorf("ftsl: snapshot: section %q: %w", SectionCore, err)
	}
	o, err := st.MarshalLayer()
	if err != nil {
		return ftslerr.Errorf("ftsl: snapshot: section %q: %w", SectionOneway, err)
	}
	s.set(SectionCore, c)
	s.set(SectionOneway, o)
	return nil
}

// Oneway returns the oneway listener state of the sections "core" and "oneway" joined, for
// oneway.NewListenerFrom (which checks that they agree).
func Oneway(s *Snapshot) (oneway.ListenerState, error) {
	var st oneway.ListenerState
	if err := s.Get(SectionCore, &st.Core); err != nil {
		return oneway.ListenerState{}, err
	}
	if err := s.Get(SectionOneway, &st); err != nil {
		return oneway.ListenerState{}, err
	}
	return st, nil
}

// Freeze pauses the server (Pause(ctx)), takes its state (Export) and puts it into a new
// snapshot: a core listener's under "core" (PutCore), a oneway listener's under "core" and
// "oneway" (PutOneway), any other state that implements Saver (through a pointer or not) by
// its SaveTo. A state of another type is refused before anything is paused.
//
// From Export on, the sessions live only in the snapshot: write it (WriteFile) before closing
// the listener, and if writing fails, the snapshot in memory can still be written elsewhere or
// imported here. If Pause or Export fails, the server is left as they leave it (Continue
// undoes a pause).
//
//	snap, err := snapshot.Freeze(ctx, ln) // ln is a *oneway.Listener
//	if err == nil {
//		err = snap.WriteFile("/var/lib/app/server.snap")
//	}
func Freeze[S any](ctx context.Context, srv Exporter[S]) (*Snapshot, error) {
	put, err := putterFor[S]()
	if err != nil {
		return nil, err
	}
	if err := srv.Pause(ctx); err != nil {
		return nil, ftslerr.Errorf("ftsl: snapshot: freeze: %w", err)
	}
	st, err := srv.Export()
	if err != nil {
		return nil, ftslerr.Errorf("ftsl: snapshot: freeze: %w", err)
	}
	s := new(Snapshot)
	if err := put(s, &st); err != nil {
		return nil, err
	}
	return s, nil
}

// putterFor returns how Freeze puts a state of type S, or why it cannot.
func putterFor[S any]() (func(*Snapshot, *S) error, error) {
	switch any((*S)(nil)).(type) {
	case *core.ListenerState:
		return func(s *Snapshot, st *S) error { return PutCore(s, any(st).(*core.ListenerState)) }, nil
	case *oneway.ListenerState:
		return func(s *Snapshot, st *S) error { return PutOneway(s, any(st).(*oneway.ListenerState)) }, nil
	case Saver:
		return func(s *Snapshot, st *S) error { return any(st).(Saver).SaveTo(s) }, nil
	}
	var zero S
	if _, ok := any(zero).(Saver); ok {
		return func(s *Snapshot, st *S) error { return any(*st).(Saver).SaveTo(s) }, nil
	}
	return nil, ftslerr.Errorf("ftsl: snapshot: freeze: a state of type %T is neither core's nor oneway's, and does not implement Saver", zero)
}
