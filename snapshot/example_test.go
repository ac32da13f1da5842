package snapshot_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/snapshot"
)

// A oneway server moves to another port through a file. Its client finds it through a
// resolver (a naming service, in the paper), resumes there, and its message sent while the
// server was away is processed by the new process.
func ExampleFreeze() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "snapshot-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "server.snap")

	// The name service: where "orders" is served now.
	var addr atomic.Value
	resolver := core.ResolverFunc(func(context.Context, string) (string, error) { return addr.Load().(string), nil })

	ln, _ := oneway.Listen("127.0.0.1:0", oneway.Config{})
	addr.Store(ln.Addr().String())
	client, _ := oneway.Dial(ctx, "orders", oneway.Config{Core: core.Config{
		Resolver: resolver, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond}})
	defer client.Abort()
	server, _ := ln.Accept(ctx)
	t1, _ := client.Send(ctx, []byte("order 1"), oneway.AckProcessed)
	d, _ := server.Recv(ctx)
	_ = d.Confirm()
	st, _ := t1.Wait(ctx)
	fmt.Println("order 1:", st)

	// The old process freezes its listener and writes the file.
	snap, err := snapshot.Freeze(ctx, ln)
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = snap.PutBytes("app", []byte("orders served: 1"))
	if err := snap.WriteFile(path); err != nil {
		fmt.Println(err)
		return
	}
	_ = ln.Close()
	fmt.Println("sections:", snap.Names())

	// Meanwhile the client goes on: its message waits in its session.
	t2, _ := client.Send(ctx, []byte("order 2"), oneway.AckProcessed)

	// The new process reads the file and serves the sessions on another port.
	snap, err = snapshot.ReadFile(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	state, _ := snapshot.Oneway(snap)
	app, _ := snap.Bytes("app")
	nl, _ := net.Listen("tcp", "127.0.0.1:0")
	ln2, sessions, err := oneway.NewListenerFrom(nl, oneway.Config{}, state)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln2.Close()
	addr.Store(ln2.Addr().String()) // rebind the name
	_ = ln2.Continue()
	fmt.Printf("restored %d session, app: %q\n", len(sessions), app)

	d, _ = sessions[0].Recv(ctx)
	fmt.Println("the new process got:", string(d.Data))
	_ = d.Confirm()
	st, _ = t2.Wait(ctx)
	fmt.Println("order 2:", st)
	// Output:
	// order 1: processed
	// sections: [core oneway app]
	// restored 1 session, app: "orders served: 1"
	// the new process got: order 2
	// order 2: processed
}
