package naming

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// isClosed reports whether ch is closed (a nil channel never is).
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// memSetup is a naming server in memory, a client of it and a Resolver over the client, for a
// synctest bubble. Everything is closed when the bubble's function returns.
type memSetup struct {
	s  *Server
	tr *memTransport
	c  *Client
	r  *Resolver
}

func newMemSetup(t *testing.T, scfg ServerConfig, rcfg ResolverConfig) *memSetup {
	t.Helper()
	s, err := NewServer(scfg)
	if err != nil {
		t.Fatal(err)
	}
	tr := &memTransport{h: s}
	c := memClient(tr, scfg.Token)
	r, err := NewResolver(c, rcfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &memSetup{s: s, tr: tr, c: c, r: r}
	t.Cleanup(func() {
		_ = m.r.Close()
		_ = m.s.Close()
	})
	return m
}

// TestResolverChanged: Changed closes when the name is rebound, and Resolve then gives the new
// address from the cache, without asking the server.
func TestResolverChanged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemSetup(t, ServerConfig{}, ResolverConfig{})
		bg := t.Context()
		if _, err := m.c.Bind(bg, "svc", "127.0.0.1:1000"); err != nil {
			t.Fatal(err)
		}
		if addr, err := m.r.Resolve(bg, "svc"); err != nil || addr != "127.0.0.1:1000" {
			t.Fatalf("Resolve: %q %v", addr, err)
		}
		synctest.Wait() // the watch loop waits at the server now
		ch := m.r.Changed("svc")
		if isClosed(ch) {
			t.Fatal("Changed closed before any change")
		}
		before := len(m.tr.seen())
		if addr, err := m.r.Resolve(bg, "svc"); err != nil || addr != "127.0.0.1:1000" {
			t.Fatalf("Resolve: %q %v", addr, err)
		}
		if n := len(m.tr.seen()) - before; n != 0 {
			t.Errorf("Resolve with a live watch made %d requests", n)
		}

		start := time.Now()
		if _, err := m.c.Rebind(bg, "svc", "127.0.0.1:2000"); err != nil {
			t.Fatal(err)
		}
		<-ch // a bubble whose goroutines all block fails the test: no sleep, no timeout needed
		if d := time.Since(start); d != 0 {
			t.Errorf("Changed closed %v after the rebind, want at once", d)
		}
		if isClosed(m.r.Changed("svc")) != true {
			t.Error("Changed after a move, before Resolve: not closed")
		}
		if addr, err := m.r.Resolve(bg, "svc"); err != nil || addr != "127.0.0.1:2000" {
			t.Fatalf("Resolve after the rebind: %q %v", addr, err)
		}
		if isClosed(m.r.Changed("svc")) {
			t.Error("Changed after Resolve saw the move: closed")
		}

		// A move between Resolve and Changed: Changed is closed already.
		synctest.Wait()
		if _, err := m.c.Rebind(bg, "svc", "127.0.0.1:3000"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !isClosed(m.r.Changed("svc")) {
			t.Error("Changed after a move Resolve did not see: not closed")
		}
		// A rebind to the same address is a move too (the server restarted there): its clients
		// should try again at once.
		if addr, _ := m.r.Resolve(bg, "svc"); addr != "127.0.0.1:3000" {
			t.Fatalf("Resolve: %q", addr)
		}
		ch = m.r.Changed("svc")
		if _, err := m.c.Rebind(bg, "svc", "127.0.0.1:3000"); err != nil {
			t.Fatal(err)
		}
		<-ch
	})
}

