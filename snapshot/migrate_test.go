package snapshot_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/ftsl-go/ftsl/internal/testkit"
	"github.com/ftsl-go/ftsl/naming"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/snapshot"
)

// names is a naming service for a test: the server, and a client and resolver of it.
type names struct {
	nc  *naming.Client
	res *naming.Resolver
}

func startNaming(t testing.TB) *names {
	t.Helper()
	ns, err := naming.NewServer(naming.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(ns)
	nc := &naming.Client{BaseURL: hs.URL}
	res, err := naming.NewResolver(nc, naming.ResolverConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = res.Close()
		_ = ns.Close()
		hs.Close()
	})
	return &names{nc: nc, res: res}
}

// tally counts the copies of each message received: by direction, session and sequence number.
type tally struct {
	mu   sync.Mutex
	got  map[[3]uint64]int
	n    int
	more chan struct{} // closed and replaced at each message
}

func newTally() *tally { return &tally{got: make(map[[3]uint64]int), more: make(chan struct{})} }

func (c *tally) add(dir, session uint64, data []byte) {
	c.mu.Lock()
	c.got[[3]uint64{dir, session, binary.BigEndian.Uint64(data)}]++
	c.n++
	close(c.more)
	c.more = make(chan struct{})
	c.mu.Unlock()
}

// await waits until n messages were handled in all.
func (c *tally) await(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		got, more := c.n, c.more
		c.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-more:
		case <-ctx.Done():
			return fmt.Errorf("%d messages handled of %d", got, n)
		}
	}
}

// serverSide follows the server's sessions across the move, by ID.
type serverSide struct {
	mu      sync.Mutex
	current map[uint64]*oneway.Session
	moved   chan struct{} // closed once the sessions were restored
	// continued holds, for each session, the tickets that went on after the move, by ID.
	continued map[uint64]map[uint64]*oneway.Ticket
}

func (ss *serverSide) session(id uint64) *oneway.Session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.current[id]
}

// TestMigrateOneway moves a oneway server with 1, 10, 100 and 1000 clients, through a snapshot
// file, to a new port, while both sides send at every ack level and handle what they receive:
// the clients find it through the naming service's watch. Every message arrives once; every
// ticket ends processed, in the process that holds it at the end.
func TestMigrateOneway(t *testing.T) {
	for _, tc := range []struct{ clients, perClient int }{{1, 300}, {10, 60}, {100, 10}, {1000, 4}} {
		t.Run(fmt.Sprintf("clients=%d", tc.clients), func(t *testing.T) {
			if tc.clients == 1000 && testing.Short() {
				t.Skip("1000 clients: not in -short")
			}
			testMigrateOneway(t, tc.clients, tc.perClient)
		})
	}
}

