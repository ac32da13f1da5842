package snapshot

import "errors"

// Errors of the snapshot package (check with errors.Is). An error about a file's contents wraps
// one of the first five and says where: the section's index and name, the byte offset. Errors
// of the reader or the file system, and a layer's decoding errors (core.ErrInvalidState), are
// wrapped as they come.
var (
	// ErrNotSnapshot means the input does not begin with the snapshot magic "FTSLSNAP".
	ErrNotSnapshot = errors.New("ftsl: snapshot: not a snapshot file")
	// ErrTruncated means the input ends before the snapshot does: a write that never finished,
	// or a copy cut short.
	ErrTruncated = errors.New("ftsl: snapshot: truncated")
	// ErrCorrupt means the bytes are not what was written: a checksum does not match, a section
	// name is invalid or repeated, a reserved field is set, or bytes follow the trailer.
	ErrCorrupt = errors.New("ftsl: snapshot: corrupt")
	// ErrNewerVersion means the file is in a format version this package does not read.
	ErrNewerVersion = errors.New("ftsl: snapshot: newer format version")
	// ErrTooLarge means the file, or a length it declares, is beyond the limit the reader set.
	ErrTooLarge = errors.New("ftsl: snapshot: too large")
	// ErrNoSection means the snapshot holds no section of the name asked for.
	ErrNoSection = errors.New("ftsl: snapshot: no such section")
	// ErrInvalidName means a section name is not 1 to 32 bytes of [a-z0-9._-].
	ErrInvalidName = errors.New("ftsl: snapshot: invalid section name")
)
