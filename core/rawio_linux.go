package core

import (
	"io"
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

// rawConnOf is c's file descriptor access, or nil unless c is a plain TCP connection.
func rawConnOf(c net.Conn) syscall.RawConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

func newRawWriter(c net.Conn) *rawWriter {
	rc := rawConnOf(c)
	if rc == nil {
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

// rawReader reads a socket without holding a buffer while it waits: the buffer is taken from a
// pool when bytes arrive and given back when the socket runs dry with nothing pending in it, so
// an idle connection costs no read buffer. (Go's own Read parks the goroutine with the buffer in
// hand.) Its callback is bound once, so a read allocates nothing.
type rawReader struct {
	rc    syscall.RawConn
	buf   *[]byte
	w     int
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func newRawReader(c net.Conn) *rawReader {
	rc := rawConnOf(c)
	if rc == nil {
		return nil
	}
	r := &rawReader{rc: rc}
	r.fn = r.readOnce
	return r
}

func (r *rawReader) readOnce(fd uintptr) bool {
	if *r.buf == nil {
		*r.buf = getReadBuf()
	}
	for {
		n, err := syscall.Read(int(fd), (*r.buf)[r.w:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			if r.w == 0 && len(*r.buf) == minReadBuf {
				// A buffer grown by heavy traffic is kept: the reader gives it back when the
				// peer falls idle (PING). Dropping it here would grow a new one on every burst.
				putReadBuf(*r.buf)
				*r.buf = nil
			}
			return false // wait until the socket is readable, then try again
		}
		r.n, r.errno = max(n, 0), 0
		if errno, ok := err.(syscall.Errno); ok {
			r.errno = errno
		}
		return true
	}
}

// read reads into (*buf)[w:], taking a buffer from the pool if *buf is nil, and may leave *buf nil
// again (if w is 0) while it waits. It returns io.EOF when the peer closed the connection.
func (r *rawReader) read(buf *[]byte, w int) (int, error) {
	r.buf, r.w = buf, w
	err := r.rc.Read(r.fn)
	r.buf = nil
	if err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: r.errno}
	}
	if r.n == 0 {
		return 0, io.EOF
	}
	return r.n, nil
}
