package naming

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// failTransport fails the test if a request is sent.
type failTransport struct{ t *testing.T }

func (f failTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	f.t.Errorf("request sent: %s %s", req.Method, req.URL)
	return nil, errors.New("no")
}

// TestClientChecksFirst: a bad name or address fails before any request.
func TestClientChecksFirst(t *testing.T) {
	c := &Client{BaseURL: "http://127.0.0.1:1", HTTPClient: &http.Client{Transport: failTransport{t}}}
	bg := context.Background()
	for _, name := range []string{"", "a b", "-a", "a/b", strings.Repeat("x", MaxNameLength+1)} {
		if _, err := c.Lookup(bg, name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Lookup(%q): %v", name, err)
		}
	}
	for _, addr := range []string{"", "host", "host:0", "host:99999", ":1", "a b:1"} {
		if _, err := c.Bind(bg, "a", addr); !errors.Is(err, ErrInvalidAddr) {
			t.Errorf("Bind(%q): %v", addr, err)
		}
		if _, err := c.Rebind(bg, "a", addr); !errors.Is(err, ErrInvalidAddr) {
			t.Errorf("Rebind(%q): %v", addr, err)
		}
	}
	if err := c.UnbindVersion(bg, "a", 0); !errors.Is(err, ErrBadRequest) {
		t.Errorf("UnbindVersion at 0: %v", err)
	}
	if _, err := (&Client{}).Lookup(bg, "a"); err == nil || !strings.Contains(err.Error(), "BaseURL") {
		t.Errorf("no BaseURL: %v", err)
	}
}

// TestClientAnswers: answers that are not the API's are errors, not bindings.
func TestClientAnswers(t *testing.T) {
	var status int
	var body, index string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if index != "" {
			w.Header().Set(IndexHeader, index)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	defer ts.Close()
	c := &Client{BaseURL: ts.URL + "/", HTTPClient: ts.Client()}
	bg := context.Background()
	for _, tc := range []struct {
		status      int
		body, index string
		want        error
	}{
		{200, `{"name": "a", "addr": "h:1", "version": 3}`, "3", nil},
		{200, `{"name": "b", "addr": "h:1", "version": 3}`, "3", ErrServer},
		{200, `{"name": "a", "addr": "h", "version": 3}`, "3", ErrServer},
		{200, `{"name": "a", "addr": "h:1", "version": 0}`, "0", ErrServer},
		{200, `<html>`, "", ErrServer},
		{200, `{"name": "a", "addr": "h:1", "version": 3}` + strings.Repeat(" ", MaxBodyBytes), "3", ErrServer},
		{404, `{"error": "name \"a\" is not bound"}`, "7", ErrNotFound},
		{404, `page not found`, "", ErrServer}, // no index: not the API
		{401, ``, "", ErrUnauthorized},
		{413, ``, "", ErrBadRequest},
		{429, ``, "", ErrUnavailable},
		{503, `{"error": "server closed"}`, "", ErrUnavailable},
		{507, ``, "", ErrFull},
		{500, `{"error": "disk"}`, "", ErrServer},
		{302, ``, "", ErrServer},
	} {
		status, body, index = tc.status, tc.body, tc.index
		b, err := c.Lookup(bg, "a")
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%d %.30q: %+v %v, want %v", tc.status, tc.body, b, err, tc.want)
			continue
		}
		if err != nil && !strings.HasPrefix(err.Error(), "ftsl: naming: ") {
			t.Errorf("error %q", err)
		}
		if errors.Is(err, ErrNotFound) && b.Version != 7 {
			t.Errorf("ErrNotFound's version %d, want the index 7", b.Version)
		}
	}
	// 409 means taken to a bind, a version mismatch to a conditional unbind.
	status, body, index = 409, `{"error": "x"}`, "1"
	if _, err := c.Bind(bg, "a", "h:1"); !errors.Is(err, ErrTaken) {
		t.Errorf("bind 409: %v", err)
	}
	if err := c.UnbindVersion(bg, "a", 1); !errors.Is(err, ErrVersionMismatch) {
		t.Errorf("unbind 409: %v", err)
	}
	// A transport failure keeps its cause.
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := c.Lookup(ctx, "a"); !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "ftsl: naming: ") {
		t.Errorf("cancelled lookup: %v", err)
	}
}
