package naming

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestOperations walks every operation through its status codes, raw, and checks the headers
// and bodies the API promises.
func TestOperations(t *testing.T) {
	s := newTestServer(t, ServerConfig{})
	index := func(a answer) uint64 {
		t.Helper()
		n, err := strconv.ParseUint(a.header.Get(IndexHeader), 10, 64)
		if err != nil {
			t.Fatalf("answer %d %q: %s %q: %v", a.status, a.body, IndexHeader, a.header.Get(IndexHeader), err)
		}
		return n
	}
	want := func(a answer, status int, b Binding) {
		t.Helper()
		if a.status != status {
			t.Fatalf("status %d %q, want %d", a.status, a.body, status)
		}
		if got := a.binding(t); got != b {
			t.Fatalf("binding %+v, want %+v", got, b)
		}
		if got := index(a); got != b.Version {
			t.Fatalf("%s %d, want the version %d", IndexHeader, got, b.Version)
		}
		if cc := a.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q", cc)
		}
	}
	wantError := func(a answer, status int) {
		t.Helper()
		if a.status != status {
			t.Fatalf("status %d %q, want %d", a.status, a.body, status)
		}
		a.errorText(t)
	}

	a := s.call(t, "GET", "/v1/names/svc", "")
	wantError(a, http.StatusNotFound)
	if index(a) != 1 {
		t.Errorf("index of a name not bound on an empty server: %d, want 1", index(a))
	}
	want(s.call(t, "POST", "/v1/names/svc", `{"addr": "127.0.0.1:1000"}`), http.StatusCreated, Binding{"svc", "127.0.0.1:1000", 1})
	a = s.call(t, "POST", "/v1/names/svc", `{"addr": "127.0.0.1:1001"}`)
	wantError(a, http.StatusConflict)
	if index(a) != 1 {
		t.Errorf("409's index %d, want the binding's version 1", index(a))
	}
	want(s.call(t, "GET", "/v1/names/svc", ""), http.StatusOK, Binding{"svc", "127.0.0.1:1000", 1})
	want(s.call(t, "PUT", "/v1/names/svc", `{"addr": "127.0.0.1:2000"}`), http.StatusOK, Binding{"svc", "127.0.0.1:2000", 2})
	want(s.call(t, "PUT", "/v1/names/other", `{"addr": "[::1]:3000"}`), http.StatusCreated, Binding{"other", "[::1]:3000", 3})
	a = s.call(t, "DELETE", "/v1/names/svc?version=1", "")
	wantError(a, http.StatusConflict)
	want(s.call(t, "GET", "/v1/names/svc", ""), http.StatusOK, Binding{"svc", "127.0.0.1:2000", 2}) // still there
	want(s.call(t, "DELETE", "/v1/names/svc?version=2", ""), http.StatusOK, Binding{Name: "svc", Version: 4})
	a = s.call(t, "DELETE", "/v1/names/svc", "")
	wantError(a, http.StatusNotFound)
	a = s.call(t, "GET", "/v1/names/svc", "")
	wantError(a, http.StatusNotFound)
	if index(a) != 4 {
		t.Errorf("index of an unbound name: %d, want 4", index(a))
	}
	want(s.call(t, "DELETE", "/v1/names/other", ""), http.StatusOK, Binding{Name: "other", Version: 5})

	// The same through the Client, with its sentinels.
	c := s.client
	bg := ctx(t)
	if _, err := c.Lookup(bg, "svc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup of an unbound name: %v", err)
	}
	if b, err := c.Bind(bg, "svc", "127.0.0.1:1000"); err != nil || b != (Binding{"svc", "127.0.0.1:1000", 6}) {
		t.Errorf("Bind: %+v %v", b, err)
	}
	if _, err := c.Bind(bg, "svc", "127.0.0.1:1001"); !errors.Is(err, ErrTaken) {
		t.Errorf("Bind of a bound name: %v", err)
	} else if !strings.HasPrefix(err.Error(), "ftsl: naming: ") {
		t.Errorf("error %q", err)
	}
	if b, err := c.Rebind(bg, "svc", "127.0.0.1:2000"); err != nil || b != (Binding{"svc", "127.0.0.1:2000", 7}) {
		t.Errorf("Rebind: %+v %v", b, err)
	}
	if b, err := c.Lookup(bg, "svc"); err != nil || b != (Binding{"svc", "127.0.0.1:2000", 7}) {
		t.Errorf("Lookup: %+v %v", b, err)
	}
	if err := c.UnbindVersion(bg, "svc", 6); !errors.Is(err, ErrVersionMismatch) {
		t.Errorf("UnbindVersion at an old version: %v", err)
	}
	if err := c.UnbindVersion(bg, "svc", 7); err != nil {
		t.Errorf("UnbindVersion: %v", err)
	}
	if err := c.Unbind(bg, "svc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Unbind of an unbound name: %v", err)
	}
	if b, err := c.Watch(bg, "svc", 0); !errors.Is(err, ErrNotFound) || b.Version != 8 {
		t.Errorf("Watch from 0 of an unbound name: %+v %v, want ErrNotFound at 8", b, err)
	}
}

