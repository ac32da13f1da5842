package core

import (
	"bytes"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// TestFlusherDefersWrites: messages sent through a Flusher are in the sent buffer at once but
// reach the peer only once the Flusher is flushed; then all of them, in order. On the fake clock
// nothing else (an ack timer, a heartbeat) can wake the writer meanwhile.
func TestFlusherDefersWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := pipePair(t, 0, Config{}, Config{})
		time.Sleep(time.Second)
		var f Flusher
		for i := range 3 {
			if _, err := p.client.TrySendSharedDeferred(&f, []byte{byte(i)}, []byte("deferred"), AckNone); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if st := p.client.Stats(); st.MessagesSent != 3 || st.SendBuffered == 0 {
			t.Fatalf("after 3 deferred sends: %d sent, %d bytes buffered; want 3 in the buffer", st.MessagesSent, st.SendBuffered)
		}
		if n := p.server.Stats().RecvBuffered; n != 0 {
			t.Fatalf("the peer holds %d bytes before Flush, want none", n)
		}
		f.Flush()
		synctest.Wait()
		for i := range 3 {
			m, ok, err := p.server.TryRecv()
			if err != nil || !ok {
				t.Fatalf("message %d after Flush: %v %v", i+1, ok, err)
			}
			if want := append([]byte{byte(i)}, "deferred"...); !bytes.Equal(m.Data, want) {
				t.Fatalf("message %d: %q, want %q", i+1, m.Data, want)
			}
			_ = p.server.Settle(m.ID, nil)
		}
		if len(f.pending) != 0 {
			t.Fatalf("the Flusher keeps %d sessions after Flush", len(f.pending))
		}
	})
}

// TestFlusherBound: a session whose deferred bytes reach a quarter of its sent buffer has its
// writer woken without Flush, so a long burst is never held back whole.
func TestFlusherBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const buf, size = 64 << 10, 1 << 10
		p, _ := pipePair(t, 0, Config{SendBufferBytes: buf, MaxMessageSize: 16 << 10}, Config{})
		time.Sleep(time.Second)
		var f Flusher
		defer f.Flush()
		per := messageCost(size)
		under := int((buf/4 - 1) / per) // sends that stay under the bound
		msg := bytes.Repeat([]byte("x"), size)
		for range under {
			if _, err := p.client.TrySendSharedDeferred(&f, nil, msg, AckNone); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if n := p.server.Stats().RecvBuffered; n != 0 {
			t.Fatalf("%d deferred sends under the bound: the peer holds %d bytes, want none", under, n)
		}
		if _, err := p.client.TrySendSharedDeferred(&f, nil, msg, AckNone); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		for i := range under + 1 {
			m, ok, err := p.server.TryRecv()
			if err != nil || !ok {
				t.Fatalf("message %d of %d, with the bound reached and no Flush: %v %v", i+1, under+1, ok, err)
			}
			_ = p.server.Settle(m.ID, nil)
		}
	})
}

// TestFlusherSessionsApart: one Flusher wakes every session it deferred sends on, each once, and a
// session another Flusher already deferred stays with that one (its Flush wakes the writer).
func TestFlusherSessionsApart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p1, _ := pipePair(t, 0, Config{}, Config{})
		p2, _ := pipePair(t, 0, Config{}, Config{})
		time.Sleep(time.Second)
		var f, g Flusher
		for i := range 4 {
			for _, p := range []pair{p1, p2} {
				if _, err := p.client.TrySendSharedDeferred(&f, nil, fmt.Appendf(nil, "f%d", i), AckNone); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := p2.client.TrySendSharedDeferred(&g, nil, []byte("g"), AckNone); err != nil {
			t.Fatal(err)
		}
		if len(f.pending) != 2 || len(g.pending) != 0 {
			t.Fatalf("f defers %d sessions, g %d; want 2 and 0", len(f.pending), len(g.pending))
		}
		g.Flush() // nothing of g's own to wake: p2 waits for f
		synctest.Wait()
		if n := p2.server.Stats().RecvBuffered; n != 0 {
			t.Fatalf("p2's peer holds %d bytes before f's Flush, want none", n)
		}
		f.Flush()
		synctest.Wait()
		for _, c := range []struct {
			p    pair
			want []string
		}{{p1, []string{"f0", "f1", "f2", "f3"}}, {p2, []string{"f0", "f1", "f2", "f3", "g"}}} {
			for _, w := range c.want {
				m, ok, err := c.p.server.TryRecv()
				if err != nil || !ok || string(m.Data) != w {
					t.Fatalf("want %q: %q %v %v", w, m.Data, ok, err)
				}
				_ = c.p.server.Settle(m.ID, nil)
			}
		}
	})
}
