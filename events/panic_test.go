package events_test

import (
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/ftsl-go/ftsl/events"
)

var errBoom = errors.New("boom")

// panicky is a callback that panics on some events, each time with another kind of value. It is
// a named function so that the test can find it in the stack OnPanic is given.
func panicky(e events.Event) {
	switch {
	case e.Message == 5:
		panic(nil)
	case e.Message%6 == 0:
		panic(errBoom)
	case e.Message%6 == 3:
		panic(e.Message)
	}
}

// wantPanics lists the events panicky panics on, among 1..n.
func wantPanics(n uint64) []uint64 {
	var s []uint64
	for i := uint64(1); i <= n; i++ {
		if i == 5 || i%6 == 0 || i%6 == 3 {
			s = append(s, i)
		}
	}
	return s
}

// A panicking callback costs the callbacks before and after it, the channel and the events after
// it nothing: each panic is recovered, counted and reported. Without the recovery, the first
// panic ends the test program.
func TestCallbackPanics(t *testing.T) {
	const n = 100 // fits the default queue: nothing may be dropped
	for _, withHook := range []bool{true, false} {
		name := "OnPanic set"
		if !withHook {
			name = "no OnPanic"
		}
		t.Run(name, func(t *testing.T) {
			type report struct {
				message uint64
				value   any
				stack   string
			}
			var reports []report // touched only by the dispatcher until Done
			var cfg events.Config
			if withHook {
				cfg.OnPanic = func(e events.Event, v any, stack []byte) {
					reports = append(reports, report{e.Message, v, string(stack)})
				}
			}
			d := newDispatcher(t, cfg)
			var before, after []uint64 // touched only by the dispatcher until Done
			d.OnEvent(func(e events.Event) { before = append(before, e.Message) })
			d.OnEvent(panicky)
			d.OnEvent(func(e events.Event) { after = append(after, e.Message) })
			ch := d.Channel()
			fromChannel := make(chan []uint64, 1)
			go func() { fromChannel <- drain(t, ch) }()

			within(t, "Publish", func() {
				for i := uint64(1); i <= n; i++ {
					d.Publish(msg(i))
				}
			})
			d.Close()
			waitDone(t, d)

			want := seq(1, n)
			if !slices.Equal(before, want) {
				t.Errorf("callback before the panicking one received %v, want 1..%d in order", before, n)
			}
			if !slices.Equal(after, want) {
				t.Errorf("callback after the panicking one received %v, want 1..%d in order", after, n)
			}
			if got, _ := recv(t, fromChannel, "the channel reader"); !slices.Equal(got, want) {
				t.Errorf("channel yielded %v, want 1..%d in order", got, n)
			}
			panicked := wantPanics(n)
			if got := d.Panics(); got != uint64(len(panicked)) {
				t.Errorf("Panics() = %d, want %d", got, len(panicked))
			}
			if d.Dropped() != 0 {
				t.Errorf("Dropped() = %d, want 0", d.Dropped())
			}
			if !withHook {
				return
			}
			var got []uint64
			for _, r := range reports {
				got = append(got, r.message)
				var pne *runtime.PanicNilError
				switch {
				case r.message == 5 && !errors.As(asError(r.value), &pne):
					t.Errorf("event 5: OnPanic got %#v, want a *runtime.PanicNilError", r.value)
				case r.message%6 == 0 && r.value != errBoom:
					t.Errorf("event %d: OnPanic got %#v, want errBoom", r.message, r.value)
				case r.message%6 == 3 && r.value != any(r.message):
					t.Errorf("event %d: OnPanic got %#v, want %d", r.message, r.value, r.message)
				}
				// The stack is the panicking goroutine's, taken before it unwound.
				if !strings.Contains(r.stack, "events_test.panicky(") {
					t.Errorf("event %d: stack does not show the panicking callback:\n%s", r.message, r.stack)
				}
			}
			if !slices.Equal(got, panicked) {
				t.Errorf("OnPanic heard of events %v, want %v", got, panicked)
			}
		})
	}
}

func asError(v any) error {
	err, _ := v.(error)
	return err
}
