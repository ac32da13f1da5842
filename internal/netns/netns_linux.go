package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// netnsDir is where "ip netns add" bind-mounts named namespaces.
	netnsDir = "/var/run/netns"
	// namePrefix starts every namespace name made by this package.
	namePrefix = "ftsl"

	addrA  = "10.213.0.1"
	addrB  = "10.213.0.2"
	subnet = "10.213.0.0/24"
	plen   = "/24"

	// maxPrefixLen bounds the sanitised caller prefix used in namespace
	// names; maxIfPrefixLen bounds it in interface names, which Linux
	// limits to 15 bytes (IFNAMSIZ-1).
	maxPrefixLen   = 24
	maxIfPrefixLen = 12
)

var counter atomic.Uint64

// ipPath is the resolved path of the ip command ("" if not found).
var ipPath = sync.OnceValue(func() string {
	p, err := exec.LookPath("ip")
	if err != nil {
		return ""
	}
	return p
})

var availability = sync.OnceValues(probe)

// Available reports whether network namespaces can be made here: the
// process is root, the ip command exists, and "ip netns add", veth creation
// and entering a namespace with setns all work. When it returns false the
// string gives the reason, suitable for t.Skip. The result is computed once
// per process.
func Available() (bool, string) {
	return availability()
}

func probe() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "network namespaces need root (euid is " + strconv.Itoa(os.Geteuid()) + ")"
	}
	if ipPath() == "" {
		return false, `iproute2 "ip" command not found in PATH`
	}
	name := fmt.Sprintf("%s-probe-%d-%d", namePrefix, os.Getpid(), counter.Add(1))
	if err := addNetns(name); err != nil {
		return false, err.Error()
	}
	defer deleteNetns(name)
	if err := ip("-n", name, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"); err != nil {
		return false, "veth pairs unavailable: " + err.Error()
	}
	if err := inNetns(name, func() error { return nil }); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// NewPair creates namespaces A and B, a veth pair between them, assigns
// AddrA/AddrB, and brings up lo and the veth end in each namespace.
//
// The namespace names are derived from prefix (typically t.Name(), sanitised
// and shortened), the process id and a per-process counter, so they are
// unique per call. Namespaces left behind by earlier crashed runs with the
// same prefix (whose process no longer exists), or whose names collide, are
// deleted first.
func NewPair(prefix string) (*Pair, error) {
	if ok, why := Available(); !ok {
		return nil, errors.New("netns: unavailable: " + why)
	}
	p := sanitise(prefix, maxPrefixLen)
	sweepLeftovers(p)
	n := counter.Add(1)
	base := fmt.Sprintf("%s-%s-%d-%d", namePrefix, p, os.Getpid(), n)
	ifp := sanitise(prefix, maxIfPrefixLen)
	pair := &Pair{
		NameA: base + "-a",
		NameB: base + "-b",
		VethA: ifp + "-a",
		VethB: ifp + "-b",
		AddrA: addrA,
		AddrB: addrB,
	}
	if err := pair.setup(); err != nil {
		deleteNetns(pair.NameA)
		deleteNetns(pair.NameB)
		return nil, err
	}
	return pair, nil
}

func (p *Pair) setup() error {
	for _, ns := range []string{p.NameA, p.NameB} {
		if exists(ns) {
			// A leftover with exactly this name (e.g. a reused pid
			// after a crash): throw it away.
			if err := deleteNetns(ns); err != nil {
				return err
			}
		}
		if err := addNetns(ns); err != nil {
			return err
		}
	}
	steps := [][]string{
		// Create the pair inside A and put the peer straight into B,
		// so nothing ever appears in the host namespace.
		{"-n", p.NameA, "link", "add", p.VethA, "type", "veth", "peer", "name", p.VethB, "netns", p.NameB},
		{"-n", p.NameA, "addr", "add", p.AddrA + plen, "dev", p.VethA},
		{"-n", p.NameB, "addr", "add", p.AddrB + plen, "dev", p.VethB},
		{"-n", p.NameA, "link", "set", "lo", "up"},
		{"-n", p.NameB, "link", "set", "lo", "up"},
		{"-n", p.NameA, "link", "set", p.VethA, "up"},
		{"-n", p.NameB, "link", "set", p.VethB, "up"},
	}
	for _, args := range steps {
		if err := ip(args...); err != nil {
			return err
		}
	}
	return p.waitCarrier()
}