// TestResolverUnbound: a name not bound resolves to ErrNotFound; its bind closes Changed, and
// so does its unbind.
func TestResolverUnbound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemSetup(t, ServerConfig{}, ResolverConfig{})
		bg := t.Context()
		if _, err := m.r.Resolve(bg, "svc"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Resolve of an unbound name: %v", err)
		}
		synctest.Wait()
		ch := m.r.Changed("svc")
		// Writes to other names move the server's index, not this name.
		if _, err := m.c.Bind(bg, "other", "127.0.0.1:9"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if isClosed(ch) {
			t.Error("a write to another name closed Changed")
		}
		if _, err := m.r.Resolve(bg, "svc"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Resolve of an unbound name: %v", err)
		}
		if _, err := m.c.Bind(bg, "svc", "127.0.0.1:1000"); err != nil {
			t.Fatal(err)
		}
		<-ch
		if addr, err := m.r.Resolve(bg, "svc"); err != nil || addr != "127.0.0.1:1000" {
			t.Fatalf("Resolve after the bind: %q %v", addr, err)
		}
		ch = m.r.Changed("svc")
		if err := m.c.Unbind(bg, "svc"); err != nil {
			t.Fatal(err)
		}
		<-ch
		if _, err := m.r.Resolve(bg, "svc"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Resolve after the unbind: %v", err)
		}
	})
}

// TestResolverServerDown: while the naming server is down the watch loop backs off, doubling
// and jittered, and Resolve gives the address known last; once a server answers again the loop
// finds the rebind made meanwhile and closes Changed.
func TestResolverServerDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "names.json")
		const bmin, bmax = 100 * time.Millisecond, 2 * time.Second
		m := newMemSetup(t, ServerConfig{DataFile: file}, ResolverConfig{BackoffMin: bmin, BackoffMax: bmax})
		bg := t.Context()
		if _, err := m.c.Bind(bg, "svc", "127.0.0.1:1000"); err != nil {
			t.Fatal(err)
		}
		if _, err := m.r.Resolve(bg, "svc"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		ch := m.r.Changed("svc")

		// The server goes away: its watch is answered 503, then nothing answers.
		m.tr.set(nil)
		_ = m.s.Close()
		down := time.Now()
		synctest.Wait()
		if isClosed(ch) {
			t.Fatal("the server going down closed Changed")
		}
		if addr, err := m.r.Resolve(bg, "svc"); err != nil || addr != "127.0.0.1:1000" {
			t.Errorf("Resolve with the server down: %q %v, want the address known last", addr, err)
		}
		time.Sleep(30 * time.Second) // fake time: the loop retries meanwhile

		// The loop's attempts while down: at least half the backoff apart, which doubles up to
		// bmax; never more than watchBurst in a watchPeriod.
		var at []time.Time
		for _, q := range m.tr.seen() {
			if q.down && strings.Contains(q.query, "index=") {
				at = append(at, q.at)
			}
		}
		if len(at) < 10 || len(at) > 30 {
			t.Errorf("%d attempts in 30s of downtime with backoff %v to %v", len(at), bmin, bmax)
		}
		backoff, prev := bmin, down
		for i, a := range at {
			gap := a.Sub(prev)
			if gap < backoff/2 || gap > max(backoff, watchPeriod) {
				t.Errorf("attempt %d came %v after the last, backoff %v", i, gap, backoff)
			}
			if i >= watchBurst && a.Sub(at[i-watchBurst]) < watchPeriod {
				t.Errorf("attempts %d to %d within %v", i-watchBurst, i, a.Sub(at[i-watchBurst]))
			}
			backoff, prev = min(2*backoff, bmax), a
		}

		// A new server on the same file; the name is rebound there while the loop backs off.
		s2, err := NewServer(ServerConfig{DataFile: file})
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		m.tr.set(s2)
		c2 := memClient(&memTransport{h: s2}, "") // not through m.tr: no lookup to wake the loop
		if _, err := c2.Rebind(bg, "svc", "127.0.0.1:2000"); err != nil {
			t.Fatal(err)
		}
		back := time.Now()
		<-ch
		if d := time.Since(back); d > bmax {
			t.Errorf("the loop found the server again %v after it came back, backoff max %v", d, bmax)
		}
		if addr, err := m.r.Resolve(bg, "svc"); err != nil || addr != "127.0.0.1:2000" {
			t.Errorf("Resolve after the server came back: %q %v", addr, err)
		}
	})
}

