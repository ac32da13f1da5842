package events

import (
	"math/bits"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Defaults, as documented on Config.
const (
	// DefaultQueueSize absorbs a burst of ticket outcomes between two reads of an attentive
	// application. One acknowledgement settles every message the peer took in since the last
	// one, about an ack delay of traffic (2 ms by default): at 100,000 messages a second asking
	// for AckProcessed, 200 messages and 400 events (delivered, then processed). A sender going
	// flat out settles thousands at once (oneway's chaos test queues up to 900): it should follow
	// its tickets (Wait, Status), which lose nothing, or raise QueueSize to the messages it keeps
	// in flight. Memory sets the limit: the queue costs nothing until a burst fills it and 40 KB
	// when full (72 bytes an event); with its goroutine and channel a dispatcher then holds 47 KB
	// (TestWorstCaseMemory), under half a gigabyte for a hub of 10,000 sessions whose
	// applications all stop reading.
	DefaultQueueSize = 512
	// DefaultChannelSize is small because a channel's buffer is allocated in full when it is
	// made and kept while the session lives, idle or not; bursts wait in the queue, which
	// takes memory only while they last.
	DefaultChannelSize = 16
)

// Config sizes a Dispatcher. The zero value is ready to use.
type Config struct {
	// QueueSize bounds the events waiting for delivery. An event raised while it is full is
	// dropped and counted (Dropped): nobody keeps up. The queue takes memory as it fills (72
	// bytes an event) and gives it back once drained. Zero or less means DefaultQueueSize (512).
	QueueSize int
	// ChannelSize is the capacity of the Channel, allocated when Channel is first called. Zero
	// or less means DefaultChannelSize (16).
	ChannelSize int
	// OnPanic, when set, hears of every panic raised by a callback given to OnEvent: the event
	// being delivered, the value passed to panic, and the stack of the panicking goroutine. It
	// runs on the dispatcher's goroutine once the panic is recovered and counted (Panics). A
	// panic in OnPanic itself is not recovered: it ends the program, as an application that
	// would rather crash on a faulty callback wants. Default: none; the count is all.
	OnPanic func(e Event, v any, stack []byte)
}

// Dispatcher delivers events, in the order they were published, to callbacks and to a channel.
//
// Publish never blocks: it queues the event and returns. A goroutine started on demand calls the
// callbacks one at a time and then hands the event to the channel, waiting for the application to
// make room, so a burst of events waits in the queue, not in the protocol. The goroutine ends and
// the queue's memory is given back once the queue is empty: an idle dispatcher costs a few hundred
// bytes and no goroutine. Only when the queue itself is full is an event dropped, and counted.
// Once the dispatcher is closed, it waits at most CloseGrace for the application to take the rest
// from the channel, then drops it, so nothing outlives the session for long.
type Dispatcher struct {
	queueSize   int
	channelSize int
	onPanic     func(Event, any, []byte)
	dropped     atomic.Uint64
	panics      atomic.Uint64
	subscribed  atomic.Bool
	closing     chan struct{} // closed by Close: stop waiting on the channel

	mu        sync.Mutex
	queue     []Event // ring, nil while empty, grown up to queueSize
	head, n   int
	running   bool
	closed    bool
	callbacks []func(Event)
	ch        chan Event
	done      chan struct{}
}

// New returns a Dispatcher.
func New(cfg Config) *Dispatcher {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.ChannelSize <= 0 {
		cfg.ChannelSize = DefaultChannelSize
	}
	return &Dispatcher{queueSize: cfg.QueueSize, channelSize: cfg.ChannelSize, onPanic: cfg.OnPanic,
		done: make(chan struct{}), closing: make(chan struct{})}
}

// Subscribed reports whether anyone listens (a callback, or the channel was asked for); a
// publisher may skip building events nobody will see.
func (d *Dispatcher) Subscribed() bool { return d.subscribed.Load() }

// OnEvent adds a callback. Callbacks run one at a time, in publication order, on the
// dispatcher's goroutine (never the publisher's). A slow callback delays later events, and so
// does a Channel that is asked for and not read: the same goroutine waits on it. Events
// published meanwhile queue up to QueueSize.
//
// A callback that panics stops neither the dispatcher nor the program: the panic is recovered,
// counted by Panics and reported to Config.OnPanic, and the event still goes to the other
// callbacks and to the channel, as do the events after it. (runtime.Goexit, which t.FailNow
// calls, cannot be stopped: it ends the dispatcher's goroutine, nothing is delivered after it and
// Done is never closed.)
func (d *Dispatcher) OnEvent(f func(Event)) {
	d.mu.Lock()
	d.callbacks = append(d.callbacks[:len(d.callbacks):len(d.callbacks)], f)
	d.mu.Unlock()
	d.subscribed.Store(true)
}

// Channel returns the channel events are offered to, creating it on the first call. It is closed
// once the dispatcher is closed and every queued event was handled.
func (d *Dispatcher) Channel() <-chan Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.ch = make(chan Event, d.channelSize)
		if d.closed && !d.running {
			close(d.ch)
		}
	}
	d.subscribed.Store(true)
	return d.ch
}

// Dropped reports how many events were dropped: published while the queue was full, or left in
// the queue when the channel stayed full for CloseGrace after Close.
func (d *Dispatcher) Dropped() uint64 { return d.dropped.Load() }

// Panics reports how many times a callback panicked (see OnEvent).
func (d *Dispatcher) Panics() uint64 { return d.panics.Load() }

