package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"sync"

	"github.com/ftsl-go/ftsl/oneway"
)

// errChecksum is why the receiver refuses a file whose bytes do not hash to what its sender
// announced.
var errChecksum = errors.New("ftsl: filetransfer sha256 mismatch")

// errSuperseded is why a transfer stops when another sender offered the same file (the same
// sender run again, usually, while its old session still waited to be resumed).
var errSuperseded = errors.New("ftsl: filetransfer superseded by another sender of the same file")

// receiver writes the files its senders offer into one directory.
type receiver struct {
	root  *os.Root // the directory: no name, link or rename can lead out of it
	fsync bool     // flush each file to disk before it is renamed into place
	out   *lineWriter
	log   *lineWriter

	mu     sync.Mutex
	active map[string]*transfer // by partial name: at most one transfer writes each partial file
}

// Bounds on the files open at once: a sender cannot make the receiver hold more.
const (
	maxTransfersPerSession = 64
	maxTransfers           = 1024
)

// errBusy is why an OFFER is refused when the receiver has as many files open as it may.
var errBusy = errors.New("ftsl: filetransfer receiver busy")

// lineWriter writes whole lines to w for several goroutines.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
}

// transfer is one file arriving, in its partial file. Its owner is the session whose sender
// offered it last; a new offer of the same file from another session takes it over (see offer).
type transfer struct {
	name    string
	partial string
	size    uint64

	// mu is held while the owner writes. A goroutine holding it may take receiver.mu, never the
	// other way round (receiver.mu guards only the map, for a moment).
	mu     sync.Mutex
	f      *os.File  // nil once gone
	h      hash.Hash // SHA-256 of the bytes [0, off)
	off    uint64    // bytes in the partial file
	gone   bool      // finished, released, or taken over: its owner must not touch the file
	failed error     // the transfer failed for good: every later message of it is refused so
	told   bool      // the sender was sent an ERROR for it
}

// peer is the receiving state of one session: its transfers, by the sender's numbers.
type peer struct {
	s     *oneway.Session
	xfers map[uint32]*transfer
}

// serve accepts sessions on ln until ctx ends, then closes ln and waits for every session's
// handler to return.
func (r *receiver) serve(ctx context.Context, ln *oneway.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		s, err := ln.Accept(ctx)
		if err != nil {
			ln.Close()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Go(func() { r.serveSession(ctx, s) })
	}
}

// serveSession handles one sender's messages, one at a time, in order, until its session ends.
// The partial files of transfers it leaves unfinished stay, for the sender to resume later.
func (r *receiver) serveSession(ctx context.Context, s *oneway.Session) {
	p := &peer{s: s, xfers: make(map[uint32]*transfer)}
	defer func() {
		for _, t := range p.xfers {
			r.release(t)
		}
	}()
	for {
		// Not ctx: when it ends, closing the listener ends the session, telling the sender why.
		d, err := s.Recv(context.Background())
		if err != nil {
			return
		}
		if err := r.handle(ctx, p, d); err != nil {
			// The delivery failed for good; the sender's ticket carries why (at AckProcessed),
			// and an ERROR message tells a sender that asked for no acknowledgement.
			_ = d.Refuse(err)
		} else {
			_ = d.Confirm()
		}
	}
}