// TestResolverLookupKicks: a lookup that reaches the server while the watch loop backs off
// makes the loop try again at once, not at the end of its backoff.
func TestResolverLookupKicks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemSetup(t, ServerConfig{}, ResolverConfig{BackoffMin: time.Hour, BackoffMax: time.Hour})
		bg := t.Context()
		if _, err := m.c.Bind(bg, "svc", "127.0.0.1:1000"); err != nil {
			t.Fatal(err)
		}
		if _, err := m.r.Resolve(bg, "svc"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		m.tr.set(nil)
		_ = m.s.Close()
		synctest.Wait() // the loop sleeps for half an hour at least
		s2, err := NewServer(ServerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		m.tr.set(s2)
		if _, err := m.c.Bind(bg, "svc", "127.0.0.1:2000"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if addr, err := m.r.Resolve(bg, "svc"); err != nil || addr != "127.0.0.1:2000" {
			t.Fatalf("Resolve: %q %v", addr, err)
		}
		synctest.Wait()
		m.r.mu.Lock()
		live := m.r.names["svc"].live
		m.r.mu.Unlock()
		if !live || time.Since(start) != 0 {
			t.Errorf("after a lookup reached the server: live %v after %v", live, time.Since(start))
		}
	})
}

// TestResolverServerLostData: a server whose versions went backwards (it lost its data) is
// believed: the loop takes its binding and closes Changed.
func TestResolverServerLostData(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemSetup(t, ServerConfig{}, ResolverConfig{})
		bg := t.Context()
		for _, addr := range []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"} {
			if _, err := m.c.Rebind(bg, "svc", addr); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := m.r.Resolve(bg, "svc"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		ch := m.r.Changed("svc")
		s2, err := NewServer(ServerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if _, err := memClient(&memTransport{h: s2}, "").Bind(bg, "svc", "127.0.0.1:9"); err != nil {
			t.Fatal(err)
		}
		m.tr.set(s2)
		_ = m.s.Close() // the watch fails; the next, at index 3, reaches s2 at index 1
		<-ch
		if addr, err := m.r.Resolve(bg, "svc"); err != nil || addr != "127.0.0.1:9" {
			t.Errorf("Resolve: %q %v", addr, err)
		}
	})
}

// TestResolverRateLimit: against a name that changes all the time, the loop makes at most
// watchBurst watches per watchPeriod, and still follows.
func TestResolverRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemSetup(t, ServerConfig{}, ResolverConfig{})
		bg := t.Context()
		if _, err := m.c.Bind(bg, "svc", "127.0.0.1:1"); err != nil {
			t.Fatal(err)
		}
		// Every request first rebinds the name: each watch answers at once.
		churn := &memTransport{h: m.s}
		cc := memClient(churn, "")
		m.tr.set(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := cc.Rebind(r.Context(), "svc", "127.0.0.1:2"); err != nil {
				t.Error(err)
			}
			m.s.ServeHTTP(w, r)
		}))
		if _, err := m.r.Resolve(bg, "svc"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		n := 0
		for _, q := range m.tr.seen() {
			if strings.Contains(q.query, "index=") {
				n++
			}
		}
		// (The first answer moves the name from :1 to :2, which starts the count over once.)
		if n < 10 || n > watchBurst*10+2*watchBurst {
			t.Errorf("%d watches in 10s of churn, want about %d per %v", n, watchBurst, watchPeriod)
		}
	})
}

// TestResolverMaxNames: names beyond MaxNames are looked up every time and not watched.
func TestResolverMaxNames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemSetup(t, ServerConfig{}, ResolverConfig{MaxNames: 1})
		bg := t.Context()
		for _, name := range []string{"a", "b"} {
			if _, err := m.c.Bind(bg, name, "127.0.0.1:1"); err != nil {
				t.Fatal(err)
			}
			if _, err := m.r.Resolve(bg, name); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if m.r.Changed("a") == nil || m.r.Changed("b") != nil || m.r.Changed("never") != nil {
			t.Error("Changed: want a channel for a alone")
		}
		before := len(m.tr.seen())
		for range 3 {
			if addr, err := m.r.Resolve(bg, "b"); err != nil || addr != "127.0.0.1:1" {
				t.Fatalf("Resolve(b): %q %v", addr, err)
			}
		}
		if n := len(m.tr.seen()) - before; n != 3 {
			t.Errorf("3 Resolves of an unwatched name made %d requests", n)
		}
		if _, err := m.r.Resolve(bg, "c"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resolve of an unbound unwatched name: %v", err)
		}
	})
}

