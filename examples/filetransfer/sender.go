package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/oneway"
)

// sendConfig is what one run of send does.
type sendConfig struct {
	// To is what the session dials: a host:port, or, with Resolver, a name.
	To string
	// Resolver, if set, is asked where To is before every connection attempt, the first one
	// included (core.Config.Resolver). Naming flags (-naming URL -name NAME) will set it and To.
	Resolver core.Resolver
	// ConnectTimeout bounds the first connection: how long the session keeps trying to reach
	// the receiver. Default 10 s.
	ConnectTimeout time.Duration
	// Paths are the files and directories to send.
	Paths []string
	// As names the file on the receiver's side, when Paths is one file.
	As string
	// Parallel is how many files are under way at once. Default 4.
	Parallel int
	// Chunk is the data carried by each CHUNK message. Default 512 KiB.
	Chunk int
	// Rate caps the bytes sent per second, all files together; 0: no cap.
	Rate int64
	// Session configures the session. Its zero value is the defaults of sendSession.
	Session oneway.Config
	// Progress is how progress is shown; Out gets the report lines.
	Progress progressMode
	Out      io.Writer
	// Stats prints a line of counters at the end.
	Stats bool
}

// job is one file to send.
type job struct {
	path string // where it is here
	name string // what the receiver calls it: a slash-separated path inside its directory
	size int64
}

// Default sizes. A chunk of 512 KiB is 8 frames of the session, big enough to cost little per
// byte and small enough that a receiver's 4 MiB window holds several.
const (
	defaultChunk    = 512 << 10
	defaultParallel = 4
	// maxChunk keeps a CHUNK within the receiver's default MaxMessageSize (1 MiB).
	maxChunk = core.DefaultMaxMessageSize - chunkHdrLen
	// sessionBuffer is the sender's SendBufferBytes: the bytes in flight, unacknowledged.
	sessionBuffer = 8 << 20
)

// errUsage marks a mistake in what the user asked for: the command exits 2.
var errUsage = errors.New("ftsl: filetransfer usage")

// listJobs turns the paths into files to send: a file is sent under its base name (or as), a
// directory as its base name followed by the path of each regular file under it (links to files
// included; links to directories are not followed). Every name is checked, and must be unique.
func listJobs(paths []string, as string) ([]job, error) {
	if as != "" && len(paths) != 1 {
		return nil, fmt.Errorf("%w: -as names one file, and %d paths were given", errUsage, len(paths))
	}
	var jobs []job
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
		switch {
		case fi.Mode().IsRegular():
			name := filepath.Base(p)
			if as != "" {
				name = as
			}
			jobs = append(jobs, job{path: p, name: name, size: fi.Size()})
		case fi.IsDir():
			if as != "" {
				return nil, fmt.Errorf("%w: -as names a file, and %s is a directory", errUsage, p)
			}
			base := ""
			if abs, err := filepath.Abs(p); err == nil && filepath.Dir(abs) != abs {
				base = filepath.Base(abs)
			}
			err := filepath.WalkDir(p, func(fp string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if d.IsDir() {
					return nil
				}
				fi, err := os.Stat(fp) // follows a link to a file; a link to a directory is skipped
				if err != nil || !fi.Mode().IsRegular() {
					return nil
				}
				rel, err := filepath.Rel(p, fp)
				if err != nil {
					return err
				}
				name := filepath.ToSlash(filepath.Join(base, rel))
				jobs = append(jobs, job{path: fp, name: name, size: fi.Size()})
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("%w: %w", errUsage, err)
			}
		default:
			return nil, fmt.Errorf("%w: %s is not a regular file or a directory", errUsage, p)
		}
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("%w: nothing to send: %s holds no regular file", errUsage, strings.Join(paths, ", "))
	}
	seen := make(map[string]string, len(jobs))
	for _, j := range jobs {
		if err := validateName(j.name); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", errUsage, j.path, err)
		}
		if other, ok := seen[j.name]; ok {
			return nil, fmt.Errorf("%w: %s and %s would both be %q at the receiver", errUsage, other, j.path, j.name)
		}
		seen[j.name] = j.path
	}
	return jobs, nil
}

// sender runs the transfers of one send over one session.
type sender struct {
	cfg  sendConfig
	s    *oneway.Session
	bufs chan []byte // free chunk buffers; see getBuf
	made atomic.Int32
	max  int32
	meter

	// gone is closed once the session ended and every message it received was handed over.
	gone chan struct{}

	mu      sync.Mutex
	replies map[uint32]chan reply // by transfer number: OFFSET and ERROR from the receiver
	nextX   uint32

	pace pacer

	chunkBytes atomic.Uint64 // file bytes sent in CHUNKs
	resumed    atomic.Uint64 // file bytes the receiver already had
}