// TestPersistence: a new Server on the same data file has the bindings and the version
// counter, even where the binding with the highest version is gone.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "names.json")
	s1 := newTestServer(t, ServerConfig{DataFile: file})
	c, bg := s1.client, ctx(t)
	for _, step := range []func() error{
		func() error { _, err := c.Bind(bg, "a", "127.0.0.1:1"); return err },
		func() error { _, err := c.Bind(bg, "b", "127.0.0.1:2"); return err },
		func() error { _, err := c.Rebind(bg, "a", "127.0.0.1:3"); return err },
		func() error { return c.Unbind(bg, "b") }, // index 4, held by no binding
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("data file mode %v, want 0600", st.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the directory holds %d files, want the data file alone (no temporary left)", len(ents))
	}
	_ = s1.Close()

	s2 := newTestServer(t, ServerConfig{DataFile: file})
	c, bg = s2.client, ctx(t)
	if b, err := c.Lookup(bg, "a"); err != nil || b != (Binding{"a", "127.0.0.1:3", 3}) {
		t.Errorf("after restart, a: %+v %v", b, err)
	}
	if _, err := c.Lookup(bg, "b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after restart, b: %v", err)
	}
	// A watcher from before the restart that had b at version 2 learns at once that b is gone:
	// the restarted server no longer knows when it was unbound.
	s2.mu.Lock()
	atOnce := s2.changedLocked("b", 2)
	s2.mu.Unlock()
	if !atOnce {
		t.Error("after restart, a watch of b from 2 would wait")
	} else if b, err := c.Watch(bg, "b", 2); !errors.Is(err, ErrNotFound) || b.Version != 4 {
		t.Errorf("watch of b from 2 after restart: %+v %v", b, err)
	}
	if b, err := c.Bind(bg, "c", "127.0.0.1:4"); err != nil || b.Version != 5 {
		t.Errorf("first write after restart: %+v %v, want version 5", b, err)
	}
}