// Publish queues e for delivery. It never blocks. After Close it does nothing.
func (d *Dispatcher) Publish(e Event) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	if d.n == d.queueSize {
		d.mu.Unlock()
		d.dropped.Add(1)
		return
	}
	if d.n == len(d.queue) {
		d.grow()
	}
	d.queue[(d.head+d.n)%len(d.queue)] = e
	d.n++
	if !d.running {
		d.running = true
		go d.run()
	}
	d.mu.Unlock()
}

// Close stops accepting events. Those already queued are still delivered; then the channel is
// closed and Done is closed. Safe to call twice.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	d.closed = true
	close(d.closing)
	if !d.running {
		d.finishLocked()
	}
}

// The queue's rings come from pools, one for each size from firstRing to firstRing<<
// (ringClasses-1) events, doubling, as x/net/http2 pools its data chunks: the queue is given back
// whenever it drains, and a flow of bursts would otherwise allocate its rings again for every
// one. The pools hold what bursts need at the same time across all dispatchers, not a ring per
// dispatcher, and the garbage collector empties them.
const (
	firstRing   = 16
	ringClasses = 7 // up to 1,024 events: past DefaultQueueSize
)

var ringPools [ringClasses]sync.Pool // of *Event, the first of firstRing<<k

// getRing returns a zeroed ring of size events, a power of two from firstRing.
func getRing(size int) []Event {
	if k := ringClass(size); k < ringClasses {
		if first, ok := ringPools[k].Get().(*Event); ok {
			return unsafe.Slice(first, size)
		}
	}
	return make([]Event, size)
}

// putRing gives a zeroed ring back to its pool; a ring of another size is left to the garbage
// collector.
func putRing(r []Event) {
	r = r[:cap(r)]
	if k := ringClass(len(r)); k >= 0 && k < ringClasses && len(r) == firstRing<<k {
		ringPools[k].Put(&r[0])
	}
}

func ringClass(size int) int { return bits.Len(uint(size/firstRing)) - 1 }

// grow gives the full (or absent) queue a ring twice the size, up to queueSize.
func (d *Dispatcher) grow() {
	size := max(firstRing, 2*len(d.queue))
	nq := getRing(size)[:min(size, d.queueSize)]
	if d.queue != nil {
		copy(nq[copy(nq, d.queue[d.head:]):], d.queue[:d.head])
		clear(d.queue)
		putRing(d.queue)
	}
	d.queue, d.head = nq, 0
}

// Done is closed when the dispatcher is closed and has delivered everything queued.
func (d *Dispatcher) Done() <-chan struct{} { return d.done }

func (d *Dispatcher) finishLocked() {
	if d.ch != nil {
		close(d.ch)
	}
	close(d.done)
}

// CloseGrace is how long a closed dispatcher waits for the application to take the remaining
// events from the channel before it drops them.
const CloseGrace = time.Second

func (d *Dispatcher) run() {
	// The batch takes the lock once for many events, and sets the size of this frame, which
	// matters as much: a goroutine starts on a 2 KB stack, so this 1.4 KB frame grows it at once,
	// where there is nothing to copy, to 4 KB, which leaves callbacks room. A batch of 32 (2.3 KB)
	// made the stack grow again inside the callbacks, doubling the cost of a lone event
	// (BenchmarkPublish/trickle).
	var batch [16]Event
	var grace *time.Timer
	giveUp := false
	for {
		d.mu.Lock()
		if d.n == 0 {
			d.running = false
			// The burst is over: an idle dispatcher holds no queue. Its slots were zeroed as
			// they were taken.
			putRing(d.queue)
			d.queue, d.head = nil, 0
			if d.closed {
				d.finishLocked()
			}
			d.mu.Unlock()
			return
		}
		k := 0
		for k < len(batch) && d.n > 0 {
			batch[k] = d.queue[d.head]
			d.queue[d.head] = Event{}
			d.head = (d.head + 1) % len(d.queue)
			d.n--
			k++
		}
		callbacks, ch := d.callbacks, d.ch
		d.mu.Unlock()
		for i := range batch[:k] {
			for _, f := range callbacks {
				d.call(f, &batch[i])
			}
			if ch != nil && !giveUp {
				select {
				case ch <- batch[i]:
					continue
				case <-d.closing:
				}
				// Closed: a reader has CloseGrace to take the rest, then they are dropped, so a
				// channel nobody reads cannot keep the goroutine alive.
				if grace == nil {
					grace = time.NewTimer(CloseGrace)
					defer grace.Stop()
				}
				select {
				case ch <- batch[i]:
				case <-grace.C:
					giveUp = true
				}
			}
			if giveUp {
				d.dropped.Add(1)
			}
			batch[i] = Event{}
		}
	}
}

// call runs one callback and recovers its panic, so that one faulty callback costs the others,
// the channel and the process nothing. It takes the event by pointer and recovers in a method,
// not in a closure holding a copy, to keep the frames small (see run).
func (d *Dispatcher) call(f func(Event), e *Event) {
	defer d.recoverCallback(e)
	f(*e)
}

func (d *Dispatcher) recoverCallback(e *Event) {
	if v := recover(); v != nil { // a nil panic arrives as *runtime.PanicNilError
		d.panics.Add(1)
		if d.onPanic != nil {
			d.onPanic(*e, v, debug.Stack())
		}
	}
}
