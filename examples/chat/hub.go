package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub"
)

// runningHub is a hub this process serves on a TCP address.
type runningHub struct {
	*pubsub.Hub
	addr   string
	served chan error // Serve's return
}

// startHub serves a hub on listen ("127.0.0.1:0" takes any free port).
func startHub(listen string) (*runningHub, error) {
	cfg := pubsub.HubConfig{}
	hub, err := pubsub.NewHub(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := oneway.Listen(listen, cfg.Session)
	if err != nil {
		_ = hub.Close(context.Background()) // no client yet: nothing to wait for
		return nil, fmt.Errorf("listen on %s: %w", listen, err)
	}
	h := &runningHub{Hub: hub, addr: ln.Addr().String(), served: make(chan error, 1)}
	go func() { h.served <- hub.Serve(context.Background(), ln) }()
	return h, nil
}

// close closes the hub gracefully (every session closes once the hub's accepted messages went
// through) within ctx, and reports how it went.
func (h *runningHub) close(ctx context.Context) error {
	err := h.Hub.Close(ctx)
	if serr := <-h.served; err == nil {
		err = serr
	}
	return err
}

// serve is -serve: a hub and nothing else, until SIGINT or SIGTERM; a second signal aborts.
func serve(o *options, stdout, stderr io.Writer, sigs <-chan os.Signal) int {
	h, err := startHub(o.listen)
	if err != nil {
		fmt.Fprintln(stderr, "chat:", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "chat hub listening on %s\n", h.addr)
	fmt.Fprintf(stderr, "chat: join with: go run ./examples/chat -hub %s -name NAME -room ROOM\n", h.addr)
	status := exitOK
	select {
	case sig := <-sigs:
		fmt.Fprintf(stderr, "chat: %v: closing the hub (a second signal aborts)\n", sig)
	case err := <-h.served: // Serve ends before Close only if accepting failed
		fmt.Fprintln(stderr, "chat: serving failed:", err)
		h.served <- nil // for close
		status = exitFail
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- h.close(ctx) }()
	select {
	case err = <-closed:
	case sig := <-sigs:
		fmt.Fprintf(stderr, "chat: %v again: aborting\n", sig)
		cancel()
		err = <-closed
	}
	if err != nil {
		fmt.Fprintln(stderr, "chat: closing the hub:", err)
		return exitFail
	}
	return status
}
