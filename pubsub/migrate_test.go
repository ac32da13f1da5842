package pubsub

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/testkit"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/snapshot"
)

// movingHub is a hub whose clients find it through a resolver, so that it can move.
type movingHub struct {
	t    *testing.T
	cfg  HubConfig
	hub  *Hub
	addr atomic.Pointer[string]
	old  []*Hub
	// Where the hub moves to, and how clients reach it: loopback unless told otherwise.
	listen func() (net.Listener, error)
	dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

func loopback() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func startMovingHub(t *testing.T, cfg HubConfig) *movingHub {
	return startMovingHubOn(t, cfg, loopback, nil)
}

// startMovingHubOn starts the hub on a listener from listen, where it moves too; clients dial
// with dialer (nil: net.Dialer's).
func startMovingHubOn(t *testing.T, cfg HubConfig, listen func() (net.Listener, error),
	dialer func(context.Context, string, string) (net.Conn, error)) *movingHub {
	t.Helper()
	h, err := NewHub(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nl, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := oneway.NewListener(nl, cfg.Session)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = h.Serve(context.Background(), ln) }()
	for h.Addr() == nil { // (Serve has no signal of its start but this)
		time.Sleep(100 * time.Microsecond)
	}
	mh := &movingHub{t: t, cfg: cfg, hub: h, listen: listen, dialer: dialer}
	a := ln.Addr().String()
	mh.addr.Store(&a)
	return mh
}

// dial connects a client that follows the hub where it moves; the test's cleanup aborts it.
func (mh *movingHub) dial(name string) *Client {
	mh.t.Helper()
	cfg := Config{Name: name}
	cfg.Session.Core.Resolver = core.ResolverFunc(func(context.Context, string) (string, error) { return *mh.addr.Load(), nil })
	cfg.Session.Core.BackoffMin, cfg.Session.Core.BackoffMax = time.Millisecond, 10*time.Millisecond
	cfg.Session.Core.Dial = mh.dialer
	c, err := Dial(testCtx(mh.t), "the hub", cfg)
	if err != nil {
		mh.t.Fatal(err)
	}
	return c
}

// move moves the hub to a new port through a snapshot file (snapshot.Migrate): pause, export,
// write, read, restore, point the clients there, close the old hub, serve.
func (mh *movingHub) move() HubState {
	mh.t.Helper()
	ctx := testCtx(mh.t)
	nl, err := mh.listen()
	if err != nil {
		mh.t.Fatal(err)
	}
	var st HubState
	old := mh.hub
	nh, _, err := snapshot.Migrate(ctx, snapshot.Move[HubState, *Hub]{
		From: old,
		Path: filepath.Join(mh.t.TempDir(), "hub.snap"),
		Restore: func(s *snapshot.Snapshot) (*Hub, error) {
			if st, err = HubStateFrom(s); err != nil {
				return nil, err
			}
			return NewHubFrom(nl, mh.cfg, st)
		},
		Rebind: func(context.Context) error {
			a := nl.Addr().String()
			mh.addr.Store(&a)
			return nil
		},
		Retire: old.Close,
	})
	if err != nil {
		_ = nl.Close()
		mh.t.Fatal(err)
	}
	mh.old = append(mh.old, old)
	mh.hub = nh
	return st
}

func (mh *movingHub) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mh.hub.Close(ctx); err != nil {
		mh.t.Errorf("closing the hub: %v", err)
	}
}

// received counts what every subscriber got, by publisher and sequence number.
type received struct {
	mu    sync.Mutex
	got   map[[3]uint32]int // subscriber, publisher, sequence
	total int
	more  chan struct{}
}

func (r *received) add(sub uint32, data []byte) {
	r.mu.Lock()
	r.got[[3]uint32{sub, binary.BigEndian.Uint32(data), binary.BigEndian.Uint32(data[4:])}]++
	r.total++
	close(r.more)
	r.more = make(chan struct{})
	r.mu.Unlock()
}

