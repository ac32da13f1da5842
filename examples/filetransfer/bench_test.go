//go:build unix

package main

import (
	"context"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/faultnet"
	"github.com/ftsl-go/ftsl/oneway"
)

// BenchmarkTransfer moves a 256 MiB file from one file to another over 127.0.0.1, side by side:
// TCP is a plain io.Copy from the file into a socket and from the socket into a file (sendfile
// and splice, no hashing); FTSL is the filetransfer sender and receiver, each hashing the file
// with SHA-256, over a direct connection; FTSLProxy goes through the fault-injecting proxy
// without faults; FTSLCut200ms through the proxy while it resets the connection every 200 ms.
// Each run includes connecting, and FTSL's includes the session handshake and graceful close.
func BenchmarkTransfer(b *testing.B) {
	src := benchFile(b)
	for _, hash := range []bool{false, true} {
		name := "TCP"
		if hash {
			name = "TCPSHA256"
		}
		b.Run(name, func(b *testing.B) {
			dst := filepath.Join(b.TempDir(), "copy")
			b.SetBytes(benchSize)
			cpu := startCPU()
			for b.Loop() {
				tcpCopy(b, src, dst, hash)
				b.StopTimer()
				os.Remove(dst)
				b.StartTimer()
			}
			cpu.report(b)
		})
	}
	b.Run("FTSL", func(b *testing.B) { benchFTSL(b, src, 0, false) })
	b.Run("FTSLProxy", func(b *testing.B) { benchFTSL(b, src, 0, true) })
	b.Run("FTSLCut200ms", func(b *testing.B) { benchFTSL(b, src, 200*time.Millisecond, true) })
}

// tcpCopy is the baseline: the file goes over a fresh TCP connection into a new file. With
// hash, each side also computes the file's SHA-256 on the way, as filetransfer does (and the
// copies then go through user space: no sendfile or splice).
func tcpCopy(b *testing.B, src, dst string, hash bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		out, err := os.Create(dst)
		if err != nil {
			done <- err
			return
		}
		var from io.Reader = c
		if hash {
			h := sha256.New()
			from = io.TeeReader(c, h)
			defer h.Sum(nil)
		}
		if _, err := io.Copy(out, from); err != nil {
			out.Close()
			done <- err
			return
		}
		done <- out.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	var from io.Reader = in
	if hash {
		h := sha256.New()
		from = io.TeeReader(in, h)
		defer h.Sum(nil)
	}
	if _, err := io.Copy(c, from); err != nil {
		b.Fatal(err)
	}
	in.Close()
	c.(*net.TCPConn).CloseWrite()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	c.Close()
}

// benchFTSL sends src with the filetransfer sender to a receiver in this process, directly or
// through a proxy that resets the connection every cut (0: never).
func benchFTSL(b *testing.B, src string, cut time.Duration, viaProxy bool) {
	rig := newRig(b)
	var cuts int64
	b.SetBytes(benchSize)
	cpu := startCPU()
	for b.Loop() {
		_, n := rig.transfer(b, src, cut, viaProxy)
		cuts += n
	}
	cpu.report(b)
	if cut > 0 {
		b.ReportMetric(float64(cuts)/float64(b.N), "cuts/op")
	}
}

