package faultnet

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections accepted on its own loopback address to a
// target address, and can break them on command or at random. Putting the
// faults in a separate hop means neither the client nor the server under
// test has to be modified, and both sides of a connection can be broken at
// the same instant, as a failing network would.
type Proxy struct {
	ln     net.Listener
	ctx    context.Context // cancelled by Close so pending dials give up
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	target  string
	refuse  bool
	closed  bool
	chaos   Chaos
	chaosOn bool
	rng     *rand.Rand
	links   map[*link]struct{}
	stats   ProxyStats
}

// Chaos describes random faults for connections accepted after SetChaos.
// Budgets are drawn per connection so a long test run explores cuts at many
// different offsets, including inside frames and handshakes.
type Chaos struct {
	// MinBytes and MaxBytes bound the number of bytes, over both directions
	// together, that a connection carries before it breaks.
	MinBytes, MaxBytes int64
	// StallRatio is the probability that a connection stalls instead of
	// being reset when its budget runs out.
	StallRatio float64
	// Seed makes the sequence of draws reproducible, so a failure found at
	// random can be replayed.
	Seed int64
}

// ProxyStats lets a test check that the faults it asked for really happened
// (a test that passes because no fault fired proves nothing).
type ProxyStats struct {
	// Accepted counts every connection accepted, refused ones included,
	// so it also tells how often a client tried to reconnect.
	Accepted int64
	// Killed counts connections reset by KillAll or chaos.
	Killed int64
	// Stalled counts connections stalled by StallAll or chaos.
	Stalled int64
	// Live is the number of forwarded connections still open, stalled
	// ones included.
	Live int
}

// link is one forwarded connection. All its mutable fields are guarded by
// Proxy.mu: a single lock keeps the budget, the stall flag and the proxy's
// bookkeeping consistent without any lock ordering to get wrong, and it is
// taken only once per chunk of up to 32 KiB.
type link struct {
	client net.Conn
	server net.Conn // nil while dialing

	budget      int64 // bytes left before the chaos fault; -1: none
	budgetStall bool  // the chaos fault is a stall rather than a reset
	fired       bool  // the chaos fault has been claimed by a pump
	stalled     bool
	dead        bool // both sockets are closed or being closed
	pumps       int  // pump goroutines still running
}

// bufSize is the forwarding buffer size. Reads may return up to this much at
// once, so the budget logic must be able to cut inside a single read.
const bufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// NewProxy listens on 127.0.0.1:0 and forwards every accepted connection to
// target. Listening on an ephemeral loopback port keeps parallel tests apart
// and keeps the traffic off real networks.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		target: target,
		links:  make(map[*link]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the proxy's listening address ("127.0.0.1:port"), what clients
// dial instead of the real server.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget changes where new connections are forwarded; existing ones are
// untouched, so a test can move a server (or point at a dead port) while
// old sessions are still alive.
func (p *Proxy) SetTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

// SetChaos makes each connection accepted from now on die after a random
// number of bytes, drawn uniformly from [c.MinBytes, c.MaxBytes] and counted
// over both directions together. The cut falls wherever the budget runs out,
// usually in the middle of a frame: exactly the bytes up to the budget are
// forwarded and delivered, then both sides are reset (or, with probability c.StallRatio,
// the connection stalls as with StallAll). A budget of 0 breaks the
// connection as soon as it is established. The zero Chaos turns chaos off.
//
// The byte count is exact for traffic in one direction; if both directions
// are carrying data when the budget runs out, a chunk already being written
// in the other direction may be cut short by the reset.
func (p *Proxy) SetChaos(c Chaos) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c == (Chaos{}) {
		p.chaosOn = false
		p.chaos = c
		p.rng = nil
		return
	}
	c.MinBytes = max(c.MinBytes, 0)
	c.MaxBytes = max(c.MaxBytes, c.MinBytes)
	p.chaos = c
	p.chaosOn = true
	p.rng = rand.New(rand.NewPCG(uint64(c.Seed), uint64(c.Seed)^0x9e3779b97f4a7c15))
}

// Refuse makes the proxy reset new connections at once (true) or forward
// them again (false), to simulate a server that is unreachable while the
// client keeps retrying.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// KillAll resets every live forwarded connection on both sides (SO_LINGER 0,
// so the peers see an RST, not an orderly close) and returns how many it
// killed. Stalled connections are killed too, which lets a test turn a
// silent failure into a loud one.
func (p *Proxy) KillAll() int {
	p.mu.Lock()
	var conns []net.Conn
	n := 0
	for l := range p.links {
		conns = p.killLocked(l, conns)
		n++
	}
	p.stats.Killed += int64(n)
	p.mu.Unlock()
	for _, c := range conns {
		abort(c)
	}
	return n
}

// StallAll makes every live forwarded connection stop carrying bytes in both
// directions without closing either socket: a silent failure, as when a
// cable is pulled, which only timeouts and keepalives can detect. Bytes read
// from a stalled connection are discarded, and if one side closes, the other
// is not told. Connections accepted later are not stalled. It returns how
// many connections it stalled (ones already stalled are not counted).
func (p *Proxy) StallAll() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for l := range p.links {
		if !l.stalled {
			l.stalled = true
			n++
		}
	}
	p.stats.Stalled += int64(n)
	return n
}

// Stats returns counters so a test can assert that its faults really fired.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Live = len(p.links)
	return s
}