// TestDataFileRefused: a data file that cannot be right stops NewServer with an error naming it.
func TestDataFileRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, content, want string }{
		{"garbage", "{", "unexpected end"},
		{"format", `{"format": 2, "index": 1, "bindings": []}`, "format 2"},
		{"version above index", `{"format": 1, "index": 1, "bindings": [{"name": "a", "addr": "h:1", "version": 2}]}`, "version 2"},
		{"version 0", `{"format": 1, "index": 1, "bindings": [{"name": "a", "addr": "h:1", "version": 0}]}`, "version 0"},
		{"twice", `{"format": 1, "index": 2, "bindings": [{"name": "a", "addr": "h:1", "version": 1}, {"name": "a", "addr": "h:1", "version": 2}]}`, "twice"},
		{"bad name", `{"format": 1, "index": 1, "bindings": [{"name": "a/b", "addr": "h:1", "version": 1}]}`, "invalid name"},
		{"bad addr", `{"format": 1, "index": 1, "bindings": [{"name": "a", "addr": "h", "version": 1}]}`, "invalid address"},
		{"too many", `{"format": 1, "index": 2, "bindings": [{"name": "a", "addr": "h:1", "version": 1}, {"name": "b", "addr": "h:1", "version": 2}]}`, "above MaxNames 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			if err := os.WriteFile(file, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := NewServer(ServerConfig{DataFile: file, MaxNames: 1})
			if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewServer: %v, want an error naming %s and saying %q", err, file, tc.want)
			}
		})
	}
	if _, err := NewServer(ServerConfig{DataFile: filepath.Join(dir, "no", "such", "dir", "names.json")}); err == nil {
		t.Error("NewServer with a data file in a directory that does not exist: no error")
	}
}

// TestWriteFailureChangesNothing: a write whose data file cannot be written is answered 500
// and changes nothing, in memory or for watchers.
func TestWriteFailureChangesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, ServerConfig{DataFile: filepath.Join(dir, "names.json")})
	c, bg := s.client, ctx(t)
	if _, err := c.Bind(bg, "a", "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil { // the next write cannot make its temporary file
		t.Fatal(err)
	}
	watched := make(chan error, 1)
	go func() { _, err := c.Watch(bg, "a", 1); watched <- err }()
	s.awaitWaiting(t, "a")
	if _, err := c.Rebind(bg, "a", "127.0.0.1:2"); !errors.Is(err, ErrServer) {
		t.Errorf("Rebind with the data file's directory gone: %v, want ErrServer", err)
	}
	if a := s.call(t, "PUT", "/v1/names/a", `{"addr": "127.0.0.1:2"}`); a.status != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", a.status)
	}
	if b, err := c.Lookup(bg, "a"); err != nil || b != (Binding{"a", "127.0.0.1:1", 1}) {
		t.Errorf("after failed writes: %+v %v", b, err)
	}
	select {
	case err := <-watched:
		t.Errorf("a failed write woke a watch: %v", err)
	default:
	}
	_ = s.Close()
	if err := <-watched; !errors.Is(err, ErrUnavailable) {
		t.Errorf("watch at Close: %v, want ErrUnavailable", err)
	}
}

// TestWatchWakes: a waiting watch answers the moment its name is rebound, bound or unbound.
func TestWatchWakes(t *testing.T) {
	s := newTestServer(t, ServerConfig{})
	c, bg := s.client, ctx(t)
	b1, err := c.Bind(bg, "svc", "127.0.0.1:1000")
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		b   Binding
		err error
	}
	watch := func(name string, after uint64) <-chan result {
		ch := make(chan result, 1)
		go func() {
			b, err := c.Watch(bg, name, after)
			ch <- result{b, err}
		}()
		s.awaitWaiting(t, name)
		return ch
	}

	w := watch("svc", b1.Version)
	b2, err := c.Rebind(bg, "svc", "127.0.0.1:2000")
	if err != nil {
		t.Fatal(err)
	}
	if r := <-w; r.err != nil || r.b != b2 {
		t.Errorf("watch woken by rebind: %+v %v, want %+v", r.b, r.err, b2)
	}

	w = watch("svc", b2.Version)
	if err := c.Unbind(bg, "svc"); err != nil {
		t.Fatal(err)
	}
	r := <-w
	if !errors.Is(r.err, ErrNotFound) || r.b.Version != b2.Version+1 {
		t.Errorf("watch woken by unbind: %+v %v", r.b, r.err)
	}

	// A watch of an unbound name waits for the bind; a write to another name does not wake it.
	w = watch("svc", r.b.Version)
	if _, err := c.Bind(bg, "other", "127.0.0.1:9"); err != nil {
		t.Fatal(err)
	}
	b3, err := c.Bind(bg, "svc", "127.0.0.1:3000")
	if err != nil {
		t.Fatal(err)
	}
	if r := <-w; r.err != nil || r.b != b3 {
		t.Errorf("watch woken by bind: %+v %v, want %+v", r.b, r.err, b3)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waits) != 0 || s.watchers != 0 {
		t.Errorf("after the watches: %d wait sets, %d watchers", len(s.waits), s.watchers)
	}
}

