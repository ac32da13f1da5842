package pubsub

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/netns"
	"github.com/ftsl-go/ftsl/naming"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/snapshot"
)

// hubChildEnv makes the test binary a hub process: "serve URL FILE" serves a hub, binds the name
// "hub" at the naming service at URL, and on a line "save" from stdin freezes the hub into FILE
// and exits; "restore URL FILE" rebuilds the hub from FILE on a new port, serves, rebinds the
// name, and runs until stdin closes. Each prints "ready ADDR" once it serves.
const hubChildEnv = "FTSL_PUBSUB_HUB_CHILD"

func init() { childMains[hubChildEnv] = runHubChild }

func runHubChild(spec string) error {
	f := strings.Fields(spec)
	if len(f) != 3 {
		return fmt.Errorf("%s=%q: want MODE URL FILE", hubChildEnv, spec)
	}
	mode, url, path := f[0], f[1], f[2]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc := &naming.Client{BaseURL: url}
	stdin := bufio.NewReader(os.Stdin)
	switch mode {
	case "serve":
		h, err := NewHub(HubConfig{})
		if err != nil {
			return err
		}
		ln, err := oneway.Listen("127.0.0.1:0", oneway.Config{})
		if err != nil {
			return err
		}
		go func() { _ = h.Serve(ctx, ln) }()
		for h.Addr() == nil { // (Serve has no signal of its start but this)
			time.Sleep(100 * time.Microsecond)
		}
		if _, err := nc.Bind(ctx, "hub", ln.Addr().String()); err != nil {
			return err
		}
		fmt.Println("ready", ln.Addr())
		if line, err := stdin.ReadString('\n'); err != nil || line != "save\n" {
			return fmt.Errorf("serve: read %q, %v; want save", line, err)
		}
		snap, err := snapshot.Freeze(ctx, h)
		if err != nil {
			return err
		}
		if err := snap.WriteFile(path); err != nil {
			return err
		}
		if err := h.Close(ctx); err != nil {
			return err
		}
		fmt.Println("saved")
		return nil
	case "restore":
		snap, err := snapshot.ReadFile(path)
		if err != nil {
			return err
		}
		nl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		h, err := RestoreHub(nl, HubConfig{}, snap)
		if err != nil {
			return err
		}
		if err := h.Continue(); err != nil {
			return err
		}
		if _, err := nc.Rebind(ctx, "hub", nl.Addr().String()); err != nil {
			return err
		}
		fmt.Println("ready", nl.Addr())
		_, _ = io.Copy(io.Discard, stdin)
		return h.Close(ctx)
	}
	return fmt.Errorf("%s: mode %q", hubChildEnv, mode)
}

// hubChild is a hub process run by a test.
type hubChild struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	addr string
}

func startHubChild(t *testing.T, mode, url, path string) *hubChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %s", hubChildEnv, mode, url, path))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &hubChild{cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := c.out.ReadString('\n')
	if addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ready "); err != nil || !ok {
		t.Fatalf("hub process (%s): %q %v", mode, line, err)
	} else {
		c.addr = addr
	}
	return c
}

// processHub is a hub that moves from one child process to another through a snapshot file,
// found by its clients through the naming service of the test process.
type processHub struct {
	t     *testing.T
	url   string
	path  string
	nsrv  *naming.Server
	hs    *httptest.Server
	res   *naming.Resolver
	child *hubChild
}

func startProcessHub(t *testing.T) *processHub {
	t.Helper()
	ns, err := naming.NewServer(naming.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(ns)
	res, err := naming.NewResolver(&naming.Client{BaseURL: hs.URL}, naming.ResolverConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ph := &processHub{t: t, url: hs.URL, path: filepath.Join(t.TempDir(), "hub.snap"), nsrv: ns, hs: hs, res: res}
	ph.child = startHubChild(t, "serve", ph.url, ph.path)
	return ph
}

func (ph *processHub) dial(name string) *Client {
	ph.t.Helper()
	cfg := Config{Name: name}
	cfg.Session.Core.Resolver = ph.res
	c, err := Dial(testCtx(ph.t), "hub", cfg)
	if err != nil {
		ph.t.Fatal(err)
	}
	return c
}

// move has the serving process save the hub and exit, and starts the one that restores it.
func (ph *processHub) move() HubState {
	ph.t.Helper()
	if _, err := io.WriteString(ph.child.in, "save\n"); err != nil {
		ph.t.Fatal(err)
	}
	if line, err := ph.child.out.ReadString('\n'); err != nil || line != "saved\n" {
		ph.t.Fatalf("hub process: %q %v", line, err)
	}
	if err := ph.child.cmd.Wait(); err != nil {
		ph.t.Fatalf("the saving hub process: %v", err)
	}
	snap, err := snapshot.ReadFile(ph.path)
	if err != nil {
		ph.t.Fatal(err)
	}
	st, err := HubStateFrom(snap)
	if err != nil {
		ph.t.Fatal(err)
	}
	old := ph.child.addr
	ph.child = startHubChild(ph.t, "restore", ph.url, ph.path)
	if ph.child.addr == old {
		ph.t.Fatalf("restored on the same address %s", old)
	}
	return st
}

func (ph *processHub) close() {
	_ = ph.child.in.Close()
	if err := ph.child.cmd.Wait(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		ph.t.Errorf("the restored hub process: %v", err)
	}
	_ = ph.res.Close()
	_ = ph.nsrv.Close()
	ph.hs.Close()
}

// TestHubMigrateAcrossProcesses: the hub runs in a child process, saves itself into a snapshot
// file mid-traffic and exits; another process restores it on another port and rebinds its name;
// the clients, in this process, resume there with every publish, outcome and subscription intact.
func TestHubMigrateAcrossProcesses(t *testing.T) {
	testHubMigrate(t, startProcessHub(t), 10)
}

// TestHubMigrateNetns moves the hub to another network namespace, another address: it starts in
// namespace A, next to its clients (10.213.0.1), and moves to namespace B (10.213.0.2), reached
// over a veth pair. It runs when FTSL_NETNS=1 (root and iproute2 needed); .ci/run sets it.
func TestHubMigrateNetns(t *testing.T) {
	if os.Getenv("FTSL_NETNS") != "1" {
		t.Skip("set FTSL_NETNS=1 (as root, with iproute2) to move a hub between network namespaces")
	}
	if ok, why := netns.Available(); !ok {
		t.Fatalf("FTSL_NETNS=1 but network namespaces are unavailable: %s", why)
	}
	pair, err := netns.NewPair("ftsl-pubsub")
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	moves := 0
	listen := func() (net.Listener, error) {
		moves++
		if moves == 1 {
			return pair.ListenA("tcp", ":0")
		}
		return pair.ListenB("tcp", ":0")
	}
	mh := startMovingHubOn(t, HubConfig{}, listen, pair.DialA)
	first := *mh.addr.Load()
	testHubMigrate(t, mh, 20)
	if now := *mh.addr.Load(); !strings.HasPrefix(first, pair.AddrA+":") || !strings.HasPrefix(now, pair.AddrB+":") {
		t.Fatalf("the hub went from %s to %s, want from %s to %s", first, now, pair.AddrA, pair.AddrB)
	}
}