// BenchmarkTransferPaired runs, in each iteration, one transfer of each kind back to back (a
// plain TCP copy, one hashing both ends, filetransfer direct, through the proxy, and through the proxy cut every
// 200 ms), and reports their speeds and ratios: on a machine shared with other work, transfers
// measured side by side see the same load, where BenchmarkTransfer's sub-benchmarks, run one
// after the other, may not.
func BenchmarkTransferPaired(b *testing.B) {
	src := benchFile(b)
	rig := newRig(b)
	dst := filepath.Join(b.TempDir(), "copy")
	var tcp, tcpSHA, direct, proxied, cutTime time.Duration
	var cuts int64
	for b.Loop() {
		began := time.Now()
		tcpCopy(b, src, dst, false)
		tcp += time.Since(began)
		os.Remove(dst)
		began = time.Now()
		tcpCopy(b, src, dst, true)
		tcpSHA += time.Since(began)
		os.Remove(dst)
		d, _ := rig.transfer(b, src, 0, false)
		direct += d
		d, _ = rig.transfer(b, src, 0, true)
		proxied += d
		d, n := rig.transfer(b, src, 200*time.Millisecond, true)
		cutTime += d
		cuts += n
	}
	mbs := func(d time.Duration) float64 { return float64(benchSize) * float64(b.N) / d.Seconds() / 1e6 }
	b.ReportMetric(mbs(tcp), "tcp-MB/s")
	b.ReportMetric(mbs(tcpSHA), "tcpsha-MB/s")
	b.ReportMetric(mbs(direct), "ftsl-MB/s")
	b.ReportMetric(mbs(proxied), "proxy-MB/s")
	b.ReportMetric(mbs(cutTime), "cut-MB/s")
	b.ReportMetric(tcp.Seconds()/direct.Seconds(), "ftsl/tcp")
	b.ReportMetric(tcpSHA.Seconds()/direct.Seconds(), "ftsl/tcpsha")
	b.ReportMetric(proxied.Seconds()/cutTime.Seconds(), "cut/uncut")
	b.ReportMetric(float64(cuts)/float64(b.N), "cuts/op")
}

// rig is a receiver serving in this process, with a proxy in front of it.
type rig struct {
	root  *os.Root
	addr  string
	proxy *faultnet.Proxy
}

func newRig(b *testing.B) *rig {
	root, err := os.OpenRoot(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { root.Close() })
	ln, err := oneway.Listen("127.0.0.1:0", receiverSessionConfig(oneway.Config{}))
	if err != nil {
		b.Fatal(err)
	}
	r := newReceiver(root, false, io.Discard, io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- r.serve(ctx, ln) }()
	b.Cleanup(func() {
		cancel()
		<-served
	})
	proxy, err := faultnet.NewProxy(ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { proxy.Close() })
	return &rig{root: root, addr: ln.Addr().String(), proxy: proxy}
}

// transfer sends src to the rig's receiver, through the proxy if viaProxy, with the connection
// cut every cut (0: never), and returns how long it took and how many connections were cut. The
// received file is removed afterwards, with the benchmark's timer stopped.
func (r *rig) transfer(b *testing.B, src string, cut time.Duration, viaProxy bool) (time.Duration, int64) {
	to := r.addr
	if viaProxy {
		to = r.proxy.Addr()
	}
	began := time.Now()
	stopCuts := cutEvery(r.proxy, cut)
	err := send(context.Background(), sendConfig{To: to, Paths: []string{src}, Progress: progressNone, Out: io.Discard})
	took := time.Since(began)
	cuts := stopCuts()
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if err := r.root.Remove("big.bin"); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	return took, cuts
}

// cpuClock measures the CPU time (user and system) the process spends, to report it per
// operation: on a shared machine it varies less than the wall time, and it tells a transfer
// limited by the CPU from one that waits.
type cpuClock struct{ start time.Duration }

func startCPU() cpuClock { return cpuClock{cpuTime()} }

func (c cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(cpuTime()-c.start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cutEvery resets every connection through proxy every d, until the returned function is
// called; that returns how many connections it reset. It does nothing for d 0.
func cutEvery(proxy *faultnet.Proxy, d time.Duration) (stop func() int64) {
	if d == 0 || proxy == nil {
		return func() int64 { return 0 }
	}
	quit, exited := make(chan struct{}), make(chan struct{})
	var n int64
	go func() {
		defer close(exited)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				n += int64(proxy.KillAll())
			}
		}
	}()
	return func() int64 {
		close(quit)
		<-exited
		return n
	}
}
