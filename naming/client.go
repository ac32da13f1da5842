package naming

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// Client talks to a naming Server. Its zero value needs only BaseURL; the fields must not change
// while calls are under way. All methods are safe for concurrent use.
type Client struct {
	// BaseURL is the server's URL, such as "http://127.0.0.1:7117"; a path in it prefixes the
	// API's. Use https if the token must cross a network you do not trust.
	BaseURL string

	// Token is sent as "Authorization: Bearer <token>" with writes. Default "": none.
	Token string

	// HTTPClient makes the requests. Default http.DefaultClient. A Timeout on it must exceed
	// WatchWait and a sixteenth of it, or every watch fails.
	HTTPClient *http.Client

	// WatchWait is how long the server holds a watch that sees no change before it answers
	// with the binding unchanged. Default 1 minute (DefaultWatchWait); the server caps it.
	// A watch is also cut off, as failed, when WatchWait, a sixteenth of it and 10 s more have
	// passed: a naming server that died silently is noticed within that time.
	WatchWait time.Duration
}

// DefaultWatchWait is Client.WatchWait's default. Shorter than a server's default wait, so a
// connection the server's machine lost without a word is noticed within about a minute.
const DefaultWatchWait = time.Minute

// watchSlack is how much longer than its wait (and jitter) a watch may take before the client
// gives up on it: the round trip, and a busy server.
const watchSlack = 10 * time.Second

// Lookup returns name's binding. It fails with ErrNotFound if the name is not bound.
func (c *Client) Lookup(ctx context.Context, name string) (Binding, error) {
	return c.do(ctx, "lookup", http.MethodGet, name, nil, nil)
}

// Bind binds name to addr (host:port) if the name is free. It fails with ErrTaken if it is
// bound; Rebind replaces a binding.
func (c *Client) Bind(ctx context.Context, name, addr string) (Binding, error) {
	if err := validAddr(addr); err != nil {
		return Binding{}, err
	}
	return c.do(ctx, "bind", http.MethodPost, name, nil, bindRequest{Addr: addr})
}

// Rebind binds name to addr, replacing the binding the name has, if any. This is what a server
// that moved calls: every watcher of the name hears of it at once.
func (c *Client) Rebind(ctx context.Context, name, addr string) (Binding, error) {
	if err := validAddr(addr); err != nil {
		return Binding{}, err
	}
	return c.do(ctx, "rebind", http.MethodPut, name, nil, bindRequest{Addr: addr})
}

// Unbind removes name's binding. It fails with ErrNotFound if the name is not bound.
func (c *Client) Unbind(ctx context.Context, name string) error {
	_, err := c.do(ctx, "unbind", http.MethodDelete, name, nil, nil)
	return err
}

// UnbindVersion removes name's binding only if it is still at version, as a server that stops
// for good does: if another process has rebound the name since (the server moved there), the
// binding stays and UnbindVersion fails with ErrVersionMismatch.
func (c *Client) UnbindVersion(ctx context.Context, name string, version uint64) error {
	if version == 0 {
		return ftslerr.Errorf("%w: unbind %q: version 0 (pass the version of the binding to remove)", ErrBadRequest, name)
	}
	_, err := c.do(ctx, "unbind", http.MethodDelete, name, url.Values{"version": {strconv.FormatUint(version, 10)}}, nil)
	return err
}

// Watch returns name's binding once its version passes afterVersion, or once the server's wait
// (WatchWait) ran out, unchanged then. With afterVersion 0 it answers at once, as Lookup. A
// version lower than afterVersion means the server lost its data (or is another server): the
// binding returned is the current one all the same.
//
// If the name is not bound, Watch fails with ErrNotFound and returns a Binding with only Name
// and Version set: the version to pass to the next Watch, which then waits for the name to be
// bound.
func (c *Client) Watch(ctx context.Context, name string, afterVersion uint64) (Binding, error) {
	wait := c.WatchWait
	if wait <= 0 {
		wait = DefaultWatchWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait+wait/16+watchSlack)
	defer cancel()
	q := url.Values{"index": {strconv.FormatUint(afterVersion, 10)}, "wait": {wait.String()}}
	return c.do(ctx, "watch", http.MethodGet, name, q, nil)
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

// do sends one request about name and reads its answer. A name not bound returns the index of
// the answer as the Binding's Version, with ErrNotFound.
func (c *Client) do(ctx context.Context, op, method, name string, q url.Values, body any) (Binding, error) {
	if err := validName(name); err != nil {
		return Binding{}, err
	}
	if c.BaseURL == "" {
		return Binding{}, ftslerr.Errorf("ftsl: naming: %s %q: Client.BaseURL is empty", op, name)
	}
	// Valid names need no escaping in a path.
	u := strings.TrimRight(c.BaseURL, "/") + namesPath + name
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Binding{}, ftslerr.Errorf("ftsl: naming: %s %q: %w", op, name, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return Binding{}, ftslerr.Errorf("ftsl: naming: %s %q: %w", op, name, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" && method != http.MethodGet {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return Binding{}, ftslerr.Errorf("ftsl: naming: %s %q: %w", op, name, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		return Binding{}, ftslerr.Errorf("ftsl: naming: %s %q: reading the answer: %w", op, name, err)
	}
	if len(data) > MaxBodyBytes {
		return Binding{}, ftslerr.Errorf("%w: %s %q: answer larger than %d bytes", ErrServer, op, name, MaxBodyBytes)
	}
	if resp.StatusCode/100 == 2 {
		return decodeAnswer(op, name, method, data)
	}
	var eb errorBody
	msg := http.StatusText(resp.StatusCode)
	if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
		msg = truncate(eb.Error)
	}
	sentinel := statusError(resp.StatusCode, op)
	index, indexErr := strconv.ParseUint(resp.Header.Get(IndexHeader), 10, 64)
	if sentinel == ErrNotFound && indexErr != nil {
		// Every 404 of the API carries an index: this one is about the path, not the name.
		sentinel, msg = ErrServer, msg+" (no "+IndexHeader+": is BaseURL a naming server?)"
	}
	err = ftslerr.Errorf("%w: %s %q: %d %s", sentinel, op, name, resp.StatusCode, msg)
	if sentinel == ErrNotFound {
		return Binding{Name: name, Version: index}, err
	}
	return Binding{}, err
}

// decodeAnswer checks a successful answer: the binding of the name asked about, with a version,
// and an address unless it answers an unbind.
func decodeAnswer(op, name, method string, data []byte) (Binding, error) {
	var b Binding
	if err := json.Unmarshal(data, &b); err != nil {
		return Binding{}, ftslerr.Errorf("%w: %s %q: answer is not a binding: %v", ErrServer, op, name, err)
	}
	if b.Name != name || b.Version == 0 {
		return Binding{}, ftslerr.Errorf("%w: %s %q: answer is about %q at version %d", ErrServer, op, name, truncate(b.Name), b.Version)
	}
	if method != http.MethodDelete {
		if err := validAddr(b.Addr); err != nil {
			return Binding{}, ftslerr.Errorf("%w: %s %q: answer's address: %v", ErrServer, op, name, err)
		}
	}
	return b, nil
}

// statusError is the sentinel for an HTTP status answering op.
func statusError(status int, op string) error {
	switch status {
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge:
		return ErrBadRequest
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		if op == "bind" {
			return ErrTaken
		}
		return ErrVersionMismatch
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return ErrUnavailable
	case http.StatusInsufficientStorage:
		return ErrFull
	}
	return ErrServer
}
