//go:build !race

// The side-by-side benchmarks: the same work done by NATS core, NATS JetStream and (once it
// exists) FTSL pubsub, in one run, so that the ratios between them mean something.
//
// Run the comparison with
//
//	go test -run '^$' -bench FanOut -count 6 -benchtime 1s . | tee fanout.txt
//	benchstat -filter '.unit:deliveries/s' fanout.txt   # ~/go/bin/benchstat; drop -filter for all units
//
// (about 75 s for the NATS half; benchstat gives a confidence interval from 6 samples up). It
// prints one row per FanOut/<system>/N=<n> with the median. Read it by ratios between rows of
// that one run, system against system at the same N. The machine has 2 cores shared with other
// people's builds and tests, so absolute figures move by 2x or more between runs and days (see
// README's Performance section): never set figures from two runs side by side.
//
// What the figures count:
//   - deliveries/s: b.N messages times N subscribers, divided by the time from the first publish
//     until every subscriber had every message (nats, pubsub-none) or until every message was
//     acknowledged by every consumer and the publisher had every PubAck (jetstream,
//     pubsub-processed). A run that loses or duplicates a message fails; it never reports a figure.
//   - ns/op and allocs/op are per published message and cover the whole process: the publisher,
//     the in-process server or hub, and all N subscribers. Setup (servers, connections, streams,
//     consumers) is outside the timer.
//
// nats-server runs in this process, so its goroutines share the 2 cores with the clients, as an
// FTSL hub in the same process would.
//
// These are benchmarks only: no Test function here starts a server, so `go test ./...` runs
// nothing from this file. The file is left out of race builds: a race-instrumented benchmark
// measures the detector, and leaving it out keeps `go test -race ./...` from compiling
// nats-server with the detector (about 40 s the first time) and from running one more binary.
// Check the harness itself with the tag removed: go test -race -run '^$' -bench FanOut -benchtime 300x .

package ftsl_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The fan-out shape every system is measured in. Pubsub's half uses the same values through
// runFanOut, so that each row has a counterpart in every column.
const (
	fanOutPayloadSize = 128
	// fanOutTimeout bounds a wait for deliveries that will never come (a dropped message, a
	// closed connection); a healthy run at the default benchtime ends in a few seconds.
	fanOutTimeout = 60 * time.Second
)

var fanOutSubscribers = []int{1, 10, 100}

// fanOutRound names each timed run's subjects and streams apart, so that nothing one run sent
// can be counted by the next.
var fanOutRound atomic.Uint64

// BenchmarkFanOut: one publisher publishes b.N messages of 128 B on one subject and each of N
// subscribers receives every one. Sub-benchmarks are FanOut/<system>/N=<n>.
func BenchmarkFanOut(b *testing.B) {
	// One server for every NATS sub-benchmark: they run one after another, and each timed run
	// makes its own subject or stream and deletes it afterwards.
	srv := startNATSServer(b)
	runFanOut(b, "nats", func(b *testing.B, n int) { benchNATSFanOut(b, srv.ClientURL(), n) })
	runFanOut(b, "jetstream", func(b *testing.B, n int) { benchJetStreamFanOut(b, srv.ClientURL(), n) })
	hub, addr := startHub(b)
	runFanOut(b, "pubsub-none", func(b *testing.B, n int) { benchPubsubFanOut(b, hub, addr, n, pubsub.AckNone) })
	runFanOut(b, "pubsub-processed", func(b *testing.B, n int) { benchPubsubFanOut(b, hub, addr, n, pubsub.AckProcessed) })
}

// startHub starts a pubsub hub on loopback in this process, as the NATS server runs, and closes
// it when tb's cleanup runs.
func startHub(tb testing.TB) (*pubsub.Hub, string) {
	tb.Helper()
	// A publisher flooding as fast as it can outruns its subscribers: with SlowBlock it waits for
	// them, as a NATS publisher's flush waits for the server, instead of failing their shares.
	h, err := pubsub.NewHub(pubsub.HubConfig{SlowConsumers: pubsub.SlowBlock, MaxBlock: fanOutTimeout})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := oneway.Listen("127.0.0.1:0", oneway.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = h.Serve(context.Background(), ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Close(ctx)
	})
	return h, ln.Addr().String()
}

