package events_test

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/events"
)

// timeout bounds every wait so that a broken dispatcher fails the test instead of hanging it.
// It is never used to let something happen: tests wait on channels or Done.
const timeout = 10 * time.Second

// Defaults documented on Config; the tests check the dispatcher behaves by them.
const (
	defaultQueueSize   = 512
	defaultChannelSize = 16
	batchSize          = 16 // events the dispatcher goroutine takes off the queue at once
)

func msg(n uint64) events.Event {
	return events.Event{Kind: events.MessageDelivered, Session: 1, Message: n, Status: events.StatusDelivered}
}

// seq returns from, from+1, ..., to.
func seq(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// recv waits for a value (or a close) on ch.
func recv[T any](t *testing.T, ch <-chan T, what string) (T, bool) {
	t.Helper()
	select {
	case v, ok := <-ch:
		return v, ok
	case <-time.After(timeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// waitDone waits for d.Done.
func waitDone(t *testing.T, d *events.Dispatcher) {
	t.Helper()
	recv(t, d.Done(), "Done")
}

// within runs f on another goroutine and fails the test if it does not return in time; it is how
// the tests show that Publish does not block.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		f()
	}()
	recv(t, finished, what)
}

// newDispatcher returns a dispatcher that the test's cleanup closes and waits for, so that no test
// leaves a goroutine behind for the next (cleanups run last-in first-out: a blocker registered
// later is released first).
func newDispatcher(t *testing.T, cfg events.Config) *events.Dispatcher {
	t.Helper()
	d := events.New(cfg)
	t.Cleanup(func() {
		d.Close()
		select {
		case <-d.Done():
		case <-time.After(timeout):
			t.Errorf("cleanup: dispatcher not done")
		}
	})
	return d
}

// blocker is a callback that blocks on the event with message ID at, until released. The test's
// cleanup releases it, so a failing test leaks no goroutine into the next one.
type blocker struct {
	at       uint64
	entered  chan struct{} // closed when the callback is blocked
	release  chan struct{}
	once     sync.Once
	received []uint64 // touched only by the dispatcher; read after Done
}

func newBlocker(t *testing.T, d *events.Dispatcher, at uint64) *blocker {
	b := &blocker{at: at, entered: make(chan struct{}), release: make(chan struct{})}
	d.OnEvent(func(e events.Event) {
		if e.Message == b.at {
			close(b.entered)
			<-b.release
		}
		b.received = append(b.received, e.Message)
	})
	t.Cleanup(b.Release)
	return b
}

func (b *blocker) Release() { b.once.Do(func() { close(b.release) }) }

// drain reads ch until it is closed, and returns the message IDs read.
func drain(t *testing.T, ch <-chan events.Event) []uint64 {
	t.Helper()
	var got []uint64
	for {
		e, ok := recv(t, ch, "event or close on the channel")
		if !ok {
			return got
		}
		got = append(got, e.Message)
	}
}

func assertClosed(t *testing.T, ch <-chan events.Event) {
	t.Helper()
	if e, ok := recv(t, ch, "channel close"); ok {
		t.Fatalf("channel yielded %v, want it closed", e)
	}
}

func TestOrder(t *testing.T) {
	// Each case publishes no more than its queue holds, so nothing can be dropped whatever the
	// scheduling: a full channel makes the dispatcher wait for the reader, who keeps reading; the
	// reader only has to drain the backlog within CloseGrace of Close.
	const n = 10_000
	roomy := events.Config{QueueSize: n, ChannelSize: n}
	tests := []struct {
		name      string
		cfg       events.Config
		n         uint64
		callbacks int
		channel   bool
	}{
		{"callback and channel", roomy, n, 1, true},
		{"callback only", roomy, n, 1, false},
		{"channel only", roomy, n, 0, true},
		{"three callbacks and channel", roomy, n, 3, true},
		{"small channel, callback and channel", events.Config{QueueSize: n, ChannelSize: 1}, n, 1, true},
		{"default sizes, callback and channel", events.Config{}, defaultQueueSize, 1, true},
		{"default queue, channel of 1", events.Config{ChannelSize: 1}, defaultQueueSize, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDispatcher(t, tt.cfg)
			got := make([][]uint64, tt.callbacks) // touched only by the dispatcher until Done
			for i := range tt.callbacks {
				d.OnEvent(func(e events.Event) { got[i] = append(got[i], e.Message) })
			}
			var fromChannel []uint64
			readerDone := make(chan struct{})
			if tt.channel {
				ch := d.Channel()
				go func() {
					defer close(readerDone)
					for e := range ch { // concurrently with publishing
						fromChannel = append(fromChannel, e.Message)
					}
				}()
			} else {
				close(readerDone)
			}

			for i := uint64(1); i <= tt.n; i++ {
				d.Publish(msg(i))
			}
			d.Close()
			waitDone(t, d)
			recv(t, readerDone, "channel reader")

			want := seq(1, tt.n)
			for i, g := range got {
				if !slices.Equal(g, want) {
					t.Errorf("callback %d received %d events, not 1..%d in order (first %v)", i, len(g), tt.n, g[:min(len(g), 10)])
				}
			}
			if tt.channel && !slices.Equal(fromChannel, want) {
				t.Errorf("channel yielded %d events, not 1..%d in order", len(fromChannel), tt.n)
			}
			if d.Dropped() != 0 {
				t.Errorf("Dropped() = %d, want 0", d.Dropped())
			}
		})
	}
}

func TestCallbackRunsOnDispatcherGoroutine(t *testing.T) {
	d := newDispatcher(t, events.Config{})
	returned := make(chan struct{})
	result := make(chan bool, 1)
	d.OnEvent(func(e events.Event) {
		// Were the callback run by Publish itself, Publish could not have returned yet, and
		// this would time out.
		select {
		case <-returned:
			result <- true
		case <-time.After(timeout):
			result <- false
		}
	})
	d.Publish(msg(1))
	close(returned)
	if ok, _ := recv(t, result, "callback"); !ok {
		t.Fatal("the callback ran before Publish returned: it runs on the publisher's goroutine")
	}
	d.Close()
	waitDone(t, d)
}

func TestPublishFromCallback(t *testing.T) {
	// A callback may publish (the dispatcher holds no lock while calling it); the event is
	// delivered after the current one.
	d := newDispatcher(t, events.Config{})
	var got []uint64
	d.OnEvent(func(e events.Event) {
		got = append(got, e.Message)
		if e.Message < 5 {
			d.Publish(msg(e.Message + 1))
		} else {
			d.Close() // also from a callback
		}
	})
	d.Publish(msg(1))
	waitDone(t, d)
	if want := seq(1, 5); !slices.Equal(got, want) {
		t.Errorf("received %v, want %v", got, want)
	}
}

func TestPublishNeverBlocks(t *testing.T) {
	tests := []struct {
		name  string
		cfg   events.Config
		queue int // effective queue size
	}{
		{"default queue", events.Config{}, defaultQueueSize},
		{"negative queue size means default", events.Config{QueueSize: -5}, defaultQueueSize},
		{"queue of 1", events.Config{QueueSize: 1}, 1},
		{"queue smaller than a batch", events.Config{QueueSize: 10}, 10},
		{"queue of 100", events.Config{QueueSize: 100}, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDispatcher(t, tt.cfg)
			b := newBlocker(t, d, 1)

			// Event 1 starts the dispatcher goroutine, which takes it (alone: nothing else is
			// published yet) as its batch and blocks in the callback. From then on, the queue is
			// empty and nothing leaves it: of the next queue+100 events, exactly the first
			// queue fit and the last 100 are dropped.
			d.Publish(msg(1))
			recv(t, b.entered, "the callback to block")
			total := uint64(tt.queue + 100)
			within(t, "Publish with a blocked callback", func() {
				for i := uint64(2); i <= total+1; i++ {
					d.Publish(msg(i))
				}
			})
			if got := d.Dropped(); got != 100 {
				t.Fatalf("Dropped() = %d, want 100", got)
			}

			// Publish after Close is ignored, not counted as dropped.
			d.Close()
			within(t, "Publish after Close", func() { d.Publish(msg(total + 2)) })
			select {
			case <-d.Done():
				t.Fatal("Done closed while the callback still holds an event")
			default:
			}
			b.Release()
			waitDone(t, d)

			if want := seq(1, uint64(tt.queue)+1); !slices.Equal(b.received, want) {
				t.Errorf("received %d events, want 1..%d in order", len(b.received), tt.queue+1)
			}
			if got := d.Dropped(); got != 100 {
				t.Errorf("Dropped() after Close = %d, want 100", got)
			}
		})
	}
}