// ListenA returns a listener whose socket lives in namespace A, with the
// rules of ListenB; an empty host means AddrA. A server that starts there,
// next to its clients, and moves to B changes address and namespace.
func (p *Pair) ListenA(network, addr string) (net.Listener, error) {
	return p.listenIn(p.NameA, p.AddrA, network, addr)
}

// ListenB returns a listener whose socket lives in namespace B. An empty
// host in addr (as in ":0") means AddrB; otherwise the host must be an IP
// literal (no name resolution is done, so that no lookup ever leaves the
// namespace or touches the host's resolver).
func (p *Pair) ListenB(network, addr string) (net.Listener, error) {
	return p.listenIn(p.NameB, p.AddrB, network, addr)
}

func (p *Pair) listenIn(ns, defHost, network, addr string) (net.Listener, error) {
	if err := p.checkOpen(); err != nil {
		return nil, err
	}
	addr, err := literalAddr(addr, defHost)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	err = inNetns(ns, func() error {
		var lc net.ListenConfig
		var err error
		ln, err = lc.Listen(context.Background(), network, addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ln, nil
}

// DialA connects to addr with a socket that lives in namespace A. It has
// the signature of net.Dialer.DialContext, so it can be passed wherever a
// dial function is expected. The host in addr must be an IP literal. ctx
// cancellation and deadlines work as with net.Dialer.
func (p *Pair) DialA(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := p.checkOpen(); err != nil {
		return nil, err
	}
	if _, err := literalAddr(addr, ""); err != nil {
		return nil, err
	}
	var conn net.Conn
	// The whole DialContext (socket creation and connect) runs on the
	// namespace-locked goroutine. DialContext itself honours ctx, so
	// waiting for inNetns to return cannot outlive ctx by more than the
	// time it takes to notice the cancellation.
	err := inNetns(p.NameA, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// LinkDown sets the veth end in A administratively down, like pulling the
// cable: the end in B loses carrier, packets in either direction are
// silently dropped (nobody sends a RST or an ICMP error across the link),
// and A's route to 10.213.0.0/24 disappears, so new dials from A fail with
// "network is unreachable". Existing connections stay open; unacknowledged
// data is retransmitted by TCP once the link is up again.
func (p *Pair) LinkDown() error {
	if err := p.checkOpen(); err != nil {
		return err
	}
	return ip("-n", p.NameA, "link", "set", p.VethA, "down")
}

// LinkUp sets the veth end in A up again, makes sure its address and the
// connected route are present (re-adding them if they vanished), and waits
// until both ends report carrier, so that a new dial from A to B works.
func (p *Pair) LinkUp() error {
	if err := p.checkOpen(); err != nil {
		return err
	}
	if err := ip("-n", p.NameA, "link", "set", p.VethA, "up"); err != nil {
		return err
	}
	for _, s := range []struct{ ns, dev, addr string }{
		{p.NameA, p.VethA, p.AddrA},
		{p.NameB, p.VethB, p.AddrB},
	} {
		out, err := ipOutput("-n", s.ns, "-4", "-o", "addr", "show", "dev", s.dev)
		if err != nil {
			return err
		}
		if !strings.Contains(out, " "+s.addr+plen+" ") {
			if err := ip("-n", s.ns, "addr", "replace", s.addr+plen, "dev", s.dev); err != nil {
				return err
			}
		}
		out, err = ipOutput("-n", s.ns, "-4", "route", "show", subnet)
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) == "" {
			if err := ip("-n", s.ns, "route", "replace", subnet, "dev", s.dev, "src", s.addr); err != nil {
				return err
			}
		}
	}
	return p.waitCarrier()
}

// Close deletes both namespaces, and with them the veth pair. It is
// idempotent and does not fail if the namespaces were already deleted.
// Sockets still open inside a namespace keep the kernel object alive (but
// nameless) until they are closed.
func (p *Pair) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	return errors.Join(deleteNetns(p.NameA), deleteNetns(p.NameB))
}

func (p *Pair) checkOpen() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("netns: pair %s/%s is closed", p.NameA, p.NameB)
	}
	return nil
}

// waitCarrier waits until both veth ends are up with carrier (LOWER_UP).
func (p *Pair) waitCarrier() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		outA, errA := ipOutput("-n", p.NameA, "-o", "link", "show", "dev", p.VethA)
		outB, errB := ipOutput("-n", p.NameB, "-o", "link", "show", "dev", p.VethB)
		if err := errors.Join(errA, errB); err != nil {
			return err
		}
		if strings.Contains(outA, "LOWER_UP") && strings.Contains(outB, "LOWER_UP") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns: veth pair %s/%s has no carrier after 5s:\n%s%s", p.VethA, p.VethB, outA, outB)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inNetns runs fn on a fresh goroutine locked to an OS thread that has
// entered the named network namespace, and returns fn's error. Sockets
// belong to the network namespace of the thread that creates them, and keep
// belonging to it afterwards, whichever thread later uses them.
//
// The goroutine deliberately exits WITHOUT calling runtime.UnlockOSThread:
// its thread is now in a foreign namespace, and if it were unlocked the Go
// scheduler would reuse it for arbitrary goroutines, which would then create
// their sockets in the wrong namespace (and exec'd children would inherit
// it). When a goroutine exits while still locked, the runtime terminates
// the thread instead of returning it to the pool (or, for the main thread,
// parks it forever), so the tainted thread is never reused. Threads that the
// runtime starts while this goroutine runs are cloned from its template
// thread, not from the locked one, so they do not inherit the namespace.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: see above.
		errc <- func() error {
			path := netnsDir + "/" + name
			fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("netns: open %s: %w", path, err)
			}
			defer syscall.Close(fd)
			if _, _, errno := syscall.Syscall(sysSetns, uintptr(fd), syscall.CLONE_NEWNET, 0); errno != 0 {
				return fmt.Errorf("netns: setns(%s, CLONE_NEWNET): %w", path, errno)
			}
			return fn()
		}()
	}()
	return <-errc
}

