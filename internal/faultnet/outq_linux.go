package faultnet

import (
	"net"
	"syscall"
	"unsafe"
)

// outq returns how many bytes written to c the peer has not yet
// acknowledged (SIOCOUTQ: unsent plus unacknowledged), and false when that
// cannot be known, for instance because c is closed or not a socket.
func outq(c net.Conn) (int, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var n int32
	var errno syscall.Errno
	err = rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n)))
	})
	if err != nil || errno != 0 {
		return 0, false
	}
	return int(n), true
}