// awaitTotal waits until n copies arrived in all.
func (r *received) awaitTotal(ctx context.Context, n int) error {
	for {
		r.mu.Lock()
		total, more := r.total, r.more
		r.mu.Unlock()
		if total >= n {
			return nil
		}
		select {
		case <-more:
		case <-ctx.Done():
			return fmt.Errorf("%d copies of %d arrived", total, n)
		}
	}
}

// TestHubMigrate moves a hub mid-traffic with 1, 10, 100 and 1000 clients to a new port. Every
// client subscribes to its room and to a queue group, and the publishers go on publishing to the
// rooms at all three levels and to the group at AckProcessed while the hub moves: every copy
// must arrive once, every outcome must count every subscriber, and the subscriptions must hold
// for the publishes after the move.
func TestHubMigrate(t *testing.T) {
	for _, n := range []int{1, 10, 100, 1000} {
		t.Run(fmt.Sprintf("clients=%d", n), func(t *testing.T) {
			if n == 1000 && testing.Short() {
				t.Skip("1000 clients: not in -short")
			}
			testHubMigrate(t, startMovingHub(t, HubConfig{}), n)
		})
	}
}

// hubPlace is where testHubMigrate's hub runs, and how it moves: in this process, or from one
// child process to another.
type hubPlace interface {
	dial(name string) *Client
	move() HubState // and returns the state that moved
	close()
}