// benchPubsubFanOut: FTSL pubsub, N subscribers each on its own client (its own session), a
// handler per subscription that returns nil (confirming each message), one publisher. At AckNone
// the timer stops when every subscriber has every message; at AckProcessed when the publisher
// has every outcome, each counting every subscriber as having processed the message.
func benchPubsubFanOut(b *testing.B, _ *pubsub.Hub, addr string, subscribers int, level pubsub.AckLevel) {
	ctx := context.Background()
	t := newFanOutTally(subscribers, b.N)
	subject := fmt.Sprintf("ftsl.bench.fanout.%d", fanOutRound.Add(1))
	dial := func() *pubsub.Client {
		c, err := pubsub.Dial(ctx, addr, pubsub.Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Abort(); <-c.Done() })
		return c
	}
	for i := range subscribers {
		c := dial()
		_, err := c.Subscribe(subject, func(_ context.Context, m *pubsub.Msg) error {
			if len(m.Data) != fanOutPayloadSize {
				t.fail(fmt.Errorf("subscriber %d: got %d bytes, want %d", i, len(m.Data), fanOutPayloadSize))
				return nil
			}
			switch n := t.got(i); {
			case n == t.want:
				t.complete()
			case n > t.want:
				t.fail(fmt.Errorf("subscriber %d: got %d messages, want %d", i, n, t.want))
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	pub := dial()
	payload := benchPayload(fanOutPayloadSize)
	var last *pubsub.Ticket
	var outcomes sync.WaitGroup
	var bad atomic.Int64

	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		tk, err := pub.Publish(ctx, subject, payload, level)
		if err != nil {
			b.Fatal(err)
		}
		if level == pubsub.AckProcessed {
			outcomes.Add(1)
			tk.OnEnd(func(tk *pubsub.Ticket) {
				defer outcomes.Done()
				if out, err := tk.Outcome(); err != nil || out.Processed != subscribers {
					bad.Add(1)
				}
			})
		}
		last = tk
	}
	if _, err := last.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	t.wait(b)
	outcomes.Wait()
	b.StopTimer()
	if n := bad.Load(); n > 0 {
		b.Fatalf("%d outcomes were not all processed", n)
	}
	reportDeliveries(b, subscribers)
}

// runFanOut runs bench as <system>/N=1, N=10 and N=100 under b.
func runFanOut(b *testing.B, system string, bench func(b *testing.B, subscribers int)) {
	b.Run(system, func(b *testing.B) {
		for _, n := range fanOutSubscribers {
			b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) { bench(b, n) })
		}
	})
}

// benchPayload returns a payload of size bytes. Its content is fixed so that a receiver can
// check what it got, and not all zeros so that nothing on the way can make it cheaper.
func benchPayload(size int) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	return p
}

// reportDeliveries reports deliveries/s: b.N messages reached each of subscribers in the timed
// span. Call it after b.StopTimer.
func reportDeliveries(b *testing.B, subscribers int) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)*float64(subscribers)/s, "deliveries/s")
	}
}

// fanOutTally counts what each subscriber received and tells the benchmark goroutine when every
// subscriber is complete or something went wrong. Subscriber goroutines call got, complete and
// fail; only the benchmark goroutine calls wait, since only it may stop the benchmark.
type fanOutTally struct {
	want   int64
	counts []paddedCount
	left   atomic.Int64 // subscribers not yet complete
	done   chan struct{}

	mu     sync.Mutex
	err    error         // the first failure; guarded by mu
	failed chan struct{} // closed with the first failure
	note   error         // the first non-fatal error, shown if the wait fails; guarded by mu
}

// paddedCount keeps each subscriber's counter on its own cache line: each is written by another
// goroutine on every message.
type paddedCount struct {
	n atomic.Int64
	_ [56]byte
}

func newFanOutTally(subscribers, want int) *fanOutTally {
	t := &fanOutTally{
		want:   int64(want),
		counts: make([]paddedCount, subscribers),
		done:   make(chan struct{}),
		failed: make(chan struct{}),
	}
	t.left.Store(int64(subscribers))
	return t
}

// got records one message for subscriber i and returns how many it has had, this one included.
func (t *fanOutTally) got(i int) int64 { return t.counts[i].n.Add(1) }

// complete marks one subscriber as having everything it must have.
func (t *fanOutTally) complete() {
	if t.left.Add(-1) == 0 {
		close(t.done)
	}
}