// TestResolverClose: Close ends every watch loop (the bubble would not end otherwise), and
// Resolve then looks names up.
func TestResolverClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemSetup(t, ServerConfig{}, ResolverConfig{})
		bg := t.Context()
		for _, name := range []string{"a", "b", "c"} {
			if _, err := m.c.Bind(bg, name, "127.0.0.1:1"); err != nil {
				t.Fatal(err)
			}
			if _, err := m.r.Resolve(bg, name); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if err := m.r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := m.r.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := m.c.Rebind(bg, "a", "127.0.0.1:2"); err != nil {
			t.Fatal(err)
		}
		if addr, err := m.r.Resolve(bg, "a"); err != nil || addr != "127.0.0.1:2" {
			t.Errorf("Resolve after Close: %q %v", addr, err)
		}
		if _, err := m.r.Resolve(bg, "d"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resolve of a new name after Close: %v", err)
		}
		synctest.Wait()
		m.r.mu.Lock()
		defer m.r.mu.Unlock()
		if len(m.r.names) != 3 {
			t.Errorf("Resolve after Close started watching: %d names", len(m.r.names))
		}
	})
}

// TestResolverConfig: impossible values are refused, naming the field.
func TestResolverConfig(t *testing.T) {
	c := &Client{BaseURL: "http://127.0.0.1:1"}
	for _, tc := range []struct {
		cfg   ResolverConfig
		field string
	}{
		{ResolverConfig{MaxNames: -1}, "MaxNames"},
		{ResolverConfig{BackoffMin: -1}, "BackoffMin"},
		{ResolverConfig{BackoffMax: -1}, "BackoffMax"},
		{ResolverConfig{BackoffMin: time.Second, BackoffMax: time.Millisecond}, "BackoffMax"},
	} {
		if _, err := NewResolver(c, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%+v: %v", tc.cfg, err)
		}
	}
	if _, err := NewResolver(nil, ResolverConfig{}); err == nil {
		t.Error("nil Client accepted")
	}
	r, err := NewResolver(c, ResolverConfig{BackoffMin: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.cfg.BackoffMax != time.Minute || r.cfg.MaxNames != DefaultResolverMaxNames {
		t.Errorf("defaults: %+v", r.cfg)
	}
	if _, err := r.Resolve(context.Background(), "a b"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Resolve of a bad name: %v", err)
	}
}

// TestResolverFollowsQuickMoves: a server that moves several times in a row (a benchmark, an
// operator trying hosts) is followed at once every time: the watch rate limit holds back a busy
// loop, not moves.
func TestResolverFollowsQuickMoves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemSetup(t, ServerConfig{}, ResolverConfig{})
		bg := t.Context()
		if _, err := m.c.Bind(bg, "svc", "127.0.0.1:1000"); err != nil {
			t.Fatal(err)
		}
		if _, err := m.r.Resolve(bg, "svc"); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 2*watchBurst; i++ {
			synctest.Wait() // the watch waits at the server
			ch := m.r.Changed("svc")
			start := time.Now()
			addr := fmt.Sprintf("127.0.0.1:%d", 1000+i)
			if _, err := m.c.Rebind(bg, "svc", addr); err != nil {
				t.Fatal(err)
			}
			<-ch
			if d := time.Since(start); d != 0 {
				t.Fatalf("move %d heard %v after the rebind, want at once", i, d)
			}
			if got, err := m.r.Resolve(bg, "svc"); err != nil || got != addr {
				t.Fatalf("move %d: Resolve %q %v", i, got, err)
			}
		}
	})
}
