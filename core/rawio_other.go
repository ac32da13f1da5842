//go:build !linux

package core

import "net"

// On other systems every write goes through the writer goroutine, and reads hold their buffer.
type rawWriter struct{}

func newRawWriter(net.Conn) *rawWriter { return nil }

func (*rawWriter) tryWrite(*net.Buffers) (bool, error) {
	panic("unreachable: no inline writes on this platform")
}

type rawReader struct{}

func newRawReader(net.Conn) *rawReader { return nil }

func (*rawReader) read(*[]byte, int) (int, error) {
	panic("unreachable: no raw reads on this platform")
}
