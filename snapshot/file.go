package snapshot

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// This file is the snapshot file format, FORMAT.md in this directory: a header, the sections,
// each with its own checksum, and a trailer with the checksum of everything before it. The
// reader trusts nothing in the file: it checks every length against what is left of its limit
// before allocating, and allocates a section's bytes as they arrive, so a file that lies about a
// length costs what it holds, not what it claims.

const (
	magic         = "FTSLSNAP"
	formatVersion = 1
	headerLen     = 16 // magic, version, flags, section count
	trailerLen    = 8  // checksum of the file before it
	// sectionOverhead is what a section costs beside its name and data: the name's length, the
	// data's length and the checksum.
	sectionOverhead = 1 + 8 + 8
	// firstChunk is the most a reader allocates for a section before its bytes arrive; the
	// buffer then doubles as they do.
	firstChunk = 64 << 10
)

// DefaultMaxBytes is the largest file Read accepts when it is given no limit, and ReadFile's
// limit; WriteFile refuses to write a larger one.
const DefaultMaxBytes = 1 << 30

// WriteTo writes the snapshot in the file format (FORMAT.md) to w. It implements io.WriterTo.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	if uint64(len(s.sections)) > math.MaxUint32 {
		return 0, ftslerr.Errorf("ftsl: snapshot: %d sections do not fit in the header", len(s.sections))
	}
	hw := hashWriter{w: w, h: xxhash.New()}
	var hdr [headerLen]byte
	copy(hdr[:], magic)
	binary.BigEndian.PutUint16(hdr[8:], formatVersion)
	binary.BigEndian.PutUint16(hdr[10:], 0) // flags: none in version 1
	binary.BigEndian.PutUint32(hdr[12:], uint32(len(s.sections)))
	hw.write(hdr[:])
	var buf [1 + maxNameLen + 8]byte
	for _, sec := range s.sections {
		b := append(buf[:0], byte(len(sec.name)))
		b = append(b, sec.name...)
		hw.write(binary.BigEndian.AppendUint64(b, uint64(len(sec.data))))
		hw.write(sec.data)
		hw.write(binary.BigEndian.AppendUint64(buf[:0], sectionSum(sec.name, sec.data)))
	}
	hw.write(binary.BigEndian.AppendUint64(buf[:0], hw.h.Sum64()))
	return hw.n, hw.err
}

// sectionSum is a section's checksum: xxhash64 of its name and data.
func sectionSum(name string, data []byte) uint64 {
	h := xxhash.New()
	_, _ = h.WriteString(name)
	_, _ = h.Write(data)
	return h.Sum64()
}

// hashWriter writes to w, hashing and counting what it wrote; the first error stops it.
type hashWriter struct {
	w   io.Writer
	h   *xxhash.Digest
	n   int64
	err error
}

func (hw *hashWriter) write(b []byte) {
	if hw.err != nil || len(b) == 0 {
		return
	}
	n, err := hw.w.Write(b)
	hw.n += int64(n)
	_, _ = hw.h.Write(b[:n])
	hw.err = err
}

