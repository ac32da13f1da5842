package pubsub

import (
	"testing"
	"testing/synctest"
)

// TestMsgQueue: FIFO, bounded (put waits while full), and close wakes both sides and hands back
// what was waiting.
func TestMsgQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newMsgQueue(2)
		msgs := []*Msg{{Subject: "a"}, {Subject: "b"}, {Subject: "c"}, {Subject: "d"}}
		for _, m := range msgs[:2] {
			if !q.put(m) {
				t.Fatal("put refused")
			}
		}
		third := make(chan bool)
		go func() { third <- q.put(msgs[2]) }()
		synctest.Wait()
		select {
		case <-third:
			t.Fatal("put did not wait while the queue was full")
		default:
		}
		for i, want := range msgs[:3] {
			m, ok := q.take()
			if !ok || m != want {
				t.Fatalf("take %d: %v %v", i, m, ok)
			}
			if i == 0 && !<-third {
				t.Fatal("the waiting put was refused")
			}
		}

		// An empty queue: take waits, and close wakes it.
		took := make(chan bool)
		go func() { _, ok := q.take(); took <- ok }()
		synctest.Wait()
		if left := q.close(); len(left) != 0 {
			t.Fatalf("left %v", left)
		}
		if <-took {
			t.Fatal("take after close reported a message")
		}
		if q.put(msgs[3]) {
			t.Fatal("put after close was taken")
		}

		// A full queue: put waits, close wakes it, and the waiting messages come back.
		q = newMsgQueue(1)
		q.put(msgs[0])
		put := make(chan bool)
		go func() { put <- q.put(msgs[1]) }()
		synctest.Wait()
		left := q.close()
		if len(left) != 1 || left[0] != msgs[0] {
			t.Fatalf("left %v", left)
		}
		if <-put {
			t.Fatal("a put woken by close was taken")
		}
		if q.close() != nil {
			t.Fatal("a second close returned messages")
		}

		// finish: what waits is still taken, in order, nothing new gets in, and a sleeping take
		// wakes to report the end.
		q = newMsgQueue(2)
		q.put(msgs[0])
		q.put(msgs[1])
		q.finish()
		if q.put(msgs[2]) {
			t.Fatal("put after finish was taken")
		}
		for i, want := range msgs[:2] {
			if m, ok := q.take(); !ok || m != want {
				t.Fatalf("take %d after finish: %v %v", i, m, ok)
			}
		}
		if _, ok := q.take(); ok {
			t.Fatal("take reported a message after the last")
		}
		q = newMsgQueue(1)
		go func() { _, ok := q.take(); took <- ok }()
		synctest.Wait()
		q.finish()
		if <-took {
			t.Fatal("take woken by finish reported a message")
		}
	})
}