// TestWatchTimeout: a watch that sees no change answers with the binding unchanged once its
// wait has passed; a wait above MaxWait is cut to it.
func TestWatchTimeout(t *testing.T) {
	t.Run("real", func(t *testing.T) {
		s := newTestServer(t, ServerConfig{})
		c, bg := s.client, ctx(t)
		b, err := c.Bind(bg, "svc", "127.0.0.1:1000")
		if err != nil {
			t.Fatal(err)
		}
		c.WatchWait = 20 * time.Millisecond
		if got, err := c.Watch(bg, "svc", b.Version); err != nil || got != b {
			t.Errorf("watch that timed out: %+v %v, want %+v", got, err, b)
		}
		if _, err := c.Watch(bg, "never-bound", 1); !errors.Is(err, ErrNotFound) {
			t.Errorf("watch of an unbound name that timed out: %v", err)
		}
		// Watches that left without a change leave nothing behind.
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.waits) != 0 || s.watchers != 0 {
			t.Errorf("after the watches: %d wait sets, %d watchers", len(s.waits), s.watchers)
		}
	})
	t.Run("capped", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s, err := NewServer(ServerConfig{MaxWait: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			tr := &memTransport{h: s}
			c := memClient(tr, "")
			b, err := c.Bind(t.Context(), "svc", "127.0.0.1:1000")
			if err != nil {
				t.Fatal(err)
			}
			c.WatchWait = time.Hour
			start := time.Now()
			got, err := c.Watch(t.Context(), "svc", b.Version)
			took := time.Since(start)
			if err != nil || got != b {
				t.Errorf("capped watch: %+v %v", got, err)
			}
			if took < time.Second || took > time.Second+time.Second/16 {
				t.Errorf("a watch asking an hour with MaxWait 1s took %v", took)
			}
		})
	})
}

// TestWatchIndexAhead: an index above the server's (it lost its data) is answered at once, so
// the watcher starts over rather than waiting for a version it will never see.
func TestWatchIndexAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := NewServer(ServerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		c := memClient(&memTransport{h: s}, "")
		bg := t.Context()
		b, err := c.Bind(bg, "svc", "127.0.0.1:1000")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if got, err := c.Watch(bg, "svc", 1000); err != nil || got != b {
			t.Errorf("watch from 1000 on a server at 1: %+v %v", got, err)
		}
		if got, err := c.Watch(bg, "none", 1000); !errors.Is(err, ErrNotFound) || got.Version != 1 {
			t.Errorf("watch of an unbound name from 1000 on a server at 1: %+v %v", got, err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("the watches took %v, want an answer at once", d)
		}
		// With the index answered, the next watch waits: no busy loop.
		start = time.Now()
		c.WatchWait = time.Minute
		if got, err := c.Watch(bg, "none", 1); !errors.Is(err, ErrNotFound) || time.Since(start) < time.Minute {
			t.Errorf("watch of an unbound name from its index: %+v %v after %v", got, err, time.Since(start))
		}
	})
}

