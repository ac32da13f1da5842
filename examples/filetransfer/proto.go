package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Message types of the transfer protocol (see the package doc). Sender to receiver below 0x80,
// receiver to sender from 0x80.
const (
	msgOffer  = 0x01
	msgChunk  = 0x02
	msgDone   = 0x03
	msgCancel = 0x04

	msgOffset = 0x81
	msgError  = 0x82
)

// Fixed sizes of the messages, type byte included.
const (
	offerHdrLen  = 1 + 4 + 8 + sha256.Size + 2 // then the name
	chunkHdrLen  = 1 + 4 + 8                   // then the data
	doneLen      = 1 + 4 + sha256.Size
	cancelLen    = 1 + 4
	offsetLen    = 1 + 4 + 8
	errorHdrLen  = 1 + 4 + 2 // then the reason
	maxReasonLen = 512
)

// Limits on names, checked by both ends: a name is a slash-separated path inside the receiver's
// directory.
const (
	maxNameLen    = 1024 // bytes, the whole path
	maxElementLen = 255  // bytes, one path element: NAME_MAX on common file systems
)

// fingerprintLen is how much of a file's start its fingerprint covers: enough that another file
// of the same name and size is not taken for a partial copy of this one, short enough to cost
// nothing before a transfer starts.
const fingerprintLen = 1 << 20

// errProtocol marks a message that breaks the transfer protocol (not the session's).
var errProtocol = errors.New("ftsl: filetransfer protocol error")

// errBadName marks a file name that is not a plain relative path inside the receiver's directory.
var errBadName = errors.New("ftsl: bad file name")

// validateName checks that name is a relative, slash-separated path that stays inside the
// receiver's directory once joined to it: not empty, not absolute, no "." or ".." element, no
// empty element (a leading, trailing or doubled slash), no backslash (a separator elsewhere),
// no NUL or other control character, valid UTF-8, and within the length limits. The receiver
// also opens files through an os.Root, so a symbolic link inside its directory cannot lead out
// either; this check is what lets the sender refuse a bad name before sending anything.
func validateName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", errBadName, name, why) }
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", errBadName)
	case len(name) > maxNameLen:
		return fmt.Errorf("%w: %d bytes long, the limit is %d", errBadName, len(name), maxNameLen)
	case !utf8.ValidString(name):
		return bad("not valid UTF-8")
	case strings.HasPrefix(name, "/"):
		return bad("absolute path")
	case strings.ContainsRune(name, '\\'):
		return bad("contains a backslash")
	}
	for _, r := range name {
		if r == 0 {
			return bad("contains NUL")
		}
		if r < 0x20 || r == 0x7f {
			return bad("contains a control character")
		}
	}
	for el := range strings.SplitSeq(name, "/") {
		switch {
		case el == "":
			return bad("empty path element")
		case el == "." || el == "..":
			return bad("escapes the directory")
		case len(el) > maxElementLen:
			return bad(fmt.Sprintf("path element of %d bytes, the limit is %d", len(el), maxElementLen))
		case strings.HasPrefix(el, partialPrefix):
			return bad("names a partial file")
		}
	}
	return nil
}

// partialPrefix starts the names of partial files in the receiver's directory.
const partialPrefix = ".ftpart-"

// partialName is the name under which the receiver keeps a file while it arrives: derived from
// the file's name, size and fingerprint, so a sender that comes back with the same file finds
// its bytes, and one with another file of the same name does not resume onto them.
func partialName(name string, size uint64, fp [sha256.Size]byte) string {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatUint(size, 10)))
	h.Write([]byte{0})
	h.Write(fp[:])
	return partialPrefix + hex.EncodeToString(h.Sum(nil)[:20])
}

// fingerprint is the SHA-256 of the first fingerprintLen bytes of r (all of it if shorter).
func fingerprint(r io.ReaderAt, size int64) ([sha256.Size]byte, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, min(size, fingerprintLen))); err != nil {
		return [sha256.Size]byte{}, err
	}
	return [sha256.Size]byte(h.Sum(nil)), nil
}

// offer is OFFER: the sender proposes a file.
type offer struct {
	xfer uint32
	size uint64
	fp   [sha256.Size]byte
	name string
}

func (o offer) encode() []byte {
	b := make([]byte, offerHdrLen, offerHdrLen+len(o.name))
	b[0] = msgOffer
	binary.BigEndian.PutUint32(b[1:], o.xfer)
	binary.BigEndian.PutUint64(b[5:], o.size)
	copy(b[13:], o.fp[:])
	binary.BigEndian.PutUint16(b[13+sha256.Size:], uint16(len(o.name)))
	return append(b, o.name...)
}

