package naming_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/naming"
)

// A server binds its name; a client dials the name through a Resolver, which from then on
// watches it: when the server migrates and rebinds the name (Client.Rebind), the client
// reconnects to the new address at once.
func Example_resolver() {
	ctx := context.Background()

	// The naming service (the ftsl-naming command runs one as a program).
	ns, err := naming.NewServer(naming.ServerConfig{Token: "secret"})
	if err != nil {
		panic(err)
	}
	hs := httptest.NewServer(ns)
	defer hs.Close()
	defer ns.Close()
	nc := &naming.Client{BaseURL: hs.URL, Token: "secret"}

	// The FTSL server listens, and binds its name to its address.
	ln, err := core.Listen("127.0.0.1:0", core.Config{})
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	b, err := nc.Bind(ctx, "chat", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	fmt.Printf("bound %s at version %d\n", b.Name, b.Version)

	// The client dials the name.
	r, err := naming.NewResolver(nc, naming.ResolverConfig{})
	if err != nil {
		panic(err)
	}
	defer r.Close()
	c, err := core.Dial(ctx, "chat", core.Config{Resolver: r})
	if err != nil {
		panic(err)
	}
	defer c.Abort()
	s, err := ln.Accept(ctx)
	if err != nil {
		panic(err)
	}
	if _, err := c.Send(ctx, []byte("hello"), core.AckNone); err != nil {
		panic(err)
	}
	m, err := s.Recv(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Printf("the server got %q\n", m.Data)
	// Output:
	// bound chat at version 1
	// the server got "hello"
}

// A StaticResolver is a naming service in the application's own hands: Set moves a name, and
// clients waiting to reconnect try the new address at once.
func ExampleStaticResolver() {
	r, err := naming.NewStaticResolver(map[string]string{"chat": "127.0.0.1:4300"})
	if err != nil {
		panic(err)
	}
	addr, _ := r.Resolve(context.Background(), "chat")
	moved := r.Changed("chat")
	if err := r.Set("chat", "127.0.0.1:4301"); err != nil {
		panic(err)
	}
	<-moved
	now, _ := r.Resolve(context.Background(), "chat")
	fmt.Println(addr, "->", now)
	// Output: 127.0.0.1:4300 -> 127.0.0.1:4301
}
