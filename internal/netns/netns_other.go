//go:build !linux

package netns

import (
	"context"
	"errors"
	"net"
	"runtime"
)

var errUnsupported = errors.New("netns: network namespaces need Linux, not " + runtime.GOOS)

// Available reports whether network namespaces can be made here; never on
// this operating system.
func Available() (bool, string) { return false, errUnsupported.Error() }

// NewPair always fails on this operating system.
func NewPair(prefix string) (*Pair, error) { return nil, errUnsupported }

// ListenA always fails on this operating system.
func (p *Pair) ListenA(network, addr string) (net.Listener, error) { return nil, errUnsupported }

// ListenB always fails on this operating system.
func (p *Pair) ListenB(network, addr string) (net.Listener, error) { return nil, errUnsupported }

// DialA always fails on this operating system.
func (p *Pair) DialA(ctx context.Context, network, addr string) (net.Conn, error) {
	return nil, errUnsupported
}

// LinkDown always fails on this operating system.
func (p *Pair) LinkDown() error { return errUnsupported }

// LinkUp always fails on this operating system.
func (p *Pair) LinkUp() error { return errUnsupported }

// Close does nothing on this operating system.
func (p *Pair) Close() error { return nil }