// reply is the receiver's word on a transfer: an offset to start from, or why it failed.
type reply struct {
	off uint64
	err error
}

// sessionConfig is the session's configuration for a sender: what it asks for, with room for
// chunks in flight.
func sessionConfig(c oneway.Config) oneway.Config {
	if c.Core.SendBufferBytes == 0 {
		c.Core.SendBufferBytes = sessionBuffer
	}
	return c
}

// send sends every file of cfg, at most cfg.Parallel at once, over one session. It returns nil
// once the receiver confirmed every file's SHA-256.
func send(ctx context.Context, cfg sendConfig) error {
	if cfg.Parallel == 0 {
		cfg.Parallel = defaultParallel
	}
	if cfg.Chunk == 0 {
		cfg.Chunk = defaultChunk
	}
	switch {
	case cfg.Parallel < 1 || cfg.Parallel > 64:
		return fmt.Errorf("%w: -parallel %d outside [1, 64]", errUsage, cfg.Parallel)
	case cfg.Chunk < 1<<10 || cfg.Chunk > maxChunk:
		return fmt.Errorf("%w: -chunk %d outside [1024, %d]", errUsage, cfg.Chunk, maxChunk)
	case cfg.Rate < 0:
		return fmt.Errorf("%w: -rate %d is negative", errUsage, cfg.Rate)
	}
	jobs, err := listJobs(cfg.Paths, cfg.As)
	if err != nil {
		return err
	}
	occ := sessionConfig(cfg.Session)
	occ.Core.Resolver = cfg.Resolver
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	s, err := oneway.Dial(dctx, cfg.To, occ)
	cancel()
	if err != nil {
		return fmt.Errorf("connect to %s: %w", cfg.To, err)
	}
	defer s.Abort()

	bufferBytes := occ.Core.SendBufferBytes
	sd := &sender{
		cfg:     cfg,
		s:       s,
		replies: make(map[uint32]chan reply),
		gone:    make(chan struct{}),
		pace:    pacer{rate: cfg.Rate},
	}
	// Chunks in the sent buffer, one more for each file being read, and one for the writer.
	sd.max = int32(bufferBytes/cfg.Chunk + cfg.Parallel + 1)
	sd.bufs = make(chan []byte, sd.max)
	var total int64
	for _, j := range jobs {
		total += j.size
	}
	sd.meter.start(cfg.Progress, cfg.Out, total, len(jobs))
	defer sd.meter.stop()

	go func() {
		defer close(sd.gone)
		sd.receive()
	}()

	work := make(chan job)
	errs := make([]error, 0)
	var errMu sync.Mutex
	var wg sync.WaitGroup
	for range min(cfg.Parallel, len(jobs)) {
		wg.Go(func() {
			for j := range work {
				if err := sd.sendFile(ctx, j); err != nil {
					errMu.Lock()
					errs = append(errs, fmt.Errorf("send %s: %w", j.name, err))
					errMu.Unlock()
				}
			}
		})
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()

	if ctx.Err() != nil {
		s.Abort() // interrupted: the receiver keeps the partial files for the next run
	} else {
		// Every file is confirmed or failed by now: the close only says goodbye, and its
		// failure changes nothing the receiver has.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.Close(cctx)
		cancel()
	}
	<-sd.gone
	sd.meter.stop()
	if cfg.Stats {
		st := s.Stats()
		fmt.Fprintf(cfg.Out, "stats: files=%d bytes=%d resumed=%d sent=%d reconnects=%d resent_frames=%d\n",
			len(jobs), total, sd.resumed.Load(), sd.chunkBytes.Load(), st.Reconnects, st.FramesResent)
	}
	if len(errs) > 0 {
		if len(errs) > 1 {
			return fmt.Errorf("%w (and %d more files failed)", errs[0], len(errs)-1)
		}
		return errs[0]
	}
	return ctx.Err()
}

// receive takes the receiver's messages (OFFSET, ERROR) and hands each to its transfer, until
// the session ends.
func (sd *sender) receive() {
	for {
		d, err := sd.s.Recv(context.Background())
		if err != nil {
			return
		}
		var x uint32
		var rp reply
		switch {
		case len(d.Data) > 0 && d.Data[0] == msgOffset:
			x, rp.off, err = parseOffset(d.Data)
		case len(d.Data) > 0 && d.Data[0] == msgError:
			var reason string
			x, reason, err = parseError(d.Data)
			rp.err = &refusedError{reason}
		default:
			err = fmt.Errorf("%w: unknown message from the receiver", errProtocol)
		}
		if err != nil {
			_ = d.Refuse(err)
			continue
		}
		sd.mu.Lock()
		ch := sd.replies[x]
		sd.mu.Unlock()
		if ch != nil {
			select {
			case ch <- rp:
			default: // a receiver saying more than it should; the transfer has heard enough
			}
		}
		_ = d.Confirm()
	}
}

// endErr is why the session ended, said for a transfer it cut short.
func (sd *sender) endErr() error {
	if err := sd.s.Err(); err != nil {
		return sessionErr(err)
	}
	return sessionErr(oneway.ErrSessionClosed)
}

// refusedError is the receiver's reason for failing a transfer.
type refusedError struct{ reason string }

func (e *refusedError) Error() string { return "the receiver refused it: " + e.reason }

// getBuf returns a free chunk buffer, making one while fewer than max exist: the buffers go into
// the session by reference (SendShared), so the bytes read from the file are copied once more
// only, by the kernel, onto the socket.
func (sd *sender) getBuf(ctx context.Context) ([]byte, error) {
	select {
	case b := <-sd.bufs:
		return b, nil
	default:
	}
	if sd.made.Add(1) <= sd.max {
		return make([]byte, sd.cfg.Chunk), nil
	}
	sd.made.Add(-1)
	select {
	case b := <-sd.bufs:
		return b, nil
	case <-sd.gone: // buffers the ended session held are not coming back
		return nil, sd.endErr()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// putBuf gives back a buffer the session no longer refers to. Never blocks: at most max exist.
func (sd *sender) putBuf(b []byte) {
	select {
	case sd.bufs <- b[:cap(b)]:
	default:
	}
}

// sendFile offers one file, sends what the receiver lacks, and waits until the receiver wrote it
// all and confirmed its SHA-256.
func (sd *sender) sendFile(ctx context.Context, j job) error {
	began := time.Now()
	u, err := sd.open(j)
	if err != nil {
		return err
	}
	defer u.close()
	off, err := u.offer(ctx)
	if err != nil {
		return err
	}
	if off > 0 {
		sd.meter.printf("resuming %s at %d", j.name, off)
		sd.resumed.Add(off)
		sd.meter.resumed(int64(off))
	}
	// The hash covers the whole file: what the receiver has is read again here, not sent.
	if _, err := io.Copy(u.h, io.NewSectionReader(u.f, 0, int64(off))); err != nil {
		sd.cancel(u.x)
		return fmt.Errorf("read: %w", err)
	}
	last, err := u.sendChunks(ctx, off)
	if err != nil {
		sd.cancel(u.x)
		return err
	}
	sum := [sha256.Size]byte(u.h.Sum(nil))
	done, err := sd.s.Send(ctx, encodeDone(u.x, sum), oneway.AckProcessed)
	if err != nil {
		return sessionErr(err)
	}
	// Processed, the last chunk says the receiver wrote everything; DONE, that the hash matched
	// and the file has its name.
	for _, tk := range []*oneway.Ticket{last, done} {
		if err := u.await(ctx, tk); err != nil {
			return err
		}
	}
	secs := time.Since(began).Seconds()
	moved := float64(u.size - off)
	sd.meter.printf("sent %s %d sha256=%x in %.3f s (%.2f MB/s)", j.name, u.size, sum, secs, moved/secs/1e6)
	sd.meter.fileDone()
	return nil
}

// upload is one file on its way, with its transfer number and the receiver's replies about it.
type upload struct {
	sd      *sender
	name    string
	f       *os.File
	size    uint64
	x       uint32
	replies chan reply
	h       hash.Hash // of the bytes before the next chunk
}

// open opens j's file and gives it a transfer number.
func (sd *sender) open(j job) (*upload, error) {
	f, err := os.Open(j.path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi.Size() != j.size {
		sd.meter.addTotal(fi.Size() - j.size)
	}
	u := &upload{sd: sd, name: j.name, f: f, size: uint64(fi.Size()), replies: make(chan reply, 2), h: sha256.New()}
	sd.mu.Lock()
	sd.nextX++
	u.x = sd.nextX
	sd.replies[u.x] = u.replies
	sd.mu.Unlock()
	return u, nil
}

func (u *upload) close() {
	u.sd.mu.Lock()
	delete(u.sd.replies, u.x)
	u.sd.mu.Unlock()
	u.f.Close()
}

// offer offers the file and returns where the receiver wants it from.
func (u *upload) offer(ctx context.Context) (uint64, error) {
	fp, err := fingerprint(u.f, int64(u.size))
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	// The offer asks to be processed: a refusal (a bad name, say) fails its ticket too.
	o := offer{xfer: u.x, size: u.size, fp: fp, name: u.name}
	tk, err := u.sd.s.Send(ctx, o.encode(), oneway.AckProcessed)
	if err != nil {
		return 0, sessionErr(err)
	}
	offered := tk.Done()
	for {
		select {
		case rp := <-u.replies:
			if rp.err != nil {
				return 0, rp.err
			}
			if rp.off > u.size {
				return 0, fmt.Errorf("%w: the receiver has %d bytes of a %d-byte file", errProtocol, rp.off, u.size)
			}
			return rp.off, nil
		case <-offered:
			if err := tk.Err(); err != nil {
				return 0, ticketErr(err)
			}
			offered = nil // processed: the OFFSET is on its way
		case <-u.sd.gone:
			return 0, u.sd.endErr()
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// sendChunks sends the file from off to its end, and returns the last chunk's ticket (nil if
// there was nothing to send).
func (u *upload) sendChunks(ctx context.Context, off uint64) (*oneway.Ticket, error) {
	sd := u.sd
	var last *oneway.Ticket
	var hdr [chunkHdrLen]byte
	var timer *time.Timer // the pacer's, made once it is needed
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for pos := off; pos < u.size; {
		select {
		case rp := <-u.replies: // the receiver gave up: no use sending more
			return nil, rp.unexpected()
		default:
		}
		n := min(uint64(sd.cfg.Chunk), u.size-pos)
		if err := sd.pace.wait(ctx, &timer, int64(n)); err != nil {
			return nil, err
		}
		buf, err := sd.getBuf(ctx)
		if err != nil {
			return nil, err
		}
		buf = buf[:n]
		if _, err := u.f.ReadAt(buf, int64(pos)); err != nil {
			sd.putBuf(buf)
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("the file shrank while being sent (to less than %d bytes)", pos+n)
			}
			return nil, fmt.Errorf("read: %w", err)
		}
		u.h.Write(buf)
		putChunkHeader(hdr[:], u.x, pos)
		level := oneway.AckNone
		if pos+n == u.size {
			// The last chunk asks to be processed: its ticket ends once the receiver wrote
			// everything (acknowledgements are cumulative).
			level = oneway.AckProcessed
		}
		tk, err := sd.s.SendShared(ctx, hdr[:], buf, level)
		if err != nil {
			sd.putBuf(buf)
			return nil, sessionErr(err)
		}
		tk.OnEnd(func(tk *oneway.Ticket) {
			// A ticket that ended well says the session let go of buf. One that failed says
			// the session ended; nothing tells when it lets go, so buf stays with it.
			if tk.Err() == nil {
				sd.meter.add(int64(n))
				sd.putBuf(buf)
			}
		})
		sd.chunkBytes.Add(n)
		pos += n
		last = tk
	}
	return last, nil
}

// await waits for tk (if not nil) to end, and says why it failed, if it did.
func (u *upload) await(ctx context.Context, tk *oneway.Ticket) error {
	if tk == nil {
		return nil
	}
	select {
	case <-tk.Done():
		return ticketErr(tk.Err())
	case rp := <-u.replies:
		return rp.unexpected()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unexpected is the error of a reply that comes after the OFFSET: an ERROR, normally.
func (rp reply) unexpected() error {
	if rp.err != nil {
		return rp.err
	}
	return fmt.Errorf("%w: a second OFFSET", errProtocol)
}

// cancel tells the receiver this sender gives up on transfer x, so it lets go of the file. The
// partial file stays for a later run to resume.
func (sd *sender) cancel(x uint32) {
	_, _ = sd.s.TrySend(encodeCancel(x), oneway.AckNone)
}

// ticketErr says what a failed ticket means for a transfer (nil for a ticket that did not fail).
func ticketErr(err error) error {
	if err == nil {
		return nil
	}
	var rej *oneway.RejectedError
	if errors.As(err, &rej) {
		return &refusedError{rej.Reason}
	}
	return sessionErr(err)
}

// sessionErr adds what to do next to the session's own errors.
func sessionErr(err error) error {
	switch {
	case errors.Is(err, oneway.ErrSessionLost):
		return fmt.Errorf("the session with the receiver was lost (run again to resume): %w", err)
	case errors.Is(err, oneway.ErrSessionClosed):
		return fmt.Errorf("the session with the receiver was closed (run again to resume): %w", err)
	}
	return err
}

// pacer spaces sends so that they average at most rate bytes per second (0: no limit).
type pacer struct {
	rate int64
	mu   sync.Mutex
	next time.Time // when the next byte may go
}

// wait waits until n more bytes may be sent, with *t (made if nil): one timer per sending
// goroutine, not one per chunk.
func (p *pacer) wait(ctx context.Context, t **time.Timer, n int64) error {
	if p.rate <= 0 {
		return nil
	}
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	at := p.next
	p.next = p.next.Add(time.Duration(float64(n) / float64(p.rate) * float64(time.Second)))
	p.mu.Unlock()
	d := time.Until(at)
	if d <= 0 {
		return nil
	}
	if *t == nil {
		*t = time.NewTimer(d)
	} else {
		(*t).Reset(d)
	}
	select {
	case <-(*t).C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