// TestPublishNeverBlocksRacing publishes the whole burst without waiting for the dispatcher to
// start, so how many events it takes off the queue before blocking depends on scheduling.
//
// The goroutine takes one batch, k = min(16, events queued at that moment) >= 1 events, and blocks
// on its first one. The queue always holds the first Q published (at most Q are ever queued), so:
//   - if it takes its batch after p <= Q events were published, nothing was dropped before, k
//     slots are freed, and the remaining events drop exactly beyond Q+k: dropped = 100-k;
//   - if after p > Q, p-Q were dropped before, k = min(16, Q) slots are freed and the next
//     min(k, Q+100-p) events fill them: dropped is between 100-k and 100.
//
// Hence 100-min(16,Q) <= dropped <= 100, delivered = Q+100-dropped, and the first Q events are
// always delivered, everything in order.
func TestPublishNeverBlocksRacing(t *testing.T) {
	tests := []struct {
		name  string
		cfg   events.Config
		queue int
	}{
		{"default queue", events.Config{}, defaultQueueSize},
		{"queue of 1", events.Config{QueueSize: 1}, 1},
		{"queue smaller than a batch", events.Config{QueueSize: 10}, 10},
		{"queue of 100", events.Config{QueueSize: 100}, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDispatcher(t, tt.cfg)
			b := newBlocker(t, d, 1)
			q := uint64(tt.queue)
			total := q + 100
			within(t, "Publish with a blocked callback", func() {
				for i := uint64(1); i <= total; i++ {
					d.Publish(msg(i))
				}
			})
			// Wait for the goroutine to hold its batch; with no channel, drops only happen in
			// Publish, so the count is now final.
			recv(t, b.entered, "the callback to block")
			dropped := d.Dropped()
			k := min(batchSize, q)
			if dropped < 100-k || dropped > 100 {
				t.Fatalf("Dropped() = %d, want between %d and 100", dropped, 100-k)
			}
			b.Release()
			d.Close()
			waitDone(t, d)

			if got := uint64(len(b.received)); got+dropped != total {
				t.Errorf("delivered %d + dropped %d != published %d", got, dropped, total)
			}
			if !slices.IsSorted(b.received) || len(slices.Compact(slices.Clone(b.received))) != len(b.received) {
				t.Errorf("events not delivered in publication order: %v", b.received)
			}
			if len(b.received) < tt.queue || !slices.Equal(b.received[:tt.queue], seq(1, q)) {
				t.Errorf("the first %d events were not all delivered: %v", tt.queue, b.received)
			}
			if d.Dropped() != dropped {
				t.Errorf("Dropped() changed from %d to %d with no channel", dropped, d.Dropped())
			}
		})
	}
}

