package pubsub

import "sync"

// msgQueue holds the messages waiting for a subscription's handler: a bounded FIFO that the
// client's dispatcher puts into and the handler's goroutine takes from. Either side is woken only
// when it sleeps, so a busy handler takes message after message with a lock and no channel
// operation each; a channel and a select per message cost the fan-out a third of its speed.
type msgQueue struct {
	mu     sync.Mutex
	buf    []*Msg // a ring of MaxPending slots
	head   int
	n      int
	closed bool          // put and take report false
	ending bool          // put reports false; take hands out what is left, then reports false
	taker  bool          // the handler's goroutine sleeps, or is about to, on wake
	putter bool          // the dispatcher sleeps, or is about to, on room
	wake   chan struct{} // one token for the handler's goroutine
	room   chan struct{} // one token for the dispatcher
}

func newMsgQueue(size int) *msgQueue {
	return &msgQueue{buf: make([]*Msg, size), wake: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// signal leaves a token on ch unless one is there already.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// put appends m, waiting while the queue is full. It reports false, leaving m to the caller, once
// the queue is closed.
func (q *msgQueue) put(m *Msg) bool {
	q.mu.Lock()
	for q.n == len(q.buf) && !q.closed && !q.ending {
		q.putter = true
		q.mu.Unlock()
		<-q.room
		q.mu.Lock()
	}
	if q.closed || q.ending {
		q.mu.Unlock()
		return false
	}
	q.buf[(q.head+q.n)%len(q.buf)] = m
	q.n++
	wake := q.taker
	q.taker = false
	q.mu.Unlock()
	if wake {
		signal(q.wake)
	}
	return true
}

// take removes the first message, waiting while there is none. It reports false once the queue
// is closed.
func (q *msgQueue) take() (*Msg, bool) {
	q.mu.Lock()
	for q.n == 0 && !q.closed && !q.ending {
		q.taker = true
		q.mu.Unlock()
		<-q.wake
		q.mu.Lock()
	}
	if q.closed || q.n == 0 {
		q.mu.Unlock()
		return nil, false
	}
	m := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	room := q.putter
	q.putter = false
	q.mu.Unlock()
	if room {
		signal(q.room)
	}
	return m, true
}

// finish ends the queue gently: put reports false from now on, and take hands out the messages
// waiting, then reports false.
func (q *msgQueue) finish() {
	q.mu.Lock()
	q.ending = true
	q.mu.Unlock()
	signal(q.wake)
	signal(q.room)
}

// close ends the queue: put and take report false from now on, and both sides are woken. It
// returns the messages that were waiting, for the caller to settle.
func (q *msgQueue) close() []*Msg {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	left := make([]*Msg, 0, q.n)
	for ; q.n > 0; q.n-- {
		left = append(left, q.buf[q.head])
		q.buf[q.head] = nil
		q.head = (q.head + 1) % len(q.buf)
	}
	q.mu.Unlock()
	signal(q.wake)
	signal(q.room)
	return left
}
