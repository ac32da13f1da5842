package core

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// benchPair opens a session over loopback TCP and returns both ends.
func benchPair(b *testing.B, cfg Config) (client, server *Session, cleanup func()) {
	b.Helper()
	ln, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, ln.Addr().String(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	s, err := ln.Accept(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return c, s, func() {
		c.Abort()
		_ = ln.Close()
		<-c.Done()
	}
}

var benchAckDelay = func() time.Duration { d, _ := time.ParseDuration(os.Getenv("BENCH_ACKDELAY")); return d }()

func benchOneWayFTSL(b *testing.B, size int) {
	c, s, cleanup := benchPair(b, Config{})
	defer cleanup()
	msg := make([]byte, size)
	ctx := context.Background()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	done := make(chan error, 1)
	b.ResetTimer()
	go func() {
		// The receive loop a one-at-a-time receiver is meant to write: settle the message
		// just handled and take the next under one lock (as the paper's Recv did implicitly).
		var m Message
		var err error
		for i := 0; i < b.N; i++ {
			if i == 0 {
				m, err = s.Recv(ctx)
			} else {
				m, err = s.SettleAndRecv(ctx, m.ID, nil)
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- s.Settle(m.ID, nil)
	}()
	for i := 0; i < b.N; i++ {
		if _, err := c.Send(ctx, msg, AckNone); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}

func benchOneWayTCP(b *testing.B, size int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	sc := <-accepted
	defer sc.Close()
	msg := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	done := make(chan error, 1)
	b.ResetTimer()
	go func() {
		r := bufio.NewReaderSize(sc, 64<<10)
		buf := make([]byte, size)
		var hdr [4]byte
		for i := 0; i < b.N; i++ {
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				done <- err
				return
			}
			n := binary.BigEndian.Uint32(hdr[:])
			if _, err := io.ReadFull(r, buf[:n]); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	w := bufio.NewWriterSize(cc, 64<<10)
	var hdr [4]byte
	for i := 0; i < b.N; i++ {
		binary.BigEndian.PutUint32(hdr[:], uint32(size))
		w.Write(hdr[:])
		w.Write(msg)
	}
	w.Flush()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}

func BenchmarkOneWay(b *testing.B) {
	for _, size := range []int{128, 16 << 10} {
		b.Run("tcp/"+sizeName(size), func(b *testing.B) { benchOneWayTCP(b, size) })
		b.Run("ftsl/"+sizeName(size), func(b *testing.B) { benchOneWayFTSL(b, size) })
	}
}

// BenchmarkRoundTrip measures request-reply: a 128-byte request, a 128-byte reply, one at a
// time. It reports the median and 99th percentile round trip beside the mean (ns/op). The echo
// server runs in this process ("inproc"), or in a child process ("2proc") as it would in real
// use, so each side has its own scheduler.
func BenchmarkRoundTrip(b *testing.B) {
	for _, where := range []string{"inproc", "2proc"} {
		b.Run(where+"/tcp", func(b *testing.B) { benchRoundTrip(b, "tcp", where) })
		b.Run(where+"/ftsl", func(b *testing.B) { benchRoundTrip(b, "ftsl", where) })
	}
}

func benchRoundTrip(b *testing.B, kind, where string) {
	var addr string
	if where == "inproc" {
		addr = startEcho(b, kind)
	} else {
		addr = startEchoChild(b, kind)
	}
	lat := newLatencies(b.N)
	msg := make([]byte, 128)
	ctx := context.Background()
	var roundTrip func() error
	if kind == "tcp" {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		r, w := bufio.NewReader(c), bufio.NewWriter(c)
		var hdr [4]byte
		roundTrip = func() error {
			binary.BigEndian.PutUint32(hdr[:], uint32(len(msg)))
			w.Write(hdr[:])
			w.Write(msg)
			if err := w.Flush(); err != nil {
				return err
			}
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return err
			}
			_, err := io.ReadFull(r, msg)
			return err
		}
	} else {
		c, err := Dial(ctx, addr, Config{AckDelay: benchAckDelay})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { c.Abort(); <-c.Done() }()
		roundTrip = func() error {
			if _, err := c.Send(ctx, msg, AckNone); err != nil {
				return err
			}
			m, err := c.Recv(ctx)
			if err == nil {
				err = c.Settle(m.ID, nil)
			}
			return err
		}
	}
	for i := 0; i < 100; i++ { // warm up: connection, buffers
		if err := roundTrip(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := roundTrip(); err != nil {
			b.Fatal(err)
		}
		lat.add(time.Since(t0))
	}
	b.StopTimer()
	lat.report(b)
}

// startEcho runs an echo server of the given kind in this process until the benchmark ends.
func startEcho(b *testing.B, kind string) string {
	addr, stop, err := serveEcho(kind)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(stop)
	return addr
}

// startEchoChild runs an echo server in a child process (this test binary, see TestMain).
func startEchoChild(b *testing.B, kind string) string {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FTSL_BENCH_ECHO="+kind)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// TestMain doubles as the echo server of the two-process benchmarks, and as the clients of
// BenchmarkIdleSessions.
func TestMain(m *testing.M) {
	if spec := os.Getenv("FTSL_BENCH_CLIENTS"); spec != "" {
		if err := runBenchClients(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if kind := os.Getenv("FTSL_BENCH_ECHO"); kind != "" {
		addr, stop, err := serveEcho(kind)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(addr)
		_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes our stdin
		stop()
		return
	}
	os.Exit(m.Run())
}

// serveEcho starts an echo server: every message comes back to its sender.
func serveEcho(kind string) (addr string, stop func(), err error) {
	if kind == "tcp" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", nil, err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					r, w := bufio.NewReader(c), bufio.NewWriter(c)
					buf := make([]byte, 64<<10)
					var hdr [4]byte
					for {
						if _, err := io.ReadFull(r, hdr[:]); err != nil {
							return
						}
						n := binary.BigEndian.Uint32(hdr[:])
						if _, err := io.ReadFull(r, buf[:n]); err != nil {
							return
						}
						w.Write(hdr[:])
						w.Write(buf[:n])
						if err := w.Flush(); err != nil {
							return
						}
					}
				}()
			}
		}()
		return ln.Addr().String(), func() { ln.Close() }, nil
	}
	ln, err := Listen("127.0.0.1:0", Config{AckDelay: benchAckDelay})
	if err != nil {
		return "", nil, err
	}
	go func() {
		ctx := context.Background()
		for {
			s, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				for {
					m, err := s.Recv(ctx)
					if err != nil {
						return
					}
					_, err = s.Send(ctx, m.Data, AckNone)
					_ = s.Settle(m.ID, nil)
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), func() { ln.Close() }, nil
}

// latencies keeps per-operation durations to report percentiles.
type latencies struct{ d []time.Duration }

func newLatencies(n int) *latencies { return &latencies{d: make([]time.Duration, 0, n)} }

func (l *latencies) add(d time.Duration) { l.d = append(l.d, d) }

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	b.ReportMetric(float64(l.d[len(l.d)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(l.d[len(l.d)*99/100].Nanoseconds())/1e3, "p99-µs")
}

func sizeName(n int) string {
	if n >= 1024 {
		return itoa(n>>10) + "KiB"
	}
	return itoa(n) + "B"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// BenchmarkFanOut sends one payload to N sessions per op, as a pubsub hub does, with the payload
// copied into each session's sent buffer (Send) or kept once by reference (SendShared), or as
// SendShared with the writers woken once per 16 payloads by a Flusher (deferred), as a hub routes
// a burst of publishes. Receivers in other goroutines take and settle every message. It reports
// deliveries per second.
func BenchmarkFanOut(b *testing.B) {
	for _, size := range []int{128, 8 << 10} {
		for _, n := range []int{10, 100} {
			for _, mode := range []string{"copy", "shared", "deferred"} {
				b.Run(fmt.Sprintf("%s/%s/N=%d", mode, sizeName(size), n), func(b *testing.B) {
					benchFanOut(b, size, n, mode)
				})
			}
		}
	}
}

func benchFanOut(b *testing.B, size, n int, mode string) {
	ln, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ctx := context.Background()
	var hub []*Session
	done := make(chan error, n)
	for i := 0; i < n; i++ {
		c, err := Dial(ctx, ln.Addr().String(), Config{})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { c.Abort(); <-c.Done() }()
		s, err := ln.Accept(ctx)
		if err != nil {
			b.Fatal(err)
		}
		hub = append(hub, s)
		go func() {
			for i := 0; i < b.N; i++ {
				m, err := c.Recv(ctx)
				if err != nil {
					done <- err
					return
				}
				_ = c.Settle(m.ID, nil)
			}
			done <- nil
		}()
	}
	b.SetBytes(int64(size * n))
	b.ReportAllocs()
	b.ResetTimer()
	var f Flusher
	for i := 0; i < b.N; i++ {
		p := make([]byte, size) // a publisher's payload: fresh, then never changed
		for _, s := range hub {
			var err error
			switch mode {
			case "shared":
				_, err = s.SendShared(ctx, nil, p, AckNone)
			case "deferred":
				if _, err = s.TrySendSharedDeferred(&f, nil, p, AckNone); errors.Is(err, ErrBufferFull) {
					f.Flush() // (before waiting: the writer that makes room may wait in f)
					_, err = s.SendShared(ctx, nil, p, AckNone)
				}
			default:
				_, err = s.Send(ctx, p, AckNone)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		if i%16 == 15 {
			f.Flush()
		}
	}
	f.Flush()
	for range n {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
}