// fail stops the wait with err. Failures after every subscriber completed (a connection closed
// by the cleanup, say) are ignored: the run they belong to has been measured and checked.
func (t *fanOutTally) fail(err error) {
	select {
	case <-t.done:
		return
	default:
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = err
		close(t.failed)
	}
}

// noteErr keeps err to explain a failed wait, without failing: a client library may report
// errors it recovers from.
func (t *fanOutTally) noteErr(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.note == nil {
		t.note = err
	}
}

// wait returns when every subscriber is complete, and stops the benchmark if one failed or the
// wait took longer than fanOutTimeout.
func (t *fanOutTally) wait(b *testing.B) {
	b.Helper()
	timer := time.NewTimer(fanOutTimeout)
	defer timer.Stop()
	select {
	case <-t.done:
		return
	case <-t.failed:
		t.mu.Lock()
		err := t.err
		t.mu.Unlock()
		b.Fatalf("fan-out failed: %v (%s)", err, t.summary())
	case <-timer.C:
		b.Fatalf("fan-out incomplete after %v: %s", fanOutTimeout, t.summary())
	}
}

// summary says how far the subscribers got, for a failure message.
func (t *fanOutTally) summary() string {
	lo, hi, complete := t.want, int64(0), 0
	for i := range t.counts {
		n := t.counts[i].n.Load()
		lo, hi = min(lo, n), max(hi, n)
		if n == t.want {
			complete++
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d of %d subscribers complete; each got %d to %d of %d messages",
		complete, len(t.counts), lo, hi, t.want)
	t.mu.Lock()
	if t.note != nil {
		fmt.Fprintf(&sb, "; first client error: %v", t.note)
	}
	t.mu.Unlock()
	return sb.String()
}

// startNATSServer starts an embedded nats-server with JetStream on a random loopback port and its
// own store directory, and shuts it down when tb's cleanup runs.
func startNATSServer(tb testing.TB) *server.Server {
	tb.Helper()
	s, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT, // Port 0 would mean 4222
		NoLog:     true,
		NoSigs:    true,
		JetStream: true,
		StoreDir:  tb.TempDir(), // an empty StoreDir is shared by every server through the temp dir
	})
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server not ready for connections after 10s")
	}
	return s
}

// dialNATS connects to url; its close is registered with b.Cleanup. The connection does not
// reconnect: a connection the server drops (as a slow consumer, say) fails the run through t
// instead of silently losing what was in flight.
func dialNATS(b *testing.B, url string, t *fanOutTally) *nats.Conn {
	b.Helper()
	nc, err := nats.Connect(url,
		nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			t.fail(fmt.Errorf("nats async error: %w", err))
		}),
		nats.ClosedHandler(func(*nats.Conn) { t.fail(errors.New("nats connection closed")) }),
	)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return nc
}

// benchNATSFanOut: NATS core, at most once. Each subscriber has its own connection, as N
// processes would; the timer stops when every subscriber has counted all b.N messages.
func benchNATSFanOut(b *testing.B, url string, subscribers int) {
	t := newFanOutTally(subscribers, b.N)
	subject := fmt.Sprintf("ftsl.bench.fanout.%d", fanOutRound.Add(1))
	for i := range subscribers {
		nc := dialNATS(b, url, t)
		sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
			if len(m.Data) != fanOutPayloadSize {
				t.fail(fmt.Errorf("subscriber %d: got %d bytes, want %d", i, len(m.Data), fanOutPayloadSize))
				return
			}
			switch n := t.got(i); {
			case n == t.want:
				t.complete()
			case n > t.want:
				t.fail(fmt.Errorf("subscriber %d: got %d messages, want %d", i, n, t.want))
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		// Without this the client drops messages as a slow consumer and the figure is wrong;
		// the count above would catch it, but the run would fail instead of measuring.
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			b.Fatal(err)
		}
		// The server must have the subscription before the first publish.
		if err := nc.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	pub := dialNATS(b, url, t)
	payload := benchPayload(fanOutPayloadSize)

	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := pub.Publish(subject, payload); err != nil {
			b.Fatal(err)
		}
	}
	if err := pub.FlushTimeout(fanOutTimeout); err != nil {
		b.Fatal(err)
	}
	t.wait(b)
	b.StopTimer()
	reportDeliveries(b, subscribers)
}