// TestToken: with a token, every write needs it and gets 401 without it; reads need none.
func TestToken(t *testing.T) {
	const token = "s3cret-t0ken"
	s := newTestServer(t, ServerConfig{Token: token})
	writes := []struct{ method, path, body string }{
		{"POST", "/v1/names/svc", `{"addr": "127.0.0.1:1"}`},
		{"PUT", "/v1/names/svc", `{"addr": "127.0.0.1:2"}`},
		{"DELETE", "/v1/names/svc", ""},
	}
	for _, w := range writes {
		for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", "Basic " + token, token, "Bearer"} {
			a := s.call(t, w.method, w.path, w.body, "Authorization", auth)
			if a.status != http.StatusUnauthorized {
				t.Errorf("%s with Authorization %q: status %d, want 401", w.method, auth, a.status)
				continue
			}
			a.errorText(t)
			if !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer: %q", a.header.Get("WWW-Authenticate"))
			}
		}
		if a := s.call(t, "GET", "/v1/names/svc", ""); a.status == http.StatusUnauthorized {
			t.Errorf("lookup needed a token")
		}
		if a := s.call(t, w.method, w.path, w.body, "Authorization", "bearer "+token); a.status/100 != 2 {
			t.Errorf("%s with the token: status %d %q", w.method, a.status, a.body)
		}
	}
	bad := *s.client
	bad.Token = "wrong"
	if _, err := bad.Bind(ctx(t), "svc", "127.0.0.1:1"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Bind with a wrong token: %v", err)
	}
	if _, err := s.client.Bind(ctx(t), "svc", "127.0.0.1:1"); err != nil {
		t.Errorf("Bind with the token: %v", err)
	}
}

// TestBadInput: every kind of bad request gets its status and a JSON error body; none
// changes anything.
func TestBadInput(t *testing.T) {
	s := newTestServer(t, ServerConfig{})
	long := strings.Repeat("a", MaxNameLength+1)
	huge := `{"addr": "127.0.0.1:1"` + strings.Repeat(" ", MaxBodyBytes) + "}"
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/v1/names/unknown", "", 404},
		{"GET", "/v2/names/x", "", 404},
		{"GET", "/", "", 404},
		{"POST", "/v1/names/svc", "{", 400},
		{"POST", "/v1/names/svc", "", 400},
		{"POST", "/v1/names/svc", "[]", 400},
		{"POST", "/v1/names/svc", `{"addr": 1}`, 400},
		{"POST", "/v1/names/svc", `{"address": "127.0.0.1:1"}`, 400},
		{"POST", "/v1/names/svc", `{"addr": "127.0.0.1:1"} {}`, 400},
		{"POST", "/v1/names/svc", `{"addr": "127.0.0.1:1"} x`, 400},
		{"PUT", "/v1/names/svc", huge, 413},
		{"PUT", "/v1/names/", `{"addr": "127.0.0.1:1"}`, 400},
		{"PUT", "/v1/names/-svc", `{"addr": "127.0.0.1:1"}`, 400},
		{"PUT", "/v1/names/..", `{"addr": "127.0.0.1:1"}`, 400},
		{"PUT", "/v1/names/a%20b", `{"addr": "127.0.0.1:1"}`, 400},
		{"PUT", "/v1/names/a%2Fb", `{"addr": "127.0.0.1:1"}`, 400},
		{"PUT", "/v1/names/a/b", `{"addr": "127.0.0.1:1"}`, 400},
		{"PUT", "/v1/names/" + long, `{"addr": "127.0.0.1:1"}`, 400},
		{"GET", "/v1/names/" + long, "", 400},
		{"PUT", "/v1/names/svc", `{"addr": "127.0.0.1"}`, 400},
		{"PUT", "/v1/names/svc", `{"addr": "127.0.0.1:"}`, 400},
		{"PUT", "/v1/names/svc", `{"addr": ":80"}`, 400},
		{"PUT", "/v1/names/svc", `{"addr": "127.0.0.1:http"}`, 400},
		{"PUT", "/v1/names/svc", `{"addr": "127.0.0.1:0"}`, 400},
		{"PUT", "/v1/names/svc", `{"addr": "127.0.0.1:65536"}`, 400},
		{"PUT", "/v1/names/svc", `{"addr": "127.0.0.1:-1"}`, 400},
		{"PUT", "/v1/names/svc", `{"addr": "127.0.0.1:+80"}`, 400},
		{"PUT", "/v1/names/svc", `{"addr": "a b:80"}`, 400},
		{"PUT", "/v1/names/svc", `{"addr": "a/b:80"}`, 400},
		{"PUT", "/v1/names/svc", `{"addr": ""}`, 400},
		{"GET", "/v1/names/svc?index=x", "", 400},
		{"GET", "/v1/names/svc?index=-1", "", 400},
		{"GET", "/v1/names/svc?index=1&wait=soon", "", 400},
		{"GET", "/v1/names/svc?index=1&wait=-1s", "", 400},
		{"DELETE", "/v1/names/svc?version=x", "", 400},
		{"DELETE", "/v1/names/svc?version=0", "", 400},
		{"PATCH", "/v1/names/svc", `{"addr": "127.0.0.1:1"}`, 405},
		{"OPTIONS", "/v1/names/svc", "", 405},
	} {
		a := s.call(t, tc.method, tc.path, tc.body)
		if a.status != tc.status {
			t.Errorf("%s %s %.40q: status %d %q, want %d", tc.method, tc.path, tc.body, a.status, a.body, tc.status)
			continue
		}
		msg := a.errorText(t)
		if tc.status == 405 && a.header.Get("Allow") != "GET, POST, PUT, DELETE" {
			t.Errorf("405 with Allow %q", a.header.Get("Allow"))
		}
		if strings.HasPrefix(tc.path, "/v1/names/") == (a.header.Get(IndexHeader) == "") && tc.status == 404 {
			t.Errorf("%s: 404 with %s %q: only a name's 404 has one", tc.path, IndexHeader, a.header.Get(IndexHeader))
		}
		if len(msg) > 400 {
			t.Errorf("%s %s: a %d-byte error message", tc.method, tc.path, len(msg))
		}
	}
	if a := s.call(t, "HEAD", "/v1/names/svc", ""); a.status != 405 {
		t.Errorf("HEAD: %d", a.status)
	}
	if a := s.call(t, "PUT", "/v1/names/svc", `{"addr": "[::1]:80"}`); a.status != 201 {
		t.Errorf("an IPv6 address: %d %q", a.status, a.body)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.names) != 1 || s.index != 1 {
		t.Errorf("bad input changed the state: %d names, index %d", len(s.names), s.index)
	}
}

