package core

import (
	"net"
	"syscall"
	"unsafe"
)

// rawWriter makes non-blocking writev calls on a socket. Its callback is bound once, so a write
// allocates nothing.
type rawWriter struct {
	rc    syscall.RawConn
	iov   [8]syscall.Iovec
	k     int
	n     uintptr
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func newRawWriter(c net.Conn) *rawWriter {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &rawWriter{rc: rc}
	w.fn = w.writev
	return w
}

func (w *rawWriter) writev(fd uintptr) bool {
	w.n, _, w.errno = syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[0])), uintptr(w.k))
	return true // one attempt only: never wait for the socket to drain
}

// tryWrite makes one non-blocking writev of bufs and drops from bufs what it wrote. It reports
// whether everything went; false with a nil error means the socket buffer is full and the rest
// must wait. Go's own Write would park the goroutine instead, which Send must not do.
func (w *rawWriter) tryWrite(bufs *net.Buffers) (bool, error) {
	w.k = 0
	for _, b := range *bufs {
		if len(b) > 0 && w.k < len(w.iov) {
			w.iov[w.k] = syscall.Iovec{Base: &b[0]}
			w.iov[w.k].SetLen(len(b))
			w.k++
		}
	}
	if w.k == 0 {
		*bufs = (*bufs)[:0]
		return true, nil
	}
	if err := w.rc.Write(w.fn); err != nil {
		return false, err
	}
	n := int(w.n)
	if w.errno != 0 {
		if w.errno != syscall.EAGAIN && w.errno != syscall.EINTR {
			return false, &net.OpError{Op: "write", Net: "tcp", Err: w.errno}
		}
		n = 0
	}
	w.iov = [8]syscall.Iovec{} // drop the pointers into the buffers
	consume(bufs, n)
	return len(*bufs) == 0, nil
}

// consume drops the first n bytes from bufs.
func consume(bufs *net.Buffers, n int) {
	for len(*bufs) > 0 {
		b := (*bufs)[0]
		if n < len(b) {
			(*bufs)[0] = b[n:]
			return
		}
		n -= len(b)
		*bufs = (*bufs)[1:]
	}
}