// Close stops listening and resets every connection, then waits for all the
// proxy's goroutines to end, so a test that closes its proxy leaks nothing.
// Calling it again is harmless.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var conns []net.Conn
	for l := range p.links {
		conns = p.killLocked(l, conns)
	}
	p.mu.Unlock()

	err := p.ln.Close()
	p.cancel()
	for _, c := range conns {
		abort(c)
	}
	p.wg.Wait()
	return err
}

// killLocked marks l dead and appends its sockets to conns for the caller to
// close after releasing p.mu (closing under the lock would hold up every
// pump). p.mu must be held.
func (p *Proxy) killLocked(l *link, conns []net.Conn) []net.Conn {
	l.dead = true
	delete(p.links, l)
	conns = append(conns, l.client)
	if l.server != nil {
		conns = append(conns, l.server)
	}
	return conns
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	var backoff time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			// Transient failure such as running out of file
			// descriptors: back off rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		backoff = 0

		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			abort(c)
			return
		}
		p.stats.Accepted++
		if p.refuse {
			p.mu.Unlock()
			abort(c)
			continue
		}
		l := &link{client: c, budget: -1}
		if p.chaosOn {
			// Both draws are made for every connection so the
			// sequence depends only on the seed and the order of
			// accepts, not on the outcome of earlier draws.
			span := p.chaos.MaxBytes - p.chaos.MinBytes + 1
			l.budget = p.chaos.MinBytes + p.rng.Int64N(span)
			l.budgetStall = p.rng.Float64() < p.chaos.StallRatio
		}
		target := p.target
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l, target)
	}
}

// serve dials the target for l and then becomes l's client-to-server pump.
// Dialing here rather than in acceptLoop keeps one slow target from holding
// up every other connection.
func (p *Proxy) serve(l *link, target string) {
	defer p.wg.Done()
	var d net.Dialer
	server, err := d.DialContext(p.ctx, "tcp", target)

	p.mu.Lock()
	if err != nil || l.dead {
		// The target is unreachable (the client sees a reset, as if
		// the server itself had refused) or the link was killed or the
		// proxy closed while dialing.
		var conns []net.Conn
		if !l.dead {
			conns = p.killLocked(l, conns)
		} else if server != nil {
			conns = append(conns, server)
		}
		p.mu.Unlock()
		for _, c := range conns {
			abort(c)
		}
		return
	}
	l.server = server
	l.pumps = 2
	fireNow := l.budget == 0 && !l.fired
	if fireNow {
		l.fired = true
	}
	p.wg.Add(1)
	p.mu.Unlock()

	if fireNow {
		p.fire(l)
	}
	go func() {
		defer p.wg.Done()
		p.pump(l, server, l.client)
	}()
	p.pump(l, l.client, server)
}

// pump copies src to dst until either fails, applying the chaos budget and
// the stall flag to every chunk.
func (p *Proxy) pump(l *link, src, dst net.Conn) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			k, fire := n, false
			p.mu.Lock()
			switch {
			case l.dead || l.stalled || l.fired:
				k = 0 // discarded: the link carries nothing any more
			case l.budget >= 0 && int64(n) >= l.budget:
				// Forward exactly up to the budget, then break:
				// this is what puts the cut mid-frame.
				k = int(l.budget)
				l.budget = 0
				l.fired, fire = true, true
			case l.budget >= 0:
				l.budget -= int64(n)
			}
			p.mu.Unlock()

			if k > 0 {
				if _, werr := dst.Write(buf[:k]); werr != nil {
					p.pumpDone(l, src, dst)
					return
				}
			}
			if fire {
				p.fire(l)
			}
		}
		if rerr != nil {
			p.pumpDone(l, src, dst)
			return
		}
	}
}

// fire applies l's chaos fault once its budget has run out.
func (p *Proxy) fire(l *link) {
	p.mu.Lock()
	if l.dead {
		p.mu.Unlock()
		return
	}
	if l.budgetStall {
		if !l.stalled {
			l.stalled = true
			p.stats.Stalled++
		}
		p.mu.Unlock()
		return
	}
	client, server := l.client, l.server
	p.mu.Unlock()

	// Let the bytes forwarded up to the budget reach the peers before the
	// reset throws away whatever is still queued. KillAll or Close may
	// abort the link meanwhile, which also ends the wait.
	drain(server, p.ctx.Done())
	drain(client, p.ctx.Done())

	p.mu.Lock()
	if l.dead {
		p.mu.Unlock()
		return
	}
	conns := p.killLocked(l, nil)
	p.stats.Killed++
	p.mu.Unlock()
	for _, c := range conns {
		abort(c)
	}
}

// pumpDone is called when a pump's read or write failed. Normally the
// failure is passed on by closing both sides, so each peer learns the
// connection is over. On a stalled link only the failed side is closed: a
// pulled cable does not tell the far end anything.
func (p *Proxy) pumpDone(l *link, src, dst net.Conn) {
	p.mu.Lock()
	l.pumps--
	if l.dead {
		p.mu.Unlock()
		return
	}
	if l.stalled && l.pumps > 0 {
		p.mu.Unlock()
		_ = src.Close()
		return
	}
	l.dead = true
	delete(p.links, l)
	p.mu.Unlock()
	_ = src.Close()
	_ = dst.Close()
}