// TestTooManyWatchers: beyond MaxWatchers a watch is answered 503 with Retry-After, and the
// places come back when watches end.
func TestTooManyWatchers(t *testing.T) {
	s := newTestServer(t, ServerConfig{MaxWatchers: 2})
	c, bg := s.client, ctx(t)
	errs := make(chan error, 2)
	for _, name := range []string{"a", "b"} {
		go func() { _, err := c.Watch(bg, name, 1); errs <- err }()
		s.awaitWaiting(t, name)
	}
	a := s.call(t, "GET", "/v1/names/c?index=1", "")
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Fatalf("watch beyond MaxWatchers: %d, Retry-After %q", a.status, a.header.Get("Retry-After"))
	}
	a.errorText(t)
	if _, err := c.Watch(bg, "c", 1); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Client.Watch beyond MaxWatchers: %v", err)
	}
	if _, err := c.Lookup(bg, "c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a lookup is no watch: %v", err)
	}
	// Binding the names wakes both watches and frees their places.
	for _, name := range []string{"a", "b"} {
		if _, err := c.Bind(bg, name, "127.0.0.1:1"); err != nil {
			t.Fatal(err)
		}
		if err := <-errs; err != nil {
			t.Errorf("watch of %s: %v", name, err)
		}
	}
	go func() { _, err := c.Watch(bg, "c", 2); errs <- err }()
	s.awaitWaiting(t, "c")
	_ = s.Close()
	if err := <-errs; !errors.Is(err, ErrUnavailable) {
		t.Errorf("watch at Close: %v", err)
	}
}