// literalAddr checks that addr is host:port with an empty or IP-literal
// host; an empty host is replaced by defHost when that is not "".
func literalAddr(addr, defHost string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("netns: %w", err)
	}
	if host == "" {
		if defHost == "" {
			return "", fmt.Errorf("netns: address %q has no host", addr)
		}
		return net.JoinHostPort(defHost, port), nil
	}
	h, _, _ := strings.Cut(host, "%")
	if _, err := netip.ParseAddr(h); err != nil {
		return "", fmt.Errorf("netns: host in %q must be an IP literal: %w", addr, err)
	}
	return addr, nil
}

// sanitise maps s to [A-Za-z0-9_] (other bytes become '_'), truncated to max
// bytes, and never empty.
func sanitise(s string, max int) string {
	b := []byte(s)
	if len(b) > max {
		b = b[:max]
	}
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "x"
	}
	return string(b)
}

// sweepLeftovers deletes namespaces named "ftsl-<prefix>-<pid>-<n>-<a|b>"
// whose process no longer exists: leftovers of an earlier run that crashed
// before Close.
func sweepLeftovers(prefix string) {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		parts := strings.Split(e.Name(), "-")
		if len(parts) != 5 || parts[0] != namePrefix || parts[1] != prefix {
			continue
		}
		pid, err := strconv.Atoi(parts[2])
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			deleteNetns(e.Name())
		}
	}
}

func exists(ns string) bool {
	_, err := os.Lstat(netnsDir + "/" + ns)
	return err == nil
}

func addNetns(ns string) error {
	return ip("netns", "add", ns)
}

// deleteNetns deletes a named namespace; it is not an error if it does not
// exist.
func deleteNetns(ns string) error {
	if !exists(ns) {
		return nil
	}
	err := ip("netns", "delete", ns)
	if err != nil && !exists(ns) {
		return nil // deleted concurrently
	}
	return err
}

// ip runs the ip command with args; the error includes the command line and
// its output.
func ip(args ...string) error {
	_, err := ipOutput(args...)
	return err
}

func ipOutput(args ...string) (string, error) {
	path := ipPath()
	if path == "" {
		return "", errors.New(`netns: iproute2 "ip" command not found in PATH`)
	}
	cmd := exec.Command(path, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("netns: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
