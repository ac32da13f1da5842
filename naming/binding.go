package naming

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// Binding is a name's entry: where the server it names listens now, and the entry's version.
// Versions come from one counter per naming server that every write advances, so a later
// binding of a name always has a higher version, across restarts too.
type Binding struct {
	Name    string `json:"name"`
	Addr    string `json:"addr,omitempty"` // host:port; empty in the answer to an unbind
	Version uint64 `json:"version"`
}

// Limits on names, addresses and request bodies.
const (
	// MaxNameLength is the longest name, in bytes: a DNS name's.
	MaxNameLength = 253
	// MaxAddrLength is the longest address, in bytes: a DNS name, a colon and a port.
	MaxAddrLength = MaxNameLength + 6
	// MaxBodyBytes bounds a request body; the server answers 413 beyond it.
	MaxBodyBytes = 64 << 10
)

// validName reports whether name can be bound: 1 to MaxNameLength bytes of [A-Za-z0-9._-],
// starting with a letter or digit. The charset keeps names safe in a URL path segment without
// escaping, and in logs; the first byte rules out "." and "..", which path cleaning would eat.
func validName(name string) error {
	if name == "" || len(name) > MaxNameLength {
		return ftslerr.Errorf("%w: %d bytes, want 1 to %d", ErrInvalidName, len(name), MaxNameLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '-' && c != '_') {
			return ftslerr.Errorf("%w: %q: byte %d is %q; want [A-Za-z0-9._-], starting with a letter or digit",
				ErrInvalidName, truncate(name), i, c)
		}
	}
	return nil
}

// validAddr reports whether addr is host:port that a client can dial: a host of letters,
// digits and the punctuation of DNS names and IP literals (IPv6 in brackets, with a zone), and
// a numeric port from 1 to 65535.
func validAddr(addr string) error {
	if len(addr) > MaxAddrLength {
		return ftslerr.Errorf("%w: %d bytes, at most %d", ErrInvalidAddr, len(addr), MaxAddrLength)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ftslerr.Errorf("%w: %q: %v", ErrInvalidAddr, truncate(addr), err)
	}
	if host == "" {
		return ftslerr.Errorf("%w: %q: no host", ErrInvalidAddr, addr)
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == '_' || c == ':' || c == '%') {
			return ftslerr.Errorf("%w: %q: host has byte %q", ErrInvalidAddr, truncate(addr), c)
		}
	}
	// ParseUint alone would take "+80" nowhere, but "080" and "0x50" need the digit check.
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return ftslerr.Errorf("%w: %q: port %q is not a number", ErrInvalidAddr, addr, port)
		}
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return ftslerr.Errorf("%w: %q: port %q is not in 1 to 65535", ErrInvalidAddr, addr, port)
	}
	return nil
}

// truncate shortens s for an error message: a hostile name must not make a huge one.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// bindRequest is the body of a bind or rebind.
type bindRequest struct {
	Addr string `json:"addr"`
}

// errMalformed marks a body that is not the JSON object expected.
var errMalformed = errors.New("malformed JSON body")

// decodeBindRequest reads a bind or rebind body: one JSON object {"addr": "host:port"} and
// nothing after it. Unknown fields are refused, so a misspelt field is an error rather than an
// empty address. It returns the address, or an error matching errMalformed, ErrInvalidAddr or,
// for a body cut off by http.MaxBytesReader, *http.MaxBytesError.
func decodeBindRequest(r io.Reader) (string, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var req bindRequest
	if err := dec.Decode(&req); err != nil {
		return "", decodeError(err)
	}
	// Anything but white space after the object is an error: two objects, or garbage.
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			return "", ftslerr.Errorf("%w: data after the object", errMalformed)
		}
		return "", decodeError(err)
	}
	if err := validAddr(req.Addr); err != nil {
		return "", err
	}
	return req.Addr, nil
}

// decodeError keeps the error of a body cut off at MaxBodyBytes, which has its own answer
// (413), and calls every other failure malformed.
func decodeError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return err
	}
	return ftslerr.Errorf("%w: %v", errMalformed, err)
}
