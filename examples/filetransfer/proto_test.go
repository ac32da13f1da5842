package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateName(t *testing.T) {
	long := strings.Repeat("a", maxElementLen)
	for _, tc := range []struct {
		name string
		why  string // "" if the name is fine; else a word of the error
	}{
		{"file.txt", ""},
		{"dir/sub/file.txt", ""},
		{".hidden", ""},
		{"..dots", ""},
		{"a..b/c", ""},
		{"é/ü.txt", ""},
		{long, ""},
		{long + "/" + long, ""},
		{"", "empty"},
		{"..", "escapes"},
		{".", "escapes"},
		{"../x", "escapes"},
		{"a/../../x", "escapes"},
		{"a/..", "escapes"},
		{"./x", "escapes"},
		{"/etc/passwd", "absolute"},
		{"/", "absolute"},
		{"a//b", "empty path element"},
		{"a/", "empty path element"},
		{`..\x`, "backslash"},
		{`C:\x`, "backslash"},
		{"a\x00b", "NUL"},
		{"a\nb", "control"},
		{"a\x7fb", "control"},
		{"\xff\xfe", "UTF-8"},
		{long + "a", "path element of 256 bytes"},
		{strings.Repeat("a/", maxNameLen/2) + "a", "bytes long"},
		{partialPrefix + "0123", "partial"},
		{"d/" + partialPrefix + "x", "partial"},
	} {
		err := validateName(tc.name)
		switch {
		case tc.why == "" && err != nil:
			t.Errorf("validateName(%q) = %v, want nil", tc.name, err)
		case tc.why != "" && err == nil:
			t.Errorf("validateName(%q) = nil, want an error about %q", tc.name, tc.why)
		case tc.why != "" && (!errors.Is(err, errBadName) || !strings.Contains(err.Error(), tc.why)):
			t.Errorf("validateName(%q) = %v, want errBadName about %q", tc.name, err, tc.why)
		}
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	fp := sha256.Sum256([]byte("fp"))
	o := offer{xfer: 7, size: 1 << 40, fp: fp, name: "dir/é.bin"}
	got, err := parseOffer(o.encode())
	if err != nil || got != o {
		t.Errorf("parseOffer(encode(%+v)) = %+v, %v", o, got, err)
	}

	msg := make([]byte, chunkHdrLen+3)
	putChunkHeader(msg, 9, 1<<33)
	copy(msg[chunkHdrLen:], "abc")
	x, off, data, err := parseChunk(msg)
	if err != nil || x != 9 || off != 1<<33 || string(data) != "abc" {
		t.Errorf("parseChunk = %d, %d, %q, %v", x, off, data, err)
	}

	x, sum, err := parseDone(encodeDone(3, fp))
	if err != nil || x != 3 || sum != fp {
		t.Errorf("parseDone = %d, %x, %v", x, sum, err)
	}
	if x, err := parseCancel(encodeCancel(4)); err != nil || x != 4 {
		t.Errorf("parseCancel = %d, %v", x, err)
	}
	if x, off, err := parseOffset(encodeOffset(5, 12345)); err != nil || x != 5 || off != 12345 {
		t.Errorf("parseOffset = %d, %d, %v", x, off, err)
	}
	if x, why, err := parseError(encodeError(6, "disk full")); err != nil || x != 6 || why != "disk full" {
		t.Errorf("parseError = %d, %q, %v", x, why, err)
	}
	// A reason too long to send is cut at a character boundary.
	_, why, err := parseError(encodeError(6, strings.Repeat("é", maxReasonLen)))
	if err != nil || len(why) > maxReasonLen || !strings.HasPrefix(why, "éé") || strings.ContainsRune(why, '\uFFFD') {
		t.Errorf("long reason: %d bytes, %v", len(why), err)
	}
}

// TestMalformedMessages: every parser refuses a message of the wrong length with errProtocol,
// and none panics on a truncated one.
func TestMalformedMessages(t *testing.T) {
	good := map[string][]byte{
		"offer":  offer{xfer: 1, size: 10, name: "x"}.encode(),
		"done":   encodeDone(1, [32]byte{}),
		"cancel": encodeCancel(1),
		"offset": encodeOffset(1, 2),
		"error":  encodeError(1, "why"),
	}
	parse := map[string]func([]byte) error{
		"offer":  func(b []byte) error { _, err := parseOffer(b); return err },
		"done":   func(b []byte) error { _, _, err := parseDone(b); return err },
		"cancel": func(b []byte) error { _, err := parseCancel(b); return err },
		"offset": func(b []byte) error { _, _, err := parseOffset(b); return err },
		"error":  func(b []byte) error { _, _, err := parseError(b); return err },
		"chunk":  func(b []byte) error { _, _, _, err := parseChunk(b); return err },
	}
	good["chunk"] = make([]byte, chunkHdrLen)
	for kind, msg := range good {
		if err := parse[kind](msg); err != nil {
			t.Errorf("%s: the good message fails: %v", kind, err)
		}
		for n := range len(msg) {
			if err := parse[kind](msg[:n]); !errors.Is(err, errProtocol) {
				t.Errorf("%s cut to %d bytes: %v, want errProtocol", kind, n, err)
			}
		}
		if kind != "chunk" {
			if err := parse[kind](append(bytes.Clone(msg), 0)); !errors.Is(err, errProtocol) {
				t.Errorf("%s with a byte too many: %v, want errProtocol", kind, err)
			}
		}
	}
	huge := offer{xfer: 1, size: 1<<62 + 1, name: "x"}.encode()
	if _, err := parseOffer(huge); !errors.Is(err, errProtocol) {
		t.Errorf("offer of 2^62+1 bytes: %v, want errProtocol", err)
	}
}

// TestPartialName: the partial file's name depends on the name, the size and the fingerprint, so
// a different file never resumes onto another's bytes.
func TestPartialName(t *testing.T) {
	fp := sha256.Sum256([]byte("a"))
	base := partialName("f", 10, fp)
	if !strings.HasPrefix(base, partialPrefix) || validateName(base) == nil {
		t.Errorf("partial name %q: want the prefix %q, and a name no sender may use", base, partialPrefix)
	}
	if partialName("f", 10, fp) != base {
		t.Error("partialName is not deterministic")
	}
	for _, other := range []string{partialName("g", 10, fp), partialName("f", 11, fp), partialName("f", 10, sha256.Sum256([]byte("b")))} {
		if other == base {
			t.Errorf("two different files share the partial name %q", base)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1024": 1024, "512KiB": 512 << 10, "20MB": 20e6, "1.5M": 1.5e6, "2GiB": 2 << 30, "10 MiB": 10 << 20, "7B": 7,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MB", "-1", "1XB", "1e30"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
}

// FuzzDecoders: no message makes a parser panic, and what a parser accepts encodes back to the
// same bytes (nothing is silently dropped or misread).
func FuzzDecoders(f *testing.F) {
	f.Add(offer{xfer: 1, size: 10, fp: sha256.Sum256(nil), name: "dir/x"}.encode())
	f.Add(encodeDone(2, [32]byte{1}))
	f.Add(encodeCancel(3))
	f.Add(encodeOffset(4, 5))
	f.Add(encodeError(6, "why"))
	f.Add([]byte{msgChunk, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 'x'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if o, err := parseOffer(b); err == nil && !bytes.Equal(o.encode()[1:], b[1:]) {
			t.Errorf("OFFER %x decodes to %+v, which encodes to %x", b, o, o.encode())
		}
		if x, sum, err := parseDone(b); err == nil && !bytes.Equal(encodeDone(x, sum)[1:], b[1:]) {
			t.Errorf("DONE %x misread", b)
		}
		if x, err := parseCancel(b); err == nil && !bytes.Equal(encodeCancel(x)[1:], b[1:]) {
			t.Errorf("CANCEL %x misread", b)
		}
		if x, off, err := parseOffset(b); err == nil && !bytes.Equal(encodeOffset(x, off)[1:], b[1:]) {
			t.Errorf("OFFSET %x misread", b)
		}
		if x, why, err := parseError(b); err == nil && len(why) <= maxReasonLen && utf8.ValidString(why) &&
			!bytes.Equal(encodeError(x, why)[1:], b[1:]) {
			t.Errorf("ERROR %x misread", b)
		}
		if x, off, data, err := parseChunk(b); err == nil {
			hdr := make([]byte, chunkHdrLen)
			putChunkHeader(hdr, x, off)
			if !bytes.Equal(append(hdr[1:], data...), b[1:]) {
				t.Errorf("CHUNK %x misread", b)
			}
		}
		_ = validateName(string(b))
	})
}