// WriteFile writes the snapshot to path so that path holds, whatever happens, either its old
// contents or the whole snapshot: it writes a temporary file in the same directory (mode 0600:
// the snapshot holds the sessions' resume tokens), syncs it to disk, renames it over path and
// syncs the directory. A crash before the rename leaves path as it was, and a temporary file
// ".<name>.tmp*" beside it, which a later WriteFile does not need and anyone may delete. It
// refuses a snapshot over DefaultMaxBytes, which ReadFile would refuse.
func (s *Snapshot) WriteFile(path string) (err error) {
	if size := s.Size(); size > DefaultMaxBytes {
		return ftslerr.Errorf("%w: %d bytes, above DefaultMaxBytes %d that ReadFile reads", ErrTooLarge, size, DefaultMaxBytes)
	}
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp*") // 0600
	if err != nil {
		return ftslerr.Errorf("ftsl: snapshot: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close() // it may be closed already; the error that counts is the first
			_ = os.Remove(tmp)
			err = ftslerr.Errorf("ftsl: snapshot: writing %s: %w", path, err)
		}
	}()
	bw := bufio.NewWriterSize(f, 256<<10)
	if _, err := s.WriteTo(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	// The rename is durable once the directory is.
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && runtime.GOOS != "windows" { // Windows cannot sync a directory
		return err
	}
	return nil
}

// ReadFile reads the snapshot file at path, of at most DefaultMaxBytes (see Read).
func ReadFile(path string) (*Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, ftslerr.Errorf("ftsl: snapshot: %w", err)
	}
	defer f.Close()
	s, err := Read(f, DefaultMaxBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Read reads a snapshot from r, to its end, and checks every checksum. A file longer than
// maxBytes, or declaring lengths beyond it, is refused with ErrTooLarge; maxBytes <= 0 means
// DefaultMaxBytes. The other errors: ErrNotSnapshot (no magic), ErrNewerVersion, ErrTruncated
// (the input ends early), ErrCorrupt (a checksum does not match, a name is invalid or repeated,
// a reserved field is set, bytes follow the trailer). Each says where, by section and offset.
// The sections are not decoded: Get, Core and Oneway do that.
func Read(r io.Reader, maxBytes int64) (*Snapshot, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	rd := &reader{r: bufio.NewReaderSize(r, 64<<10), max: maxBytes, sum: xxhash.New()}
	return rd.snapshot()
}

// reader reads a snapshot, counting and hashing the bytes it reads.
type reader struct {
	r   *bufio.Reader
	off int64 // bytes read so far
	max int64
	sum *xxhash.Digest // of every byte read so far
}

func (rd *reader) snapshot() (*Snapshot, error) {
	var hdr [headerLen]byte
	n, err := io.ReadFull(rd.r, hdr[:len(magic)])
	rd.consumed(hdr[:n])
	switch {
	case !bytes.HasPrefix([]byte(magic), hdr[:n]):
		return nil, ftslerr.Errorf("%w: it begins with %q, not %q", ErrNotSnapshot, hdr[:n], magic)
	case n < len(magic):
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, ftslerr.Errorf("%w: header at offset 0: the input ends after %d of its %d bytes", ErrTruncated, n, headerLen)
		}
		return nil, ftslerr.Errorf("ftsl: snapshot: reading the header: %w", err)
	}
	if err := rd.full(hdr[len(magic):], "header", 0); err != nil {
		return nil, err
	}
	version, flags := binary.BigEndian.Uint16(hdr[8:]), binary.BigEndian.Uint16(hdr[10:])
	count := binary.BigEndian.Uint32(hdr[12:])
	switch {
	case version > formatVersion:
		return nil, ftslerr.Errorf("%w: format version %d, this reader reads version %d", ErrNewerVersion, version, formatVersion)
	case version == 0:
		return nil, ftslerr.Errorf("%w: header at offset 8: format version 0", ErrCorrupt)
	case flags != 0:
		// Version 1 defines no flag: a later format that needs one has a version of its own.
		return nil, ftslerr.Errorf("%w: header at offset 10: flags %#04x, version 1 defines none", ErrCorrupt, flags)
	case int64(count) > (rd.max-headerLen-trailerLen)/(sectionOverhead+1):
		return nil, ftslerr.Errorf("%w: header at offset 12: %d sections cannot fit in %d bytes", ErrTooLarge, count, rd.max)
	}
	s := &Snapshot{sections: make([]section, 0, min(count, 16))}
	seen := make(map[string]bool, min(count, 16))
	for i := range int(count) {
		sec, err := rd.section(i, seen)
		if err != nil {
			return nil, err
		}
		s.sections = append(s.sections, sec)
	}
	want := rd.sum.Sum64()
	var tr [trailerLen]byte
	if err := rd.full(tr[:], "trailer", rd.off); err != nil {
		return nil, err
	}
	if got := binary.BigEndian.Uint64(tr[:]); got != want {
		return nil, ftslerr.Errorf("%w: trailer at offset %d: checksum %016x, the file before it hashes to %016x", ErrCorrupt, rd.off-trailerLen, got, want)
	}
	switch _, err := rd.r.ReadByte(); {
	case err == nil:
		return nil, ftslerr.Errorf("%w: bytes follow the trailer at offset %d", ErrCorrupt, rd.off)
	case err != io.EOF:
		return nil, ftslerr.Errorf("ftsl: snapshot: reading past the trailer: %w", err)
	}
	return s, nil
}

// section reads section i; seen holds the names of those before it.
func (rd *reader) section(i int, seen map[string]bool) (section, error) {
	start := rd.off
	where := fmt.Sprintf("section %d", i)
	var b [8]byte
	if err := rd.full(b[:1], where+" name length", start); err != nil {
		return section{}, err
	}
	n := int(b[0])
	if n == 0 || n > maxNameLen {
		return section{}, ftslerr.Errorf("%w: %s at offset %d: name length %d, not 1 to %d", ErrCorrupt, where, start, n, maxNameLen)
	}
	nb := make([]byte, n)
	if err := rd.full(nb, where+" name", start); err != nil {
		return section{}, err
	}
	name := string(nb)
	where = fmt.Sprintf("section %d %q", i, name)
	if err := checkName(name); err != nil {
		return section{}, ftslerr.Errorf("%w: %s at offset %d: %v", ErrCorrupt, where, start, err)
	}
	if seen[name] {
		return section{}, ftslerr.Errorf("%w: %s at offset %d: a second section of that name", ErrCorrupt, where, start)
	}
	seen[name] = true
	if err := rd.full(b[:], where+" data length", start); err != nil {
		return section{}, err
	}
	size := binary.BigEndian.Uint64(b[:])
	if left := rd.max - rd.off - 8 - trailerLen; size > uint64(max(left, 0)) || size > math.MaxInt {
		return section{}, ftslerr.Errorf("%w: %s at offset %d: %d bytes of data, the file would exceed %d bytes", ErrTooLarge, where, start, size, rd.max)
	}
	data, err := rd.data(int(size), where, start)
	if err != nil {
		return section{}, err
	}
	if err := rd.full(b[:], where+" checksum", start); err != nil {
		return section{}, err
	}
	if got, want := binary.BigEndian.Uint64(b[:]), sectionSum(name, data); got != want {
		return section{}, ftslerr.Errorf("%w: %s at offset %d: checksum %016x, the section hashes to %016x", ErrCorrupt, where, start, got, want)
	}
	return section{name: name, data: data}, nil
}

// data reads n bytes, allocating them as they arrive.
func (rd *reader) data(n int, where string, start int64) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	buf := make([]byte, 0, min(n, firstChunk))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(n-len(buf), len(buf)))
		}
		next := min(cap(buf), n)
		k, err := io.ReadFull(rd.r, buf[len(buf):next])
		rd.consumed(buf[len(buf) : len(buf)+k])
		buf = buf[:len(buf)+k]
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return nil, ftslerr.Errorf("%w: %s at offset %d: the input ends after %d of its %d bytes of data", ErrTruncated, where, start, len(buf), n)
			}
			return nil, ftslerr.Errorf("ftsl: snapshot: reading %s at offset %d: %w", where, start, err)
		}
	}
	return buf, nil
}

// full reads len(b) bytes of what where names; start is where the section (or header) began,
// for the error message.
func (rd *reader) full(b []byte, where string, start int64) error {
	if rd.off+int64(len(b)) > rd.max {
		return ftslerr.Errorf("%w: %s at offset %d: the file goes past %d bytes", ErrTooLarge, where, rd.off, rd.max)
	}
	n, err := io.ReadFull(rd.r, b)
	rd.consumed(b[:n])
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return ftslerr.Errorf("%w: %s at offset %d: the input ends at offset %d", ErrTruncated, where, start, rd.off)
	}
	return ftslerr.Errorf("ftsl: snapshot: reading %s at offset %d: %w", where, start, err)
}

func (rd *reader) consumed(b []byte) {
	rd.off += int64(len(b))
	_, _ = rd.sum.Write(b)
}
