package events

import (
	"sync"
	"sync/atomic"
	"time"
)

// Config sizes a Dispatcher. The zero value is ready to use.
type Config struct {
	// QueueSize bounds the events waiting for delivery. An event raised while it is full is
	// dropped and counted: nobody keeps up. The queue grows to it on demand. Default 65,536.
	QueueSize int
	// ChannelSize is the capacity of the Channel. Default 256.
	ChannelSize int
}

// Dispatcher delivers events, in the order they were published, to callbacks and to a channel.
// Publish never blocks: it queues the event and returns. A goroutine started on demand (and gone
// when the queue is empty, so an idle dispatcher costs none) calls the callbacks one at a time and
// then hands the event to the channel, waiting for the application to make room: a burst of
// events waits in the queue, not in the protocol (so the goroutine lives while events wait).
// Only when the queue itself is full is an event dropped, and counted. Once the dispatcher is closed, it waits at most CloseGrace for the
// application to take the rest, then drops it, so nothing outlives the session for long.
type Dispatcher struct {
	queueSize   int
	channelSize int
	dropped     atomic.Uint64
	subscribed  atomic.Bool
	closing     chan struct{} // closed by Close: stop waiting on the channel

	mu        sync.Mutex
	queue     []Event // ring, grown up to queueSize
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
		cfg.QueueSize = 1 << 16
	}
	if cfg.ChannelSize <= 0 {
		cfg.ChannelSize = 256
	}
	return &Dispatcher{queueSize: cfg.QueueSize, channelSize: cfg.ChannelSize,
		done: make(chan struct{}), closing: make(chan struct{})}
}

// Subscribed reports whether anyone listens (a callback, or the channel was asked for); a
// publisher may skip building events nobody will see.
func (d *Dispatcher) Subscribed() bool { return d.subscribed.Load() }

// OnEvent adds a callback. Callbacks run one at a time, in publication order, on the
// dispatcher's goroutine (never the publisher's). A slow callback delays later events, and so
// does a Channel that is asked for and not read: the same goroutine waits on it. Events
// published meanwhile queue up to QueueSize.
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

// grow doubles the queue, up to queueSize.
func (d *Dispatcher) grow() {
	nq := make([]Event, min(max(64, 2*len(d.queue)), d.queueSize))
	for i := 0; i < d.n; i++ {
		nq[i] = d.queue[(d.head+i)%len(d.queue)]
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
	var batch [32]Event
	var grace *time.Timer
	giveUp := false
	for {
		d.mu.Lock()
		if d.n == 0 {
			d.running = false
			if len(d.queue) > 1024 {
				d.queue, d.head = nil, 0 // a burst is over: give its memory back
			}
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
				f(batch[i])
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
