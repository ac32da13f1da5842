//go:build !linux

package faultnet

import "net"

// outq cannot see a socket's send queue on this platform, so a cut does not
// wait for the bytes before it to be delivered (best effort).
func outq(net.Conn) (int, bool) { return 0, false }