// benchJetStreamFanOut: NATS JetStream, a fresh file-backed stream per timed run and N durable
// pull consumers on it, each on its own connection, each acking every message explicitly (NATS's
// defaults otherwise: MaxAckPending 1000, 500 messages per pull). The publisher publishes
// asynchronously. The timer stops when the publisher has every PubAck and the server has
// confirmed every consumer's last ack: a consumer acks its last message with DoubleAck, and the
// server applies one consumer's acks in the order they arrive, so that reply means all of that
// consumer's acks are in. After the timer, each consumer's state is checked against b.N.
func benchJetStreamFanOut(b *testing.B, url string, subscribers int) {
	ctx, cancel := context.WithTimeout(context.Background(), fanOutTimeout)
	defer cancel()
	t := newFanOutTally(subscribers, b.N)
	round := fanOutRound.Add(1)
	streamName := fmt.Sprintf("FANOUT%d", round)
	subject := fmt.Sprintf("ftsl.bench.js.%d", round)

	pubConn := dialNATS(b, url, t)
	js, err := jetstream.New(pubConn, jetstream.WithPublishAsyncErrHandler(
		func(_ jetstream.JetStream, _ *nats.Msg, err error) { t.fail(fmt.Errorf("publish: %w", err)) }))
	if err != nil {
		b.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     streamName,
		Subjects: []string{subject},
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The next timed run must not share the disk or the server with this stream.
		if err := js.DeleteStream(ctx, streamName); err != nil {
			b.Errorf("delete stream %s: %v", streamName, err)
		}
	})

	consumerNames := make([]string, subscribers)
	for i := range subscribers {
		consumerNames[i] = fmt.Sprintf("c%d", i)
		cjs, err := jetstream.New(dialNATS(b, url, t))
		if err != nil {
			b.Fatal(err)
		}
		cons, err := cjs.CreateConsumer(ctx, streamName, jetstream.ConsumerConfig{
			Durable:   consumerNames[i],
			AckPolicy: jetstream.AckExplicitPolicy,
			// Far past any run: a redelivery would be counted twice and fail the run.
			AckWait: 10 * fanOutTimeout,
		})
		if err != nil {
			b.Fatal(err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			if len(m.Data()) != fanOutPayloadSize {
				t.fail(fmt.Errorf("consumer %d: got %d bytes, want %d", i, len(m.Data()), fanOutPayloadSize))
				return
			}
			switch n := t.got(i); {
			case n < t.want:
				if err := m.Ack(); err != nil {
					t.fail(fmt.Errorf("consumer %d: ack: %w", i, err))
				}
			case n == t.want:
				if err := m.DoubleAck(ctx); err != nil {
					t.fail(fmt.Errorf("consumer %d: last ack: %w", i, err))
					return
				}
				t.complete()
			default:
				t.fail(fmt.Errorf("consumer %d: got %d messages, want %d", i, n, t.want))
			}
		}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { t.noteErr(err) }))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(cc.Stop) // runs before the stream is deleted and the connection closed
	}
	payload := benchPayload(fanOutPayloadSize)

	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for {
			_, err := js.PublishAsync(subject, payload)
			if err == nil {
				break
			}
			// Too many PubAcks outstanding for too long: the server is behind. Wait and
			// publish the same message again, as an application that must not lose it would.
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				b.Fatal(err)
			}
			if ctx.Err() != nil {
				b.Fatalf("publish stalled past %v: %s", fanOutTimeout, t.summary())
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-t.failed:
	case <-ctx.Done():
	}
	t.wait(b)
	b.StopTimer()
	if n := js.PublishAsyncPending(); n != 0 {
		b.Fatalf("%d PubAcks outstanding after every consumer acked", n)
	}
	reportDeliveries(b, subscribers)

	want := uint64(b.N)
	si, err := stream.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if si.State.Msgs != want || si.State.LastSeq != want {
		b.Fatalf("stream has %d messages, last sequence %d; want %d", si.State.Msgs, si.State.LastSeq, want)
	}
	for _, name := range consumerNames {
		cons, err := stream.Consumer(ctx, name)
		if err != nil {
			b.Fatal(err)
		}
		ci, err := cons.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if ci.Delivered.Stream != want || ci.AckFloor.Stream != want || ci.NumAckPending != 0 || ci.NumRedelivered != 0 {
			b.Fatalf("consumer %s: delivered %d, ack floor %d, %d acks pending, %d redelivered; want %d, %d, 0, 0",
				name, ci.Delivered.Stream, ci.AckFloor.Stream, ci.NumAckPending, ci.NumRedelivered, want, want)
		}
	}
}
