package core

import (
	"errors"
	"fmt"
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
	const clients, slow, payloads, size = 12, 2, 300, 8 << 10
	ln, cs, ss := hubSessions(t, clients, Config{SendBufferBytes: 256 << 10, MaxMessageSize: 64 << 10},
		Config{ReceiveBufferBytes: 128 << 10, MaxMessageSize: 64 << 10})
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for k, c := range cs[slow:] { // the first ones never read
		k += slow
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= payloads; i++ {
				m, err := c.Recv(ctx)
				if err != nil {
					errs <- err
					return
				}
				if len(m.Data) == 0 || m.Data[0] != byte(k) {
					errs <- fmt.Errorf("session %d, payload %d: prefix %v", k, i, m.Data[:min(1, len(m.Data))])
					return
				}
				if err := checkPayload(m.Data[1:], 3, i, size); err != nil {
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
			_, err := s.TrySendShared([]byte{byte(k)}, p, AckNone) // a per-session prefix, as a hub sends
			switch {
			case errors.Is(err, ErrBufferFull) && k < slow:
				refused[k]++
			case errors.Is(err, ErrBufferFull):
				// A fast session is only behind for a moment: wait for it, for the test's sake.
				_, err = s.SendShared(ctx, []byte{byte(k)}, p, AckNone)
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

// TestSendMemoryBudget: peers that never read pin the sent buffers of their sessions, but all of
// them together no more than MaxSendMemory: beyond it sends fail with ErrBufferFull at once, and
// memory a session gives back (here, as it ends) serves the others.
func TestSendMemoryBudget(t *testing.T) {
	ctx := testCtx(t)
	base := runtime.NumGoroutine()
	const budget = 256 << 10
	// The clients never read, and their small windows leave the rest in the server's buffers.
	ln, cs, ss := hubSessions(t, 4, Config{MaxSendMemory: budget, MaxMessageSize: 16 << 10},
		Config{ReceiveBufferBytes: 32 << 10, MaxMessageSize: 16 << 10})
	msg := make([]byte, 8<<10)
	total := 0
	for _, s := range ss {
		for {
			_, err := s.TrySend(msg, AckNone)
			if errors.Is(err, ErrBufferFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		total += s.Stats().BufferMemory
	}
	if total > budget {
		t.Fatalf("the sessions' sent buffers hold %d bytes, over MaxSendMemory %d", total, budget)
	}
	if _, err := ss[3].Send(ctx, msg, AckNone); !errors.Is(err, ErrBufferFull) {
		t.Fatalf("Send past the budget: %v, want ErrBufferFull at once", err)
	}
	cs[0].Abort()
	waitDone(t, ss[0])
	if _, err := ss[3].TrySend(msg, AckNone); err != nil {
		t.Fatalf("after a session ended and gave its memory back: %v", err)
	}
	for _, c := range cs {
		c.Abort()
	}
	_ = ln.Close()
	waitDone(t, append(cs, ss...)...)
	checkGoroutines(t, base)
}

// hubSessions opens n sessions to one listener over loopback TCP, as a hub has them: the listener,
// the client ends and the server ends.
func hubSessions(t *testing.T, n int, serverCfg, clientCfg Config) (ln *Listener, clients, servers []*Session) {
	t.Helper()
	ctx := testCtx(t)
	ln, err := Listen("127.0.0.1:0", serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		c, err := Dial(ctx, ln.Addr().String(), clientCfg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		clients, servers = append(clients, c), append(servers, s)
	}
	return ln, clients, servers
}
