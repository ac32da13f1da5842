package events_test

import (
	"runtime"
	"testing"
	"unsafe"

	"github.com/ftsl-go/ftsl/events"
)

const eventSize = int64(unsafe.Sizeof(events.Event{}))

// liveBytes is the memory held by heap objects and goroutine stacks, once the garbage collector
// has run twice (so that sync.Pool caches, which outlive one collection, are gone too).
func liveBytes() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc + ms.StackInuse)
}

// measure builds n dispatchers, then calls settle, and returns the memory they hold then, per
// dispatcher. The cleanup closes them and waits for them to finish.
func measure(t *testing.T, n int, build func() *events.Dispatcher, settle func(baseline int)) int64 {
	t.Helper()
	waitGoroutines(t, runtime.NumGoroutine(), "before measuring")
	baseline := runtime.NumGoroutine()
	all := make([]*events.Dispatcher, n)
	before := liveBytes()
	for i := range all {
		all[i] = build()
	}
	settle(baseline)
	after := liveBytes()
	t.Cleanup(func() {
		for _, d := range all {
			d.Close()
			for range d.Channel() { // let a dispatcher blocked on its channel finish now
			}
			waitDone(t, d)
		}
	})
	return (after - before) / int64(n)
}

// An idle dispatcher (every session has one) holds a few hundred bytes and no goroutine, also
// after a burst of events: the queue is given back once drained.
func TestIdleMemory(t *testing.T) {
	const n = 10_000
	const budget = 512
	const burst = 200
	delivered := make(chan struct{}, 1)
	onLast := func(e events.Event) { // one func for all: no closure per dispatcher
		if e.Message == burst {
			delivered <- struct{}{}
		}
	}
	waitIdle := func(baseline int) { waitGoroutines(t, baseline, "after the bursts") }
	tests := []struct {
		name    string
		budget  int64
		prepare func(d *events.Dispatcher)
	}{
		{"new", budget, func(*events.Dispatcher) {}},
		{"with a callback, after a burst", budget, func(d *events.Dispatcher) {
			d.OnEvent(onLast)
			for i := uint64(1); i <= burst; i++ {
				d.Publish(msg(i))
			}
			// One burst at a time: thousands of goroutines at once would leave the runtime
			// holding their descriptors, which are not the dispatchers' memory.
			recv(t, delivered, "the burst")
		}},
		// The channel's buffer is made in full by the first call to Channel: 16 events of 72
		// bytes and the headers, 1,392 bytes.
		{"with a channel", budget + 1536, func(d *events.Dispatcher) {
			d.Channel()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := measure(t, n, func() *events.Dispatcher {
				d := events.New(events.Config{})
				tt.prepare(d)
				return d
			}, waitIdle)
			t.Logf("%d bytes per idle dispatcher", got)
			if got > tt.budget {
				t.Errorf("%d bytes per idle dispatcher, want at most %d", got, tt.budget)
			}
		})
	}
}

// With the default sizes, the most a dispatcher can hold, nobody reading its channel and its
// queue full, is tens of kilobytes: a hub's 10,000 sessions stay under a gigabyte.
func TestWorstCaseMemory(t *testing.T) {
	const n = 100
	const budget = 64 << 10
	reached := make(chan struct{}, 1)
	signal := func(e events.Event) {
		if e.Message == defaultChannelSize+1 {
			reached <- struct{}{}
		}
	}
	held := 0
	got := measure(t, n, func() *events.Dispatcher {
		d := events.New(events.Config{})
		d.Channel() // never read
		d.OnEvent(signal)
		i := uint64(1)
		for ; i <= defaultChannelSize+1; i++ {
			d.Publish(msg(i))
		}
		// The callbacks run before the channel is offered an event: the channel is full, and
		// the goroutine waits for room for good. Fill the queue behind it.
		recv(t, reached, "the channel to fill")
		for ; d.Dropped() == 0; i++ {
			d.Publish(msg(i))
		}
		held = int(i) - 2 // the last one was dropped
		return d
	}, func(int) {})
	t.Logf("%d bytes per dispatcher holding %d events (%d bytes each) and a goroutine", got, held, eventSize)
	if want := defaultQueueSize + defaultChannelSize; held < want {
		t.Errorf("a dispatcher held %d events before dropping, want at least %d", held, want)
	}
	if got > budget {
		t.Errorf("%d bytes per dispatcher, want at most %d", got, budget)
	}
}