func TestChannelSize(t *testing.T) {
	tests := []struct {
		channelSize, want int
	}{
		{1, 1},
		{4, 4},
		{0, defaultChannelSize},
		{-1, defaultChannelSize},
	}
	for _, tt := range tests {
		d := newDispatcher(t, events.Config{ChannelSize: tt.channelSize})
		if got := cap(d.Channel()); got != tt.want {
			t.Errorf("ChannelSize %d: cap(Channel()) = %d, want %d", tt.channelSize, got, tt.want)
		}
	}
}

// A full channel holds the dispatcher back instead of dropping: a slow reader loses nothing, the
// backlog waits in the queue.
func TestChannelFullWaitsForReader(t *testing.T) {
	const size, n = 4, 10
	d := newDispatcher(t, events.Config{ChannelSize: size})
	ch := d.Channel()
	seen := make(chan uint64, n)
	d.OnEvent(func(e events.Event) { seen <- e.Message })
	for i := uint64(1); i <= n; i++ {
		d.Publish(msg(i))
	}
	// The callbacks for an event run before it is handed to the channel, so once the callback
	// has seen event size+1, events 1..size are in the channel, and nobody read them.
	for i := uint64(1); i <= size+1; i++ {
		if got, _ := recv(t, seen, "callback"); got != i {
			t.Fatalf("callback saw event %d, want %d", got, i)
		}
	}
	if len(ch) != size {
		t.Errorf("len(channel) = %d, want %d", len(ch), size)
	}
	if d.Dropped() != 0 {
		t.Errorf("Dropped() = %d with a full channel before Close, want 0", d.Dropped())
	}
	var got []uint64
	for range n {
		e, _ := recv(t, ch, "event on the channel")
		got = append(got, e.Message)
	}
	if want := seq(1, n); !slices.Equal(got, want) {
		t.Errorf("channel yielded %v, want %v", got, want)
	}
	d.Close()
	waitDone(t, d)
	assertClosed(t, ch)
	if d.Dropped() != 0 {
		t.Errorf("Dropped() = %d, want 0", d.Dropped())
	}
}

