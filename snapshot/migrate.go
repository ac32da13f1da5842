package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// Continuer is a server rebuilt from a snapshot that serves once told to: what
// core.NewListenerFrom, oneway.NewListenerFrom and pubsub.RestoreHub return.
type Continuer interface {
	Continue() error
}

// Move is a planned move of a server inside one process (Migrate): to another port, another
// address, another network namespace. A move to another process takes the same steps by hand:
// Freeze and WriteFile in one, ReadFile, the restore and Continue in the other.
type Move[S any, T Continuer] struct {
	// From is the server that moves: a *core.Listener, a *oneway.Listener, a *pubsub.Hub.
	From Exporter[S]
	// Restore rebuilds the server, paused, from the snapshot read back: for a oneway listener,
	// Oneway(s) and oneway.NewListenerFrom on the new net.Listener; for a hub, pubsub.RestoreHub.
	// Read the application's section here too.
	Restore func(s *Snapshot) (T, error)
	// Rebind, if set, points the clients at the new place once it serves: naming.Client's
	// Rebind for clients that resolve the server's name through naming.Resolver, which hear of
	// it at once.
	Rebind func(ctx context.Context) error
	// Retire, if set, closes the old server once the new one holds the state. Its sessions are
	// gone from it already: closing tells their clients nothing, and a client that still reaches
	// it until then is told that the server is moving.
	Retire func(ctx context.Context) error
	// App, if set, is called while the server is frozen, for the application's own section
	// (PutBytes(SectionApp, ...)): a game's world, as of the same instant as the sessions.
	App func(s *Snapshot) error
	// Path, if set, is a file the snapshot goes through (WriteFile, then ReadFile), as it would
	// between two processes; left empty, the same bytes go through memory.
	Path string
}

// SectionApp is the section name applications use for their own state, by convention.
const SectionApp = "app"

// Timings is how long each step of a move took: the split of the paper's Figure 7.
type Timings struct {
	Pause     time.Duration // every session frozen
	Serialize time.Duration // the state taken (Export) and encoded, the application's included
	Write     time.Duration // the file written and synced (through memory: the bytes laid out)
	Read      time.Duration // read back, every checksum checked
	Restore   time.Duration // decoded, rebuilt (Move.Restore) and serving
	Rebind    time.Duration
	Retire    time.Duration
	Total     time.Duration // from the start to the old server retired
	Bytes     int           // the snapshot's size
}

// MoveError is a move that failed after the state left the old server: the snapshot is all
// that holds the sessions then, and it is here to be written elsewhere or restored again.
type MoveError struct {
	Step     string // "write", "read", "restore", "rebind", "continue"
	Snapshot *Snapshot
	Err      error
}

func (e *MoveError) Error() string { return fmt.Sprintf("ftsl: snapshot: move: %s: %v", e.Step, e.Err) }
func (e *MoveError) Unwrap() error { return e.Err }

// Migrate moves a server in this process: it freezes m.From, takes its state into a snapshot,
// writes it (to m.Path or memory) and reads it back, rebuilds the server with m.Restore and lets
// it serve, rebinds its name, and retires the old server. The clients resume at the new
// place with nothing lost. It returns the new server and how long each step took.
//
// If the pause or the export fails, the old server is left as they leave it (Continue undoes a
// pause). A failure after the export returns a *MoveError with the snapshot, the only copy of
// the sessions then. A failure of Retire is reported after the new server serves.
func Migrate[S any, T Continuer](ctx context.Context, m Move[S, T]) (T, Timings, error) {
	var zero T
	var tm Timings
	if m.From == nil || m.Restore == nil {
		return zero, tm, errors.New("ftsl: snapshot: move: From and Restore are required")
	}
	if _, err := putterFor[S](); err != nil {
		return zero, tm, err // before anything is paused
	}
	start := time.Now()
	step := start
	lap := func(d *time.Duration) {
		now := time.Now()
		*d = now.Sub(step)
		step = now
	}
	if err := m.From.Pause(ctx); err != nil {
		return zero, tm, ftslerr.Errorf("ftsl: snapshot: move: %w", err)
	}
	lap(&tm.Pause)
	snap, err := Freeze(ctx, m.From) // (paused already: Pause again does nothing)
	if err != nil {
		return zero, tm, err
	}
	if m.App != nil {
		if err := m.App(snap); err != nil {
			return zero, tm, &MoveError{Step: "app", Snapshot: snap, Err: err}
		}
	}
	lap(&tm.Serialize)
	var read *Snapshot
	if m.Path != "" {
		if err := snap.WriteFile(m.Path); err != nil {
			return zero, tm, &MoveError{Step: "write", Snapshot: snap, Err: err}
		}
		lap(&tm.Write)
		read, err = ReadFile(m.Path)
	} else {
		var buf bytes.Buffer
		buf.Grow(snap.Size())
		if _, err := snap.WriteTo(&buf); err != nil {
			return zero, tm, &MoveError{Step: "write", Snapshot: snap, Err: err}
		}
		lap(&tm.Write)
		read, err = Read(&buf, int64(buf.Len()))
	}
	if err != nil {
		return zero, tm, &MoveError{Step: "read", Snapshot: snap, Err: err}
	}
	lap(&tm.Read)
	tm.Bytes = snap.Size()
	srv, err := m.Restore(read)
	if err != nil {
		return zero, tm, &MoveError{Step: "restore", Snapshot: snap, Err: err}
	}
	// The new server serves before its name moves: a client told of the move comes straight
	// in, instead of being told to wait and backing off.
	if err := srv.Continue(); err != nil {
		return srv, tm, &MoveError{Step: "continue", Snapshot: snap, Err: err}
	}
	lap(&tm.Restore)
	if m.Rebind != nil {
		if err := m.Rebind(ctx); err != nil {
			return srv, tm, &MoveError{Step: "rebind", Snapshot: snap, Err: err}
		}
	}
	lap(&tm.Rebind)
	var retireErr error
	if m.Retire != nil {
		retireErr = m.Retire(ctx)
	}
	lap(&tm.Retire)
	tm.Total = time.Since(start)
	if retireErr != nil {
		return srv, tm, ftslerr.Errorf("ftsl: snapshot: move: retiring the old server: %w", retireErr)
	}
	return srv, tm, nil
}