func parseOffer(b []byte) (offer, error) {
	if len(b) < offerHdrLen {
		return offer{}, fmt.Errorf("%w: OFFER of %d bytes", errProtocol, len(b))
	}
	o := offer{
		xfer: binary.BigEndian.Uint32(b[1:]),
		size: binary.BigEndian.Uint64(b[5:]),
		fp:   [sha256.Size]byte(b[13 : 13+sha256.Size]),
	}
	n := int(binary.BigEndian.Uint16(b[13+sha256.Size:]))
	if len(b) != offerHdrLen+n {
		return offer{}, fmt.Errorf("%w: OFFER name of %d bytes in %d", errProtocol, n, len(b)-offerHdrLen)
	}
	o.name = string(b[offerHdrLen:])
	if o.size > 1<<62 {
		return offer{}, fmt.Errorf("%w: OFFER size %d", errProtocol, o.size)
	}
	return o, nil
}

// putChunkHeader writes CHUNK's header into b (chunkHdrLen bytes); the data follows it.
func putChunkHeader(b []byte, xfer uint32, off uint64) {
	b[0] = msgChunk
	binary.BigEndian.PutUint32(b[1:], xfer)
	binary.BigEndian.PutUint64(b[5:], off)
}

func parseChunk(b []byte) (xfer uint32, off uint64, data []byte, err error) {
	if len(b) < chunkHdrLen {
		return 0, 0, nil, fmt.Errorf("%w: CHUNK of %d bytes", errProtocol, len(b))
	}
	return binary.BigEndian.Uint32(b[1:]), binary.BigEndian.Uint64(b[5:]), b[chunkHdrLen:], nil
}

func encodeDone(xfer uint32, sum [sha256.Size]byte) []byte {
	b := make([]byte, doneLen)
	b[0] = msgDone
	binary.BigEndian.PutUint32(b[1:], xfer)
	copy(b[5:], sum[:])
	return b
}

func parseDone(b []byte) (uint32, [sha256.Size]byte, error) {
	if len(b) != doneLen {
		return 0, [sha256.Size]byte{}, fmt.Errorf("%w: DONE of %d bytes", errProtocol, len(b))
	}
	return binary.BigEndian.Uint32(b[1:]), [sha256.Size]byte(b[5:]), nil
}

func encodeCancel(xfer uint32) []byte {
	b := make([]byte, cancelLen)
	b[0] = msgCancel
	binary.BigEndian.PutUint32(b[1:], xfer)
	return b
}

func parseCancel(b []byte) (uint32, error) {
	if len(b) != cancelLen {
		return 0, fmt.Errorf("%w: CANCEL of %d bytes", errProtocol, len(b))
	}
	return binary.BigEndian.Uint32(b[1:]), nil
}

func encodeOffset(xfer uint32, off uint64) []byte {
	b := make([]byte, offsetLen)
	b[0] = msgOffset
	binary.BigEndian.PutUint32(b[1:], xfer)
	binary.BigEndian.PutUint64(b[5:], off)
	return b
}

func parseOffset(b []byte) (uint32, uint64, error) {
	if len(b) != offsetLen {
		return 0, 0, fmt.Errorf("%w: OFFSET of %d bytes", errProtocol, len(b))
	}
	return binary.BigEndian.Uint32(b[1:]), binary.BigEndian.Uint64(b[5:]), nil
}

func encodeError(xfer uint32, reason string) []byte {
	reason = clip(reason, maxReasonLen)
	b := make([]byte, errorHdrLen, errorHdrLen+len(reason))
	b[0] = msgError
	binary.BigEndian.PutUint32(b[1:], xfer)
	binary.BigEndian.PutUint16(b[5:], uint16(len(reason)))
	return append(b, reason...)
}

func parseError(b []byte) (uint32, string, error) {
	if len(b) < errorHdrLen {
		return 0, "", fmt.Errorf("%w: ERROR of %d bytes", errProtocol, len(b))
	}
	n := int(binary.BigEndian.Uint16(b[5:]))
	if len(b) != errorHdrLen+n {
		return 0, "", fmt.Errorf("%w: ERROR reason of %d bytes in %d", errProtocol, n, len(b)-errorHdrLen)
	}
	return binary.BigEndian.Uint32(b[1:]), string(b[errorHdrLen:]), nil
}

// clip cuts s to at most n bytes, at a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