// Nobody reads the channel and it is full when the dispatcher is closed: after CloseGrace the
// rest is dropped (each still seen by the callbacks) and counted, the channel keeps the oldest.
func TestChannelFullAtClose(t *testing.T) {
	tests := []struct {
		channelSize, publish int
	}{
		{4, 10},
		{1, 3},
		{4, 4}, // exactly full: nothing waits, Done is immediate
		{4, 3},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d into %d", tt.publish, tt.channelSize), func(t *testing.T) {
			d := newDispatcher(t, events.Config{ChannelSize: tt.channelSize})
			ch := d.Channel() // and nobody reads it until the end
			var seen int      // touched by the dispatcher only, read after Done
			d.OnEvent(func(events.Event) { seen++ })
			for i := 1; i <= tt.publish; i++ {
				d.Publish(msg(uint64(i)))
			}
			start := time.Now()
			d.Close()
			waitDone(t, d)
			elapsed := time.Since(start)

			kept := min(tt.publish, tt.channelSize)
			if seen != tt.publish {
				t.Errorf("callback saw %d events, want %d", seen, tt.publish)
			}
			if len(ch) != kept {
				t.Errorf("len(channel) = %d, want %d", len(ch), kept)
			}
			if got, want := d.Dropped(), uint64(tt.publish-kept); got != want {
				t.Errorf("Dropped() = %d, want %d", got, want)
			}
			if tt.publish > kept && elapsed < events.CloseGrace {
				t.Errorf("Done %v after Close, before CloseGrace (%v)", elapsed, events.CloseGrace)
			}
			if got, want := drain(t, ch), seq(1, uint64(kept)); !slices.Equal(got, want) {
				t.Errorf("channel yielded %v, want %v", got, want)
			}
		})
	}
}

// A reader that keeps reading after Close gets everything (within CloseGrace).
func TestCloseWithBacklogReaderGetsAll(t *testing.T) {
	const size, n = 4, 100
	d := newDispatcher(t, events.Config{ChannelSize: size})
	ch := d.Channel()
	for i := uint64(1); i <= n; i++ {
		d.Publish(msg(i))
	}
	d.Close()
	if got, want := drain(t, ch), seq(1, n); !slices.Equal(got, want) {
		t.Errorf("channel yielded %d events %v..., want 1..%d", len(got), got[:min(len(got), 10)], n)
	}
	waitDone(t, d)
	if d.Dropped() != 0 {
		t.Errorf("Dropped() = %d, want 0", d.Dropped())
	}
}

func TestCloseDeliversQueued(t *testing.T) {
	d := newDispatcher(t, events.Config{})
	b := newBlocker(t, d, 1)
	ch := d.Channel()

	d.Publish(msg(1))
	recv(t, b.entered, "the callback to block")
	for i := uint64(2); i <= 5; i++ {
		d.Publish(msg(i))
	}
	d.Close()
	// Ignored: the dispatcher is closed (and still busy, so had these been queued, they would be
	// delivered before Done).
	d.Publish(msg(6))
	d.Publish(msg(7))
	d.Close() // twice, while delivering
	select {
	case <-d.Done():
		t.Fatal("Done closed before the queued events were delivered")
	default:
	}
	b.Release()
	waitDone(t, d)

	if want := seq(1, 5); !slices.Equal(b.received, want) {
		t.Errorf("callback received %v, want %v", b.received, want)
	}
	// Everything was offered to the channel before it was closed.
	if got, want := drain(t, ch), seq(1, 5); !slices.Equal(got, want) {
		t.Errorf("channel yielded %v, want %v", got, want)
	}
	if d.Dropped() != 0 {
		t.Errorf("Dropped() = %d, want 0: events published after Close are not counted", d.Dropped())
	}

	// After Done: Close, Publish and Channel are harmless (a send on the closed channel would
	// panic the dispatcher goroutine and crash the test).
	d.Close()
	d.Publish(msg(8))
	if d.Channel() != ch {
		t.Error("Channel() returned a different channel on a later call")
	}
	assertClosed(t, ch)
	if d.Dropped() != 0 {
		t.Errorf("Dropped() = %d, want 0", d.Dropped())
	}
}

