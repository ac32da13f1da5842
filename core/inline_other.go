//go:build !linux

package core

import "net"

// On other systems every write goes through the writer goroutine.
type rawWriter struct{}

func newRawWriter(net.Conn) *rawWriter { return nil }

func (*rawWriter) tryWrite(*net.Buffers) (bool, error) {
	panic("unreachable: no inline writes on this platform")
}
