package main

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/ftsl-go/ftsl/pubsub"
)

// mark is where a line is, shown as a messenger shows its ticks.
type mark uint8

// Marks, in the order a line goes through them.
const (
	markSent      mark = iota + 1 // Publish returned: the session has it and gets it to the hub, across broken connections
	markDelivered                 // every member of the room was handed it
	markProcessed                 // every member handled it (its handler returned nil)
	markFailed                    // some member did not get it or failed it, or the session ended first
)

// maxOutstanding bounds the lines that wait for their outcomes; Say waits while that many do.
const maxOutstanding = 256

// sentLine is a line this member said, and what became of it.
type sentLine struct {
	Seq  uint64
	Text string
	tk   *pubsub.Ticket

	reached bool // the outbox's: Delivered was seen closed

	mu   sync.Mutex
	mark mark
	out  pubsub.Outcome
	err  error
}

func (l *sentLine) setMark(k mark, out pubsub.Outcome, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mark, l.out, l.err = k, out, err
}

// State is the line's mark and its outcome.
func (l *sentLine) State() (mark, pubsub.Outcome, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mark, l.out, l.err
}

// Others is how many other members the line went to, and how many of them processed it.
func (l *sentLine) Others() (matched, processed int) {
	_, out, err := l.State()
	return othersOf(out, err)
}

// othersOf is an outcome's counts: the other members only, as the sender's own subscription is
// not matched (NoEcho).
func othersOf(out pubsub.Outcome, err error) (matched, processed int) {
	if err != nil && out.Matched == 0 { // the whole publish failed: no counts
		return 0, 0
	}
	return out.Matched, out.Processed
}

// Reason says why the line failed: who failed it and why, or why the whole publish failed.
func (l *sentLine) Reason() string {
	_, _, err := l.State()
	return reasonOf(err)
}

func reasonOf(err error) string {
	var oe *pubsub.OutcomeError
	if !errors.As(err, &oe) {
		if err == nil {
			return ""
		}
		return strings.TrimPrefix(err.Error(), "ftsl: ")
	}
	parts := make([]string, len(oe.Failures))
	for i, f := range oe.Failures {
		parts[i] = f.Subscriber + " (" + strings.TrimPrefix(f.Reason, "ftsl: ") + ")"
	}
	return "failed at " + strings.Join(parts, ", ")
}

// outbox follows the tickets of the lines a member said, all on one goroutine (a goroutine per
// line would grow with a pasted file), and reports each mark as it comes. pubsub.Ticket offers
// channels, not callbacks, hence the select over them; maxOutstanding keeps it small.
type outbox struct {
	notify func(*sentLine)
	slots  chan struct{} // one per line followed: Say takes one, the outcome gives it back
	in     chan *sentLine
	quit   chan struct{}
	done   chan struct{}
	once   sync.Once

	mu      sync.Mutex
	waiting []*sentLine // the lines followed, in the order they were said
}

func newOutbox(notify func(*sentLine)) *outbox {
	o := &outbox{
		notify: notify,
		slots:  make(chan struct{}, maxOutstanding),
		in:     make(chan *sentLine, maxOutstanding),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go o.run()
	return o
}

func (o *outbox) reserve(ctx context.Context) error {
	select {
	case o.slots <- struct{}{}:
		return nil
	case <-o.quit:
		return pubsub.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (o *outbox) release() { <-o.slots }

// follow hands a line reserved for to the outbox goroutine; it never blocks (in has a place
// for every slot).
func (o *outbox) follow(l *sentLine) {
	o.mu.Lock()
	o.waiting = append(o.waiting, l)
	o.mu.Unlock()
	o.in <- l
}

func (o *outbox) run() {
	defer close(o.done)
	var pend []*sentLine
	cases := []reflect.SelectCase{
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(o.in)},
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(o.quit)},
	}
	for {
		cases = cases[:2]
		for _, l := range pend {
			ch := l.tk.Delivered()
			if l.reached {
				ch = l.tk.Done()
			}
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		i, v, _ := reflect.Select(cases)
		switch i {
		case 0:
			pend = append(pend, v.Interface().(*sentLine))
			continue
		case 1:
			return
		}
		l := pend[i-2]
		select {
		case <-l.tk.Done():
		default: // Delivered closed, the outcome is still to come
			l.reached = true
			l.setMark(markDelivered, pubsub.Outcome{}, nil)
			o.notify(l)
			continue
		}
		out, err := l.tk.Wait(context.Background()) // (ended: no wait)
		k := markProcessed
		if err != nil || out.Processed != out.Matched {
			k = markFailed
		}
		l.setMark(k, out, err)
		pend = slices.Delete(pend, i-2, i-1)
		o.mu.Lock()
		o.waiting = slices.DeleteFunc(o.waiting, func(w *sentLine) bool { return w == l })
		o.mu.Unlock()
		o.notify(l)
		o.release()
	}
}

// flush waits until no line waits for its outcome, or ctx ends, and returns those still waiting.
func (o *outbox) flush(ctx context.Context) []*sentLine {
	taken := 0
	defer func() {
		for ; taken > 0; taken-- {
			o.release()
		}
	}()
	for taken < maxOutstanding {
		select {
		case o.slots <- struct{}{}:
			taken++
		case <-ctx.Done():
			o.mu.Lock()
			defer o.mu.Unlock()
			return slices.Clone(o.waiting)
		case <-o.done:
			o.mu.Lock()
			defer o.mu.Unlock()
			return slices.Clone(o.waiting)
		}
	}
	return nil
}

// stop ends the outbox goroutine; lines still waiting get no more marks.
func (o *outbox) stop() {
	o.once.Do(func() { close(o.quit) })
	<-o.done
}