func TestClose(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, d *events.Dispatcher)
	}{
		{"never used", func(*testing.T, *events.Dispatcher) {}},
		{"idle after delivering", func(t *testing.T, d *events.Dispatcher) {
			delivered := make(chan struct{})
			d.OnEvent(func(e events.Event) {
				if e.Message == 3 {
					close(delivered)
				}
			})
			for i := uint64(1); i <= 3; i++ {
				d.Publish(msg(i))
			}
			recv(t, delivered, "delivery")
		}},
		{"busy delivering", func(t *testing.T, d *events.Dispatcher) {
			for i := uint64(1); i <= 100; i++ {
				d.Publish(msg(i))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDispatcher(t, events.Config{ChannelSize: 1})
			tt.prepare(t, d)
			d.Close()
			d.Close()
			waitDone(t, d)
			d.Close()
			d.Publish(msg(1000))

			// The channel, asked for the first time now, is already closed and empty.
			ch := d.Channel()
			assertClosed(t, ch)
			if d.Channel() != ch {
				t.Error("Channel() returned a different channel on a later call")
			}
			if d.Dropped() != 0 {
				t.Errorf("Dropped() = %d, want 0", d.Dropped())
			}
		})
	}
}

func TestChannelRequestedAfterCloseWhileDelivering(t *testing.T) {
	// Channel called for the first time after Close but before Done returns a channel that is
	// closed once the rest is delivered.
	d := newDispatcher(t, events.Config{})
	b := newBlocker(t, d, 1)
	d.Publish(msg(1))
	recv(t, b.entered, "the callback to block")
	for i := uint64(2); i <= 5; i++ {
		d.Publish(msg(i))
	}
	d.Close()
	ch := d.Channel()
	b.Release()
	waitDone(t, d)
	// Event 1 was already being handled when the channel was created; 2..5 were still queued,
	// so they are offered to it.
	if got, want := drain(t, ch), seq(2, 5); !slices.Equal(got, want) {
		t.Errorf("channel yielded %v, want %v", got, want)
	}
	if want := seq(1, 5); !slices.Equal(b.received, want) {
		t.Errorf("callback received %v, want %v", b.received, want)
	}
}

// dispatcherGoroutines counts the goroutines running a Dispatcher's delivery loop.
func dispatcherGoroutines() int {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("events.(*Dispatcher).run(")) {
			count++
		}
	}
	return count
}