// TestClose: Close answers waiting watches at once, and every request after it, with 503.
func TestClose(t *testing.T) {
	s := newTestServer(t, ServerConfig{})
	c, bg := s.client, ctx(t)
	if _, err := c.Bind(bg, "svc", "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 3)
	for range 3 {
		go func() { _, err := c.Watch(bg, "svc", 1); errs <- err }()
		s.awaitWaiting(t, "svc")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := <-errs; !errors.Is(err, ErrUnavailable) {
			t.Errorf("watch at Close: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
		if a := s.call(t, m, "/v1/names/svc", `{"addr": "127.0.0.1:2"}`); a.status != http.StatusServiceUnavailable {
			t.Errorf("%s after Close: %d", m, a.status)
		}
	}
}

// TestMaxNames: a bind of a new name beyond MaxNames is answered 507; names held can still be
// rebound and unbound.
func TestMaxNames(t *testing.T) {
	s := newTestServer(t, ServerConfig{MaxNames: 2})
	c, bg := s.client, ctx(t)
	for _, name := range []string{"a", "b"} {
		if _, err := c.Bind(bg, name, "127.0.0.1:1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Bind(bg, "c", "127.0.0.1:1"); !errors.Is(err, ErrFull) {
		t.Errorf("third name: %v", err)
	}
	if _, err := c.Rebind(bg, "c", "127.0.0.1:1"); !errors.Is(err, ErrFull) {
		t.Errorf("third name by rebind: %v", err)
	}
	if _, err := c.Rebind(bg, "a", "127.0.0.1:2"); err != nil {
		t.Errorf("rebind of a name held: %v", err)
	}
	if err := c.Unbind(bg, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Bind(bg, "c", "127.0.0.1:1"); err != nil {
		t.Errorf("bind after an unbind: %v", err)
	}
}

// TestServerConfig: impossible values are refused, naming the field.
func TestServerConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg   ServerConfig
		field string
	}{
		{ServerConfig{MaxNames: -1}, "MaxNames"},
		{ServerConfig{MaxNames: maxMaxNames + 1}, "MaxNames"},
		{ServerConfig{MaxWatchers: -1}, "MaxWatchers"},
		{ServerConfig{MaxWait: -time.Second}, "MaxWait"},
		{ServerConfig{DefaultWait: -time.Second}, "DefaultWait"},
		{ServerConfig{MaxWait: time.Second, DefaultWait: time.Minute}, "DefaultWait"},
		{ServerConfig{Token: "a b"}, "Token"},
		{ServerConfig{Token: "a\n"}, "Token"},
	} {
		_, err := NewServer(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.HasPrefix(err.Error(), "ftsl: naming: ") {
			t.Errorf("%+v: %v, want an error naming %s", tc.cfg, err, tc.field)
		}
	}
	s, err := NewServer(ServerConfig{MaxWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.MaxNames != DefaultMaxNames || s.cfg.MaxWatchers != DefaultMaxWatchers || s.cfg.DefaultWait != time.Minute {
		t.Errorf("defaults: %+v", s.cfg)
	}
}

// TestTombstones: the server remembers the last maxTombstones unbinds, and for older ones
// answers at once rather than miss one.
func TestTombstones(t *testing.T) {
	tb := tombstones{at: make(map[string]uint64)}
	for i := range uint64(maxTombstones + 10) {
		tb.add(fmt.Sprintf("n%d", i), i+1)
	}
	if len(tb.at) != maxTombstones || len(tb.order) != maxTombstones || tb.floor != 10 {
		t.Fatalf("%d names, %d in order, floor %d", len(tb.at), len(tb.order), tb.floor)
	}
	if !tb.unboundAfter("n0", 5) { // forgotten, at 1: the floor answers for it
		t.Error("a forgotten unbind after the index is not reported")
	}
	if tb.unboundAfter("n20", 21) || !tb.unboundAfter("n20", 20) {
		t.Error("a remembered unbind is misreported")
	}
	if tb.unboundAfter("never", 100) {
		t.Error("a name never unbound, above the floor, reported unbound")
	}
}
