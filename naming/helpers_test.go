package naming

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testServer is a Server behind an httptest.Server, and a Client of it.
type testServer struct {
	*Server
	ts      *httptest.Server
	client  *Client
	waiting chan string // a name each time a watch starts waiting
}

// newTestServer starts a server; it is closed when the test ends (watches first, then the
// HTTP server, which waits for its handlers).
func newTestServer(t *testing.T, cfg ServerConfig) *testServer {
	t.Helper()
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan string, 100)
	s.waiting = func(name string) { waiting <- name }
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	t.Cleanup(func() { _ = s.Close() })
	return &testServer{Server: s, ts: ts, waiting: waiting,
		client: &Client{BaseURL: ts.URL, Token: cfg.Token, HTTPClient: ts.Client()}}
}

// awaitWaiting waits until a watch of name waits at the server.
func (s *testServer) awaitWaiting(t *testing.T, name string) {
	t.Helper()
	select {
	case got := <-s.waiting:
		if got != name {
			t.Fatalf("a watch of %q waits, want %q", got, name)
		}
	case <-ctx(t).Done():
		t.Fatalf("no watch of %q waits", name)
	}
}

// answer is an HTTP answer as a test sees it.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// binding decodes the answer as a binding.
func (a answer) binding(t *testing.T) Binding {
	t.Helper()
	var b Binding
	if err := json.Unmarshal(a.body, &b); err != nil {
		t.Fatalf("answer %d %q: %v", a.status, a.body, err)
	}
	return b
}

// errorText decodes the answer as an error body; it fails the test unless it is one.
func (a answer) errorText(t *testing.T) string {
	t.Helper()
	var e map[string]any
	if err := json.Unmarshal(a.body, &e); err != nil {
		t.Fatalf("error answer %d %q is not JSON: %v", a.status, a.body, err)
	}
	msg, ok := e["error"].(string)
	if !ok || msg == "" || len(e) != 1 {
		t.Fatalf(`error answer %d %q: want {"error": "..."}`, a.status, a.body)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error answer's Content-Type %q", ct)
	}
	return msg
}

// call sends one raw request; hdr holds header name-value pairs.
func (s *testServer) call(t *testing.T, method, path, body string, hdr ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx(t), method, s.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

// ctx is a context that ends with the test, bounded so that a hung test fails with a message.
func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// memTransport is an http.RoundTripper that calls a handler in memory: no sockets, so a
// testing/synctest bubble holds everything and its fake clock drives the waits. With no handler
// set it fails as a server that is down does.
type memTransport struct {
	mu       sync.Mutex
	h        http.Handler
	requests []memRequest
}

// memRequest is one request the transport saw.
type memRequest struct {
	at    time.Time
	query string // method, path and query
	down  bool
}

func (m *memTransport) set(h http.Handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.h = h
}

func (m *memTransport) seen() []memRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]memRequest(nil), m.requests...)
}

func (m *memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	m.mu.Lock()
	h := m.h
	m.requests = append(m.requests, memRequest{at: time.Now(), query: req.Method + " " + req.URL.RequestURI(), down: h == nil})
	m.mu.Unlock()
	if req.Body != nil {
		defer req.Body.Close()
	}
	if h == nil {
		return nil, fmt.Errorf("dial %s: %w", req.URL.Host, syscall.ECONNREFUSED)
	}
	in := req.Clone(req.Context())
	in.RequestURI = req.URL.RequestURI()
	in.RemoteAddr = "192.0.2.1:1234"
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		in.Body = io.NopCloser(bytes.NewReader(b))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, in)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// memClient is a Client of whatever handler tr holds.
func memClient(tr *memTransport, token string) *Client {
	return &Client{BaseURL: "http://naming.test", Token: token, HTTPClient: &http.Client{Transport: tr}}
}