// waitGoroutines polls (the only polling in these tests: a goroutine's exit cannot be waited
// for) until no dispatcher goroutine is left and runtime.NumGoroutine is back to baseline.
func waitGoroutines(t *testing.T, baseline int, when string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n, running := runtime.NumGoroutine(), dispatcherGoroutines()
		if n <= baseline && running == 0 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%s: %d goroutines (baseline %d), %d in the dispatcher loop:\n%s", when, n, baseline, running, buf)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNoIdleGoroutine(t *testing.T) {
	// Goroutines of earlier tests may still be on their way out; start from none.
	waitGoroutines(t, runtime.NumGoroutine(), "before the test")
	baseline := runtime.NumGoroutine()

	d := newDispatcher(t, events.Config{ChannelSize: 1000})
	ch := d.Channel() // unread, with room for every event
	const n = 200
	var count int
	deliveredAll := make(chan struct{}, 3)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	blocked := make(chan struct{})
	d.OnEvent(func(e events.Event) {
		if e.Message == 1 {
			blocked <- struct{}{}
			<-release
		}
		count++
		if count%n == 0 {
			deliveredAll <- struct{}{}
		}
	})
	publish := func(from uint64) {
		for i := from; i < from+n; i++ {
			d.Publish(msg(i))
		}
	}

	if got := dispatcherGoroutines(); got != 0 {
		t.Fatalf("%d dispatcher goroutines before any Publish, want 0", got)
	}
	// While delivering there is exactly one dispatcher goroutine.
	publish(1)
	recv(t, blocked, "the callback to block")
	if got := dispatcherGoroutines(); got != 1 {
		t.Errorf("%d dispatcher goroutines while delivering, want 1", got)
	}
	unblock()
	recv(t, deliveredAll, "delivery of the first burst")
	waitGoroutines(t, baseline, "after delivering the first burst")

	// The goroutine is started again on demand.
	publish(n + 1)
	recv(t, deliveredAll, "delivery of the second burst")
	waitGoroutines(t, baseline, "after delivering the second burst")

	publish(2*n + 1)
	d.Close()
	waitDone(t, d)
	recv(t, deliveredAll, "delivery of the third burst")
	waitGoroutines(t, baseline, "after Close and Done")

	if got := len(ch); got != 3*n {
		t.Errorf("channel holds %d events, want %d", got, 3*n)
	}
	if d.Dropped() != 0 {
		t.Errorf("Dropped() = %d, want 0", d.Dropped())
	}
}

// A channel nobody reads holds the dispatcher goroutine while it is full (a backlog waits rather
// than being dropped), but not beyond Close and CloseGrace.
func TestNoGoroutineAfterCloseWithUnreadChannel(t *testing.T) {
	waitGoroutines(t, runtime.NumGoroutine(), "before the test")
	baseline := runtime.NumGoroutine()

	d := newDispatcher(t, events.Config{ChannelSize: 1})
	d.Channel()
	seen := make(chan struct{}, 10)
	d.OnEvent(func(events.Event) { seen <- struct{}{} })
	for i := uint64(1); i <= 10; i++ {
		d.Publish(msg(i))
	}
	recv(t, seen, "event 1")
	recv(t, seen, "event 2") // the goroutine is now waiting for room for event 2
	if got := dispatcherGoroutines(); got != 1 {
		t.Errorf("%d dispatcher goroutines waiting on the full channel, want 1", got)
	}
	d.Close()
	waitDone(t, d)
	waitGoroutines(t, baseline, "after Close and Done")
	if d.Dropped() != 9 {
		t.Errorf("Dropped() = %d, want 9", d.Dropped())
	}
}

