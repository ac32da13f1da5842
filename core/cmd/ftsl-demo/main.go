// Command ftsl-demo shows an FTSL session riding through killed TCP connections with nothing lost.
//
// It runs a server and a client in one process, joined through a proxy that resets the TCP
// connection after a random amount of traffic, over and over. Both sides send messages of random
// sizes asking for every acknowledgement level; the server fails some on purpose. At the end the
// demo checks that every message arrived exactly once, in order, byte for byte, and that the
// sender heard the fate of every one.
//
//	go run ./core/cmd/ftsl-demo [-messages 20000] [-kill-every 262144]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/faultnet"
)

func main() {
	n := flag.Int("messages", 20000, "messages each side sends")
	every := flag.Int64("kill-every", 256<<10, "average bytes a connection carries before the proxy resets it")
	flag.Parse()
	if err := run(*n, *every); err != nil {
		fmt.Fprintln(os.Stderr, "ftsl-demo:", err)
		os.Exit(1)
	}
}

// watcher prints what happens to a session and counts the fates of its messages.
type watcher struct {
	name      string
	progress  atomic.Pointer[core.Progress]
	failed    atomic.Int64
	resumes   atomic.Int64
	processed chan struct{}
	want      uint64
	once      sync.Once
}

func (w *watcher) Progress(p core.Progress) {
	w.progress.Store(&p)
	if p.Processed >= w.want {
		w.once.Do(func() { close(w.processed) })
	}
}

func (w *watcher) Failed(uint64, string) { w.failed.Add(1) }

func (w *watcher) StateChanged(st core.State, err error) {
	if st == core.StateConnected {
		w.resumes.Add(1)
	}
}

func run(n int, every int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ln, err := core.Listen("127.0.0.1:0", core.Config{})
	if err != nil {
		return err
	}
	defer ln.Close()
	proxy, err := faultnet.NewProxy(ln.Addr().String())
	if err != nil {
		return err
	}
	defer proxy.Close()
	proxy.SetChaos(faultnet.Chaos{MinBytes: 1, MaxBytes: 2 * every, Seed: time.Now().UnixNano()})

	fmt.Printf("server on %s; client goes through a proxy at %s that resets TCP every ~%d KiB\n",
		ln.Addr(), proxy.Addr(), every>>10)
	cfg := core.Config{BackoffMin: time.Millisecond, BackoffMax: 50 * time.Millisecond}
	var client *core.Session
	for client == nil { // the proxy may kill even the first handshake
		if client, err = core.Dial(ctx, proxy.Addr(), cfg); err != nil && ctx.Err() != nil {
			return err
		}
	}
	server, err := ln.Accept(ctx)
	if err != nil {
		return err
	}
	cw := &watcher{name: "client", processed: make(chan struct{}), want: uint64(n)}
	sw := &watcher{name: "server", processed: make(chan struct{}), want: uint64(n)}
	client.Observe(cw)
	server.Observe(sw)
	fmt.Printf("session %016x open; %d messages each way, 1 B to 32 KiB, every ack level\n", client.ID(), n)

	start := time.Now()
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); errs <- send(ctx, client, 1, n) }()
	go func() { defer wg.Done(); errs <- send(ctx, server, 2, n) }()
	go func() { defer wg.Done(); errs <- receive(ctx, server, 1, n) }()
	go func() { defer wg.Done(); errs <- receive(ctx, client, 2, n) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
wait:
	for {
		select {
		case <-finished:
			break wait
		case <-tick.C:
			st := client.Stats()
			fmt.Printf("  %5.1fs  %6d sent, %6d received, %4d connections killed so far\n",
				time.Since(start).Seconds(), st.MessagesSent, st.MessagesReceived, proxy.Stats().Killed)
		}
	}
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	for _, w := range []*watcher{cw, sw} {
		select {
		case <-w.processed:
		case <-ctx.Done():
			return fmt.Errorf("%s never heard the last message was processed", w.name)
		}
	}
	proxy.SetChaos(faultnet.Chaos{})
	if err := client.Close(ctx); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	cs, ps := client.Stats(), proxy.Stats()
	fmt.Printf("done in %.1fs: %d TCP connections reset under the session, %d resumes, %d frames resent\n",
		time.Since(start).Seconds(), ps.Killed, cs.Reconnects, cs.FramesResent)
	fmt.Printf("each side: %d of %d messages received exactly once, in order, byte for byte\n", n, n)
	fmt.Printf("each sender heard every fate: client %d processed (%d failed on purpose), server %d (%d failed)\n",
		cw.progress.Load().Processed, cw.failed.Load(), sw.progress.Load().Processed, sw.failed.Load())
	return nil
}

func level(i uint64) core.AckLevel { return core.AckLevel(i % 3) }

func content(seed, i uint64) []byte {
	r := rand.New(rand.NewPCG(seed, i))
	b := make([]byte, 1+r.IntN(32<<10))
	for k := range b {
		b[k] = byte(r.Uint32())
	}
	return b
}

func send(ctx context.Context, s *core.Session, seed uint64, n int) error {
	for i := uint64(1); i <= uint64(n); i++ {
		if _, err := s.Send(ctx, content(seed, i), level(i)); err != nil {
			return fmt.Errorf("send %d: %w", i, err)
		}
	}
	return nil
}

func receive(ctx context.Context, s *core.Session, seed uint64, n int) error {
	for i := uint64(1); i <= uint64(n); i++ {
		m, err := s.Recv(ctx)
		if err != nil {
			return fmt.Errorf("receive %d: %w", i, err)
		}
		if m.ID != i || !bytes.Equal(m.Data, content(seed, i)) {
			return fmt.Errorf("message %d: got ID %d with %d bytes: lost, duplicated or corrupted", i, m.ID, len(m.Data))
		}
		var fail error
		if m.Level == core.AckProcessed && i%10 == 0 {
			fail = errors.New("rejected on purpose")
		}
		if err := s.Settle(i, fail); err != nil {
			return err
		}
	}
	return nil
}
