package naming

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// FuzzDecodeBindRequest: no body makes the decoder panic; what it accepts is a valid address,
// and encoding that again decodes to the same.
func FuzzDecodeBindRequest(f *testing.F) {
	for _, seed := range []string{
		`{"addr": "127.0.0.1:4300"}`,
		`{"addr": "[::1]:80"}`,
		`{"addr":"example.com:1"}  `,
		`{"addr": "h:1"} {}`,
		`{"addr": 1}`,
		`{"address": "h:1"}`,
		`{"addr": "h:1", "addr": "g:2"}`,
		`{"addr": "h:\u0031"}`,
		`[`,
		``,
		`null`,
		`{"addr": "h:65536"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		addr, err := decodeBindRequest(strings.NewReader(string(body)))
		if err != nil {
			if !errors.Is(err, errMalformed) && !errors.Is(err, ErrInvalidAddr) {
				t.Fatalf("error %v is neither malformed nor a bad address", err)
			}
			return
		}
		if err := validAddr(addr); err != nil {
			t.Fatalf("accepted %q: %v", addr, err)
		}
		again, err := json.Marshal(bindRequest{Addr: addr})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := decodeBindRequest(strings.NewReader(string(again))); err != nil || got != addr {
			t.Fatalf("round trip of %q: %q %v", addr, got, err)
		}
	})
}

// FuzzValidName: whatever validName accepts needs no escaping in a URL path and is not a dot
// segment.
func FuzzValidName(f *testing.F) {
	for _, seed := range []string{"svc", "a.b-c_d", "..", "-a", "a b", "a/b", "é"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if validName(name) != nil {
			return
		}
		if name == "." || name == ".." || strings.ContainsAny(name, "/%?# ") || len(name) > MaxNameLength {
			t.Fatalf("accepted %q", name)
		}
	})
}
