package core_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ftsl-go/ftsl/core"
)

// A server and a client in one process: the client sends, the server reads, the client closes.
func Example() {
	ctx := context.Background()
	ln, err := core.Listen("127.0.0.1:0", core.Config{})
	if err != nil {
		panic(err)
	}
	defer ln.Close()

	client, err := core.Dial(ctx, ln.Addr().String(), core.Config{})
	if err != nil {
		panic(err)
	}
	server, err := ln.Accept(ctx)
	if err != nil {
		panic(err)
	}
	for _, s := range []string{"hello", "world"} {
		if _, err := client.Send(ctx, []byte(s), core.AckNone); err != nil {
			panic(err)
		}
	}
	// Close returns once the server has everything.
	if err := client.Close(ctx); err != nil {
		panic(err)
	}
	for {
		m, err := server.Recv(ctx)
		if errors.Is(err, core.ErrSessionClosed) {
			fmt.Println("the client closed the session")
			break
		}
		fmt.Printf("message %d: %s\n", m.ID, m.Data)
		_ = server.Settle(m.ID, nil) // done with it: its space goes back to the sender
	}
	// Output:
	// message 1: hello
	// message 2: world
	// the client closed the session
}

// killer is a dialer whose last connection can be reset, to show a session riding through.
type killer struct {
	mu   sync.Mutex
	last net.Conn
}

func (k *killer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	k.mu.Lock()
	k.last = c
	k.mu.Unlock()
	return c, err
}

func (k *killer) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	_ = k.last.(*net.TCPConn).SetLinger(0) // a reset, as a crashing network would cause
	_ = k.last.Close()
}

// A session outlives its TCP connections: messages sent before, during and after a connection
// dies arrive once each, in order.
func Example_resume() {
	ctx := context.Background()
	ln, err := core.Listen("127.0.0.1:0", core.Config{})
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	k := &killer{}
	client, err := core.Dial(ctx, ln.Addr().String(), core.Config{Dial: k.dial})
	if err != nil {
		panic(err)
	}
	defer client.Abort()
	server, err := ln.Accept(ctx)
	if err != nil {
		panic(err)
	}
	for i := 1; i <= 6; i++ {
		if i == 4 {
			k.kill()
		}
		if _, err := client.Send(ctx, []byte(fmt.Sprint("message ", i)), core.AckNone); err != nil {
			panic(err)
		}
	}
	for i := 1; i <= 6; i++ {
		m, err := server.Recv(ctx)
		if err != nil {
			panic(err)
		}
		fmt.Println(string(m.Data))
		_ = server.Settle(m.ID, nil)
	}
	fmt.Println("reconnections:", client.Stats().Reconnects)
	// Output:
	// message 1
	// message 2
	// message 3
	// message 4
	// message 5
	// message 6
	// reconnections: 1
}

// progress is an Observer that reports when the server settles message 3.
type progress struct {
	failed chan string
	done   chan struct{}
	once   sync.Once
}

func (p *progress) Progress(pr core.Progress) {
	if pr.Processed >= 3 {
		p.once.Do(func() { close(p.done) })
	}
}
func (p *progress) Failed(mid uint64, reason string) { p.failed <- fmt.Sprintf("%d: %s", mid, reason) }
func (p *progress) StateChanged(core.State, error)   {}

// The receiver settles messages that ask for AckProcessed; the sender's Observer hears the
// outcome without ever having waited for it.
func ExampleSession_Settle() {
	ctx := context.Background()
	ln, _ := core.Listen("127.0.0.1:0", core.Config{})
	defer ln.Close()
	client, _ := core.Dial(ctx, ln.Addr().String(), core.Config{AckDelay: time.Millisecond})
	defer client.Abort()
	server, _ := ln.Accept(ctx)

	obs := &progress{failed: make(chan string, 1), done: make(chan struct{})}
	client.Observe(obs)
	for _, order := range []string{"apples", "pears", "plums"} {
		_, _ = client.Send(ctx, []byte(order), core.AckProcessed)
	}
	for i := 0; i < 3; i++ {
		m, _ := server.Recv(ctx)
		var err error
		if string(m.Data) == "pears" {
			err = errors.New("out of pears")
		}
		_ = server.Settle(m.ID, err)
	}
	<-obs.done
	fmt.Println("failed:", <-obs.failed)
	// Output:
	// failed: 2: out of pears
}

// A large message streamed in pieces: the sender needs no buffer of its size, the receiver gets
// it whole.
func ExampleSession_NewMessage() {
	ctx := context.Background()
	ln, _ := core.Listen("127.0.0.1:0", core.Config{})
	defer ln.Close()
	client, _ := core.Dial(ctx, ln.Addr().String(), core.Config{})
	defer client.Abort()
	server, _ := ln.Accept(ctx)

	w, err := client.NewMessage(ctx, core.AckNone)
	if err != nil {
		panic(err)
	}
	piece := make([]byte, 100<<10)
	for i := 0; i < 5; i++ {
		if _, err := w.Write(piece); err != nil {
			panic(err)
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	m, _ := server.Recv(ctx)
	fmt.Printf("message %d: %d KiB\n", m.ID, len(m.Data)>>10)
	// Output:
	// message 1: 500 KiB
}
