package faultnet

import (
	"context"
	"net"
	"sync"
)

// Dialer plugs fault injection into code that accepts a dial function, and
// remembers the connections it made so a test can break the one currently in
// use without reaching into the code under test.
type Dialer struct {
	plan func() Plan
	d    net.Dialer

	mu    sync.Mutex
	last  *Conn
	dials int
}

// NewDialer returns a Dialer that wraps each new connection with
// Wrap(conn, plan()). plan is called once per dial so a test can give each
// reconnection a different fate; a nil plan means no faults.
func NewDialer(plan func() Plan) *Dialer {
	return &Dialer{plan: plan}
}

// DialContext has the signature of net.Dialer.DialContext so it can be
// passed wherever the code under test takes a dialer. The returned net.Conn
// is a *Conn.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := d.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	var p Plan
	if d.plan != nil {
		p = d.plan()
	}
	c := Wrap(nc, p)
	d.mu.Lock()
	d.last = c
	d.dials++
	d.mu.Unlock()
	return c, nil
}

// LastConn returns the most recent connection dialed, nil before the first
// successful dial; it is the handle a test uses to break "the current" conn.
func (d *Dialer) LastConn() *Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// Dials returns how many connections were dialed successfully, which is how
// a test observes that the code under test reconnected.
func (d *Dialer) Dials() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials
}
