package snapshot_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/snapshot"
)

// BenchmarkMigrate moves a server with 1, 10, 100 and 1000 connected clients to a new port,
// through a snapshot file and the naming service, and splits the time as the paper's Figure 7
// does: pause (every session frozen), serialize, write (fsync included), read, restore (decode
// and rebuild), rebind, and the last client resumed, counted from the start of the move. The
// clients use the default reconnection backoff; the naming resolver's watch tells them of the
// move. Each iteration is one move.
func BenchmarkMigrate(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) { benchMigrate(b, n) })
	}
}

func benchMigrate(b *testing.B, n int) {
	ctx := context.Background()
	nm := startNaming(b)
	// Every client comes from 127.0.0.1: let the server take them all at once, as it would from
	// many addresses (the default lets one address hold 64 handshakes).
	cfg := oneway.Config{}
	cfg.Core.MaxHandshakes, cfg.Core.MaxHandshakesPerSource = 2048, 2048
	ln, err := oneway.Listen("127.0.0.1:0", cfg)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := nm.nc.Bind(ctx, "server", ln.Addr().String()); err != nil {
		b.Fatal(err)
	}
	var (
		mu      sync.Mutex
		resumed int
		last    time.Time
		all     = make(chan struct{}, 1)
	)
	ccfg := cfg
	ccfg.Core.Resolver = nm.res
	clients := make([]*oneway.Session, n)
	for i := range n {
		c, err := oneway.Dial(ctx, "server", ccfg)
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = c
		c.OnEvent(func(e events.Event) {
			if e.Kind != events.SessionResumed {
				return
			}
			mu.Lock()
			resumed++
			last = e.Time
			if resumed == n {
				all <- struct{}{}
			}
			mu.Unlock()
		})
		if _, err := ln.Accept(ctx); err != nil {
			b.Fatal(err)
		}
	}
	defer func() {
		for _, c := range clients {
			c.Abort()
		}
		_ = ln.Close()
	}()
	dir := b.TempDir()
	var sum snapshot.Timings
	var resume time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mu.Lock()
		resumed = 0
		mu.Unlock()
		nl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		old := ln
		start := time.Now()
		next, tm, err := snapshot.Migrate(ctx, snapshot.Move[oneway.ListenerState, *oneway.Listener]{
			From: old,
			Path: filepath.Join(dir, "server.snap"),
			Restore: func(s *snapshot.Snapshot) (*oneway.Listener, error) {
				st, err := snapshot.Oneway(s)
				if err != nil {
					return nil, err
				}
				l, _, err := oneway.NewListenerFrom(nl, cfg, st)
				return l, err
			},
			Rebind: func(ctx context.Context) error {
				_, err := nm.nc.Rebind(ctx, "server", nl.Addr().String())
				return err
			},
			Retire: func(context.Context) error { return old.Close() },
		})
		if err != nil {
			b.Fatal(err)
		}
		ln = next
		select {
		case <-all:
		case <-time.After(time.Minute):
			b.Fatalf("%d of %d clients resumed", resumed, n)
		}
		mu.Lock()
		resume += last.Sub(start)
		mu.Unlock()
		sum.Pause += tm.Pause
		sum.Serialize += tm.Serialize
		sum.Write += tm.Write
		sum.Read += tm.Read
		sum.Restore += tm.Restore
		sum.Rebind += tm.Rebind
		sum.Bytes = tm.Bytes
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / float64(b.N) / 1e6 }
	b.ReportMetric(ms(sum.Pause), "pause-ms")
	b.ReportMetric(ms(sum.Serialize), "serialize-ms")
	b.ReportMetric(ms(sum.Write), "write-ms")
	b.ReportMetric(ms(sum.Read), "read-ms")
	b.ReportMetric(ms(sum.Restore), "restore-ms")
	b.ReportMetric(ms(sum.Rebind), "rebind-ms")
	b.ReportMetric(ms(resume), "last-resumed-ms")
	b.ReportMetric(float64(sum.Bytes), "snapshot-B")
}