func testHubMigrate(t *testing.T, mh hubPlace, n int) {
	base := runtime.NumGoroutine()
	ctx := testCtx(t)
	rooms := min(n, 10)
	pubs := min(n, 8)
	perPub := 30 // publishes of each publisher, half before the move
	if n >= 1000 {
		perPub = 12
	}
	rec := &received{got: make(map[[3]uint32]int), more: make(chan struct{})}
	// The last publishes before the move are held by their subscribers until after it, so that
	// their outcomes are still to come when the hub moves.
	heldFrom, heldTo := perPub/2-2, perPub/2
	hold := make(chan struct{})
	var jobs atomic.Int64
	clients := make([]*Client, n)
	for i := range n {
		c := mh.dial(fmt.Sprintf("client-%d", i))
		clients[i] = c
		sub := uint32(i)
		if _, err := c.Subscribe(fmt.Sprintf("room.%d", i%rooms), func(_ context.Context, m *Msg) error {
			if k := int(binary.BigEndian.Uint32(m.Data[4:])); k >= heldFrom && k < heldTo {
				<-hold
			}
			rec.add(sub, m.Data)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe("jobs", func(context.Context, *Msg) error { jobs.Add(1); return nil }, Queue("workers")); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, c := range clients {
			c.Abort()
		}
		for _, c := range clients {
			<-c.Done()
		}
		mh.close()
		testkit.CheckGoroutines(t, base)
	}()
	members := make([]int, rooms)
	for i := range n {
		members[i%rooms]++
	}

	type sent struct {
		tk            *Ticket
		room, matched int
		job           bool
	}
	var (
		mu       sync.Mutex
		tickets  []sent
		wg       sync.WaitGroup
		half     sync.WaitGroup
		gate     = make(chan struct{})
		pubErr   = make(chan error, pubs)
		expected = 0
	)
	half.Add(pubs)
	for p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[p]
			data := make([]byte, 64)
			var held []*Ticket
			for k := range perPub {
				if k == heldTo {
					for _, tk := range held {
						select {
						case <-tk.Delivered():
						case <-ctx.Done():
							pubErr <- fmt.Errorf("publisher %d: held publish %d never delivered", p, tk.ID())
							half.Done()
							return
						}
					}
					half.Done()
					<-gate
				}
				room := (p + k) % rooms
				binary.BigEndian.PutUint32(data, uint32(p))
				binary.BigEndian.PutUint32(data[4:], uint32(k))
				level := AckLevel(k % 3)
				var opts []PublishOption
				if k >= heldFrom && k < heldTo {
					level, opts = AckProcessed, []PublishOption{ReportDelivered()}
				}
				tk, err := c.Publish(ctx, fmt.Sprintf("room.%d", room), data, level, opts...)
				if k >= heldFrom && k < heldTo {
					held = append(held, tk)
				}
				if err != nil {
					pubErr <- fmt.Errorf("publisher %d, publish %d: %w", p, k, err)
					return
				}
				jt, err := c.Publish(ctx, "jobs", data, AckProcessed)
				if err != nil {
					pubErr <- fmt.Errorf("publisher %d, job %d: %w", p, k, err)
					return
				}
				mu.Lock()
				tickets = append(tickets, sent{tk: tk, room: room, matched: members[room]}, sent{tk: jt, matched: 1, job: true})
				expected += members[room]
				mu.Unlock()
			}
		}()
	}
	half.Wait()
	close(gate)
	start := time.Now()
	st := mh.move()
	close(hold)
	t.Logf("%d clients: moved in %v with %d publishes in flight, %d waiting notices", n, time.Since(start), len(st.Publishes), countWaiting(st))
	if len(st.Members) != n {
		t.Fatalf("exported %d members of %d", len(st.Members), n)
	}
	if len(st.Publishes) < pubs*(heldTo-heldFrom) {
		t.Fatalf("exported %d publishes in flight; at least %d were held", len(st.Publishes), pubs*(heldTo-heldFrom))
	}
	wg.Wait()
	close(pubErr)
	for err := range pubErr {
		t.Fatal(err)
	}
	for _, s := range tickets {
		out, err := s.tk.Wait(ctx)
		if err != nil {
			t.Fatalf("publish %d (room %d, job %v): %v", s.tk.ID(), s.room, s.job, err)
		}
		if s.tk.Level() != AckNone && (out.Matched != s.matched || out.Delivered != s.matched || out.Failed != 0 ||
			s.tk.Level() == AckProcessed && out.Processed != s.matched) {
			t.Fatalf("publish %d at %v (room %d, job %v): outcome %+v, want %d matched", s.tk.ID(), s.tk.Level(), s.room, s.job, out, s.matched)
		}
	}
	if err := rec.awaitTotal(ctx, expected); err != nil {
		t.Fatal(err)
	}
	// Every publish of every publisher reached every member of its room once.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.total != expected {
		t.Fatalf("%d copies arrived, %d expected", rec.total, expected)
	}
	for k, c := range rec.got {
		if c != 1 {
			t.Fatalf("subscriber %d got publish %d of publisher %d %d times", k[0], k[2], k[1], c)
		}
		if int(k[0])%rooms != (int(k[1])+int(k[2]))%rooms {
			t.Fatalf("subscriber %d got publish %d of publisher %d, for another room", k[0], k[2], k[1])
		}
	}
	if j := jobs.Load(); j != int64(pubs*perPub) {
		t.Fatalf("%d jobs handled, %d published", j, pubs*perPub)
	}
}

func countWaiting(st HubState) int {
	n := 0
	for _, m := range st.Members {
		n += len(m.Waiting)
	}
	return n
}

// TestHubExportRefusals: Export needs a paused hub serving one listener, and works once.
func TestHubExportRefusals(t *testing.T) {
	ctx := testCtx(t)
	mh := startMovingHub(t, HubConfig{})
	defer mh.close()
	if _, err := mh.hub.Export(); !errors.Is(err, core.ErrNotPaused) {
		t.Fatalf("export without a pause: %v", err)
	}
	if err := mh.hub.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := mh.hub.Export(); err != nil {
		t.Fatal(err)
	}
	if _, err := mh.hub.Export(); !errors.Is(err, ErrMoved) {
		t.Fatalf("second export: %v", err)
	}
	if err := mh.hub.Continue(); !errors.Is(err, ErrMoved) {
		t.Fatalf("continue after the export: %v", err)
	}
}