func TestSubscribed(t *testing.T) {
	tests := []struct {
		name string
		act  func(d *events.Dispatcher)
		want bool
	}{
		{"new", func(*events.Dispatcher) {}, false},
		{"after Publish, Dropped and Done", func(d *events.Dispatcher) {
			d.Publish(msg(1))
			d.Dropped()
			d.Done()
		}, false},
		{"after Close", func(d *events.Dispatcher) { d.Close() }, false},
		{"after OnEvent", func(d *events.Dispatcher) { d.OnEvent(func(events.Event) {}) }, true},
		{"after Channel", func(d *events.Dispatcher) { d.Channel() }, true},
		{"after Close then Channel", func(d *events.Dispatcher) {
			d.Close()
			d.Channel()
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDispatcher(t, events.Config{})
			if d.Subscribed() {
				t.Fatal("Subscribed() = true on a new dispatcher")
			}
			tt.act(d)
			if got := d.Subscribed(); got != tt.want {
				t.Errorf("Subscribed() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConcurrentPublishers(t *testing.T) {
	const publishers, each = 8, 1000
	tests := []struct {
		name    string
		cfg     events.Config
		noDrops bool // the queue holds every event, so none can be dropped
	}{
		{"default queue", events.Config{}, false},
		{"tiny queue", events.Config{QueueSize: 4}, false},
		{"queue holds all", events.Config{QueueSize: publishers * each}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDispatcher(t, tt.cfg)
			// Touched only by the dispatcher's goroutine (one at a time) until Done.
			var delivered int
			var last, count [publishers]uint64
			var errs []string
			d.OnEvent(func(e events.Event) {
				delivered++
				p := e.Session
				if p >= publishers {
					errs = append(errs, fmt.Sprintf("unknown publisher in %v", e))
					return
				}
				if e.Message <= last[p] {
					errs = append(errs, fmt.Sprintf("publisher %d: message %d after %d", p, e.Message, last[p]))
				}
				last[p] = e.Message
				count[p]++
			})

			start := make(chan struct{})
			var wg sync.WaitGroup
			for p := range uint64(publishers) {
				wg.Go(func() {
					<-start
					for i := uint64(1); i <= each; i++ {
						d.Publish(events.Event{Kind: events.MessageDelivered, Session: p, Message: i})
					}
				})
			}
			close(start)
			within(t, "the publishers", wg.Wait)
			d.Close()
			waitDone(t, d)

			for _, e := range errs[:min(len(errs), 10)] {
				t.Error(e)
			}
			if got := uint64(delivered) + d.Dropped(); got != publishers*each {
				t.Errorf("delivered %d + dropped %d = %d, want %d", delivered, d.Dropped(), got, publishers*each)
			}
			if tt.noDrops {
				if d.Dropped() != 0 {
					t.Errorf("Dropped() = %d, want 0", d.Dropped())
				}
				for p, c := range count {
					if c != each || last[p] != each {
						t.Errorf("publisher %d: %d events delivered (last %d), want %d", p, c, last[p], each)
					}
				}
			}
			t.Logf("delivered %d, dropped %d", delivered, d.Dropped())
		})
	}
}

// TestConcurrentAPI exercises every method at once, Close racing with Publish, for the race
// detector; what can be asserted is order and the accounting bounds.
func TestConcurrentAPI(t *testing.T) {
	const publishers, each = 8, 1000
	d := newDispatcher(t, events.Config{QueueSize: 64, ChannelSize: 16})
	ch := d.Channel()

	var cbDelivered int
	var cbLast [publishers]uint64
	var errs []string
	d.OnEvent(func(e events.Event) {
		cbDelivered++
		if e.Message <= cbLast[e.Session] {
			errs = append(errs, fmt.Sprintf("callback: publisher %d: message %d after %d", e.Session, e.Message, cbLast[e.Session]))
		}
		cbLast[e.Session] = e.Message
	})

	var chReceived int
	var chErrs []string
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		var last [publishers]uint64
		for e := range ch {
			chReceived++
			if e.Message <= last[e.Session] {
				chErrs = append(chErrs, fmt.Sprintf("channel: publisher %d: message %d after %d", e.Session, e.Message, last[e.Session]))
			}
			last[e.Session] = e.Message
		}
	}()

	start := make(chan struct{})
	var wg sync.WaitGroup
	for p := range uint64(publishers) {
		wg.Go(func() {
			<-start
			for i := uint64(1); i <= each; i++ {
				d.Publish(events.Event{Kind: events.MessageDelivered, Session: p, Message: i})
				if i%100 == 0 {
					_ = d.Subscribed()
					_ = d.Dropped()
					if d.Channel() != ch {
						t.Error("Channel() returned a different channel")
					}
				}
			}
		})
	}
	wg.Go(func() {
		<-start
		d.OnEvent(func(events.Event) {}) // a callback added while delivering
	})
	wg.Go(func() {
		<-start
		d.Close() // while publishing
	})
	close(start)
	within(t, "the publishers", wg.Wait)
	waitDone(t, d)
	recv(t, readerDone, "the channel to close")

	for _, e := range append(errs, chErrs...)[:min(len(errs)+len(chErrs), 10)] {
		t.Error(e)
	}
	// The channel existed before the first Publish, so every event the callback saw was offered
	// to it: received, or dropped after CloseGrace. The rest of Dropped is queue overflow.
	chanDrops := cbDelivered - chReceived
	if chanDrops < 0 || uint64(chanDrops) > d.Dropped() {
		t.Fatalf("callback saw %d, channel yielded %d, dropped %d: inconsistent", cbDelivered, chReceived, d.Dropped())
	}
	queueDrops := d.Dropped() - uint64(chanDrops)
	if uint64(cbDelivered)+queueDrops > publishers*each {
		t.Errorf("callback saw %d + queue dropped %d > published %d", cbDelivered, queueDrops, publishers*each)
	}
}