func testMigrateOneway(t *testing.T, n, perClient int) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() { testkit.CheckGoroutines(t, base) }) // (after the naming service's cleanup)
	ctx := testkit.Ctx(t)
	nm := startNaming(t)
	cfg := oneway.Config{}
	ln, err := oneway.Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nm.nc.Bind(ctx, "server", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	rec := newTally()
	handle := func(dir, id uint64) func(context.Context, *oneway.Delivery) error {
		return func(_ context.Context, d *oneway.Delivery) error { rec.add(dir, id, d.Data); return nil }
	}
	ss := &serverSide{current: make(map[uint64]*oneway.Session), moved: make(chan struct{})}
	ccfg := cfg
	ccfg.Core.Resolver = nm.res
	// The default backoff (10 ms doubling to 2 s): the resolver's watch, not polling, brings
	// the clients to the new place.
	clients := make([]*oneway.Session, n)
	for i := range n {
		c, err := oneway.Dial(ctx, "server", ccfg)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = c
		s, err := ln.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ss.current[s.ID()] = s
		if err := c.Handle(handle(0, c.ID())); err != nil {
			t.Fatal(err)
		}
		if err := s.Handle(handle(1, s.ID())); err != nil {
			t.Fatal(err)
		}
	}
	var newLn *oneway.Listener
	defer func() {
		for _, c := range clients {
			c.Abort()
		}
		for _, c := range clients {
			<-c.Done()
		}
		_ = ln.Close()
		if newLn != nil {
			_ = newLn.Close()
		}
	}()

	// Both sides send; at half way every sender waits for the gate, which opens as the move starts.
	type sent struct {
		tk      *oneway.Ticket
		session uint64
		server  bool
	}
	var (
		mu         sync.Mutex
		tickets    []sent
		wg, half   sync.WaitGroup
		gate       = make(chan struct{})
		errs       = make(chan error, 2*n)
		msg        = func(k int) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 64), uint64(k)) }
		sendAll    func(id uint64, server bool, get func() *oneway.Session)
		serverSend = func(id uint64) func() *oneway.Session { return func() *oneway.Session { return ss.session(id) } }
	)
	sendAll = func(id uint64, server bool, get func() *oneway.Session) {
		defer wg.Done()
		halfway := false
		for k := 0; k < perClient; k++ {
			if k == perClient/2 && !halfway { // (k comes again if its send met the move)
				halfway = true
				half.Done()
				<-gate
			}
			tk, err := get().Send(ctx, msg(k), oneway.AckLevel(k%3))
			if errors.Is(err, oneway.ErrSessionMoved) && server {
				<-ss.moved // this process no longer has the session: the new one does
				k--
				continue
			}
			if err != nil {
				errs <- fmt.Errorf("session %d (server %v), message %d: %w", id, server, k, err)
				return
			}
			mu.Lock()
			tickets = append(tickets, sent{tk: tk, session: id, server: server})
			mu.Unlock()
		}
	}
	half.Add(2 * n)
	for _, c := range clients {
		wg.Add(2)
		go sendAll(c.ID(), false, func() *oneway.Session { return c })
		go sendAll(c.ID(), true, serverSend(c.ID()))
	}
	half.Wait()
	close(gate)

	path := filepath.Join(t.TempDir(), "server.snap")
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	newLn, tm, err := snapshot.Migrate(ctx, snapshot.Move[oneway.ListenerState, *oneway.Listener]{
		From: ln,
		Path: path,
		Restore: func(s *snapshot.Snapshot) (*oneway.Listener, error) {
			st, err := snapshot.Oneway(s)
			if err != nil {
				return nil, err
			}
			l, sessions, err := oneway.NewListenerFrom(nl, cfg, st)
			if err != nil {
				return nil, err
			}
			ss.mu.Lock()
			ss.continued = make(map[uint64]map[uint64]*oneway.Ticket, len(sessions))
			for _, s := range sessions {
				ss.current[s.ID()] = s
				byID := make(map[uint64]*oneway.Ticket)
				for _, tk := range s.Tickets() {
					byID[tk.ID()] = tk
				}
				ss.continued[s.ID()] = byID
				if err := s.Handle(handle(1, s.ID())); err != nil {
					ss.mu.Unlock()
					return nil, err
				}
			}
			ss.mu.Unlock()
			return l, nil
		},
		Rebind: func(ctx context.Context) error {
			_, err := nm.nc.Rebind(ctx, "server", nl.Addr().String())
			return err
		},
		Retire: func(context.Context) error { return ln.Close() },
	})
	if err != nil {
		t.Fatal(err)
	}
	close(ss.moved)
	t.Logf("%d clients: %d bytes; pause %v, serialize %v, write %v, read %v, restore %v, rebind %v, total %v",
		n, tm.Bytes, tm.Pause, tm.Serialize, tm.Write, tm.Read, tm.Restore, tm.Rebind, tm.Total)

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, s := range tickets {
		st, err := s.tk.Wait(ctx)
		if s.server && errors.Is(err, oneway.ErrSessionMoved) {
			// It went on in the new process.
			next := ss.continued[s.session][s.tk.ID()]
			if next == nil {
				t.Fatalf("session %d: ticket %d moved, and is not among the imported ones", s.session, s.tk.ID())
			}
			st, err = next.Wait(ctx)
		}
		want := oneway.StatusProcessed
		if s.tk.Level() == oneway.AckDelivered {
			want = oneway.StatusDelivered
		} else if s.tk.Level() == oneway.AckNone {
			want = oneway.StatusDelivered // AckNone: ends when the peer's session has it
		}
		if st != want || err != nil {
			t.Fatalf("session %d (server %v): ticket %d at %v ended %v, %v", s.session, s.server, s.tk.ID(), s.tk.Level(), st, err)
		}
	}
	// Every message arrives once: wait for the last ones (the tickets at AckNone and
	// AckDelivered may end before their handlers ran).
	want := 2 * n * perClient
	if err := rec.await(ctx, want); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.n != want || len(rec.got) != want {
		t.Fatalf("%d messages handled, %d distinct, of %d sent", rec.n, len(rec.got), want)
	}
	for k, c := range rec.got {
		if c != 1 {
			t.Fatalf("message %d of session %d (to the server: %v) handled %d times", k[2], k[1], k[0] == 1, c)
		}
	}
}
