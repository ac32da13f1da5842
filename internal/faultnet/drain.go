package faultnet

import (
	"net"
	"time"
)

// drainIdle is how long drain keeps waiting while the peer acknowledges
// nothing: a peer that has stopped reading would otherwise delay the reset
// for ever.
const drainIdle = 500 * time.Millisecond

// drain waits until the peer of c has acknowledged every byte written to c.
// A reset (SO_LINGER 0) discards whatever is still in the send queue, so
// without this a cut "after N bytes" would deliver fewer than N whenever the
// receiver is slower than the sender. It gives up when the queue stops
// shrinking for drainIdle, when done is closed, or when c is closed.
func drain(c net.Conn, done <-chan struct{}) {
	last := -1
	progress := time.Now()
	wait := 50 * time.Microsecond
	for {
		n, ok := outq(c)
		if !ok || n == 0 {
			return
		}
		if n != last {
			last, progress = n, time.Now()
		} else if time.Since(progress) > drainIdle {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-done:
			t.Stop()
			return
		}
		wait = min(2*wait, 5*time.Millisecond)
	}
}