// handle processes one message; an error refuses it.
func (r *receiver) handle(ctx context.Context, p *peer, d *oneway.Delivery) error {
	if len(d.Data) == 0 {
		return fmt.Errorf("%w: empty message", errProtocol)
	}
	switch d.Data[0] {
	case msgChunk:
		xfer, off, data, err := parseChunk(d.Data)
		if err != nil {
			return err
		}
		t := p.xfers[xfer]
		if t == nil {
			return fmt.Errorf("%w: CHUNK for transfer %d, which was never offered", errProtocol, xfer)
		}
		return r.tell(ctx, p, xfer, t, t.write(off, data))
	case msgOffer:
		o, err := parseOffer(d.Data)
		if err != nil {
			return err
		}
		if p.xfers[o.xfer] != nil {
			return r.tell(ctx, p, o.xfer, nil, fmt.Errorf("%w: transfer %d offered twice", errProtocol, o.xfer))
		}
		if len(p.xfers) >= maxTransfersPerSession {
			return r.tell(ctx, p, o.xfer, nil, fmt.Errorf("%w: %d files at once from one sender is the limit", errBusy, maxTransfersPerSession))
		}
		t, off, err := r.offer(o)
		if err != nil {
			r.log.printf("refused %q from %v: %v", o.name, p.s.RemoteAddr(), err)
			return r.tell(ctx, p, o.xfer, nil, err)
		}
		p.xfers[o.xfer] = t
		_, err = p.s.Send(ctx, encodeOffset(o.xfer, off), oneway.AckNone)
		return err
	case msgDone:
		xfer, sum, err := parseDone(d.Data)
		if err != nil {
			return err
		}
		t := p.xfers[xfer]
		if t == nil {
			return fmt.Errorf("%w: DONE for transfer %d, which was never offered", errProtocol, xfer)
		}
		err = r.finish(t, sum)
		if err == nil {
			delete(p.xfers, xfer)
			r.forget(t)
			r.out.printf("received %s %d sha256=%x", t.name, t.size, sum)
			return nil
		}
		if errors.Is(err, errChecksum) {
			r.log.printf("refused %q from %v: %v", t.name, p.s.RemoteAddr(), err)
			delete(p.xfers, xfer)
			r.forget(t)
		}
		return r.tell(ctx, p, xfer, t, err)
	case msgCancel:
		xfer, err := parseCancel(d.Data)
		if err != nil {
			return err
		}
		if t := p.xfers[xfer]; t != nil {
			delete(p.xfers, xfer)
			r.release(t)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown message type %#x", errProtocol, d.Data[0])
}

// tell sends the sender an ERROR for transfer xfer (t, if it exists) if err is not nil, once per
// transfer, and returns err: bulk chunks ask for no acknowledgement, so refusing one alone would
// tell the sender nothing.
func (r *receiver) tell(ctx context.Context, p *peer, xfer uint32, t *transfer, err error) error {
	if err == nil {
		return nil
	}
	if t != nil {
		t.mu.Lock()
		told := t.told
		t.told = true
		t.mu.Unlock()
		if told {
			return err
		}
	}
	_, _ = p.s.Send(ctx, encodeError(xfer, err.Error()), oneway.AckNone)
	return err
}

// offer opens the partial file of the offered file, taking it over from a transfer that still
// holds it (a sender that died and came back has a new session; its old one may still wait to be
// resumed), and returns the transfer with the offset the sender resumes from.
func (r *receiver) offer(o offer) (*transfer, uint64, error) {
	if err := validateName(o.name); err != nil {
		return nil, 0, err
	}
	t := &transfer{name: o.name, partial: partialName(o.name, o.size, o.fp), size: o.size}
	t.mu.Lock()
	defer t.mu.Unlock()
	r.mu.Lock()
	old := r.active[t.partial]
	if old == nil && len(r.active) >= maxTransfers {
		r.mu.Unlock()
		return nil, 0, fmt.Errorf("%w: %d files are arriving; try again later", errBusy, maxTransfers)
	}
	r.active[t.partial] = t
	r.mu.Unlock()
	if old != nil {
		old.mu.Lock()
		if !old.gone && old.failed == nil {
			// Its bytes and their hash are sound: carry on from them without reading them back.
			t.f, t.h, t.off = old.f, old.h, old.off
			old.f = nil
		}
		old.gone = true
		old.failed = errSuperseded
		if old.f != nil {
			old.f.Close()
			old.f = nil
		}
		old.mu.Unlock()
	}
	if t.f == nil {
		if err := t.open(r.root); err != nil {
			t.gone = true
			r.forget(t)
			return nil, 0, err
		}
	}
	return t, t.off, nil
}

// open opens t's partial file, creating it if there is none, and hashes the bytes already in it.
// Called with t.mu held.
func (t *transfer) open(root *os.Root) error {
	f, err := root.OpenFile(t.partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open partial file for %q: %w", t.name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open partial file for %q: %w", t.name, err)
	}
	have := uint64(fi.Size())
	if have > t.size {
		// Not a prefix of this file, whatever it is: start again.
		if err := f.Truncate(0); err != nil {
			f.Close()
			return fmt.Errorf("truncate partial file for %q: %w", t.name, err)
		}
		have = 0
	}
	h := sha256.New()
	if have > 0 {
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, int64(have))); err != nil {
			f.Close()
			return fmt.Errorf("read partial file for %q: %w", t.name, err)
		}
	}
	t.f, t.h, t.off = f, h, have
	return nil
}

