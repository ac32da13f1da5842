package core

import (
	"errors"
	"runtime"
	"sync"
	"testing"
)

// TestSharedFanOut: a server sends the same payloads to many sessions, as a pubsub hub does. The
// payloads are kept once, by reference: a session whose reader stopped fills its sent buffer in
// cost, not in memory, and TrySendShared refuses it more without holding up the others, which
// get every payload intact.
func TestSharedFanOut(t *testing.T) {
	ctx := testCtx(t)
	base := runtime.NumGoroutine()
	ln, err := Listen("127.0.0.1:0", Config{SendBufferBytes: 256 << 10, MaxMessageSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	const clients, slow, payloads, size = 12, 2, 300, 8 << 10
	var cs, ss []*Session
	for i := 0; i < clients; i++ {
		c, err := Dial(ctx, ln.Addr().String(), Config{ReceiveBufferBytes: 128 << 10, MaxMessageSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cs, ss = append(cs, c), append(ss, s)
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for _, c := range cs[slow:] { // the first ones never read
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= payloads; i++ {
				m, err := c.Recv(ctx)
				if err != nil {
					errs <- err
					return
				}
				if err := checkPayload(m.Data, 3, i, size); err != nil {
					errs <- err
					return
				}
				_ = c.Settle(m.ID, nil)
			}
		}()
	}
	refused := make([]int, clients)
	for i := uint64(1); i <= payloads; i++ {
		p := payload(3, i, size) // one copy, sent to every session
		for k, s := range ss {
			_, err := s.TrySendShared(p, AckNone)
			switch {
			case errors.Is(err, ErrBufferFull) && k < slow:
				refused[k]++
			case errors.Is(err, ErrBufferFull):
				// A fast session is only behind for a moment: wait for it, for the test's sake.
				_, err = s.SendShared(ctx, p, AckNone)
			}
			if err != nil && !errors.Is(err, ErrBufferFull) {
				t.Fatalf("session %d, payload %d: %v", k, i, err)
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for k := 0; k < slow; k++ {
		st := ss[k].Stats()
		if refused[k] == 0 || st.SendBuffered < 200<<10 {
			t.Errorf("slow session %d: %d payloads refused, %d bytes buffered", k, refused[k], st.SendBuffered)
		}
		// 256 KiB of payloads buffered, but only their frame headers copied.
		if st.BufferMemory > 4<<10 {
			t.Errorf("slow session %d holds %d bytes of memory for %d bytes of shared payloads", k, st.BufferMemory, st.SendBuffered)
		}
	}
	for _, c := range cs {
		c.Abort()
	}
	_ = ln.Close()
	waitDone(t, append(cs, ss...)...)
	checkGoroutines(t, base)
}