// write writes a chunk at off, which must be where the file ends: the session delivers every
// chunk once and in order, so anything else is a sender's mistake.
func (t *transfer) write(off uint64, data []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.failed != nil:
		return t.failed
	case t.gone:
		return fmt.Errorf("%w: transfer of %q already ended", errProtocol, t.name)
	case off != t.off:
		t.failed = fmt.Errorf("%w: chunk of %q at offset %d, expected %d", errProtocol, t.name, off, t.off)
		return t.failed
	case off+uint64(len(data)) > t.size:
		t.failed = fmt.Errorf("%w: chunk of %q ends at %d, past its size %d", errProtocol, t.name, off+uint64(len(data)), t.size)
		return t.failed
	}
	// Straight from the session's receive buffer into the file: the only copy the receiver makes.
	if _, err := t.f.WriteAt(data, int64(off)); err != nil {
		t.failed = fmt.Errorf("write %q: %w", t.name, err)
		return t.failed
	}
	t.h.Write(data)
	t.off += uint64(len(data))
	return nil
}

// finish checks that t is whole and hashes to sum, then moves it to its name (creating the
// directories on the way). A file that does not hash to sum is deleted: its bytes are wrong
// somewhere, and a resume would only keep them.
func (r *receiver) finish(t *transfer, sum [sha256.Size]byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.failed != nil:
		return t.failed
	case t.gone:
		return fmt.Errorf("%w: transfer of %q already ended", errProtocol, t.name)
	case t.off != t.size:
		return fmt.Errorf("%w: DONE for %q at %d bytes of %d", errProtocol, t.name, t.off, t.size)
	}
	t.gone = true
	f := t.f
	t.f = nil
	if got := t.h.Sum(nil); !bytes.Equal(got, sum[:]) {
		f.Close()
		_ = r.root.Remove(t.partial)
		t.failed = fmt.Errorf("%w: %q hashes to %s at the receiver, the sender announced %s; the copy was discarded",
			errChecksum, t.name, hex.EncodeToString(got), hex.EncodeToString(sum[:]))
		return t.failed
	}
	var err error
	if r.fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if dir := path.Dir(t.name); err == nil && dir != "." {
		err = r.root.MkdirAll(dir, 0o755)
	}
	if err == nil {
		err = r.root.Rename(t.partial, t.name)
	}
	if err != nil {
		// The bytes are sound and stay in the partial file: a later attempt resumes at the end.
		t.failed = fmt.Errorf("store %q: %w", t.name, err)
		return t.failed
	}
	if r.fsync {
		if d, err := r.root.Open(path.Dir(t.name)); err == nil {
			_ = d.Sync()
			d.Close()
		}
	}
	return nil
}

// release lets go of t's file, if t still has it, and forgets t. The partial file stays.
func (r *receiver) release(t *transfer) {
	t.mu.Lock()
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
	t.gone = true
	t.mu.Unlock()
	r.forget(t)
}

// forget removes t from the active transfers, unless another has taken its place.
func (r *receiver) forget(t *transfer) {
	r.mu.Lock()
	if r.active[t.partial] == t {
		delete(r.active, t.partial)
	}
	r.mu.Unlock()
}
