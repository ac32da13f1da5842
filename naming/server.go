package naming

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/rs/zerolog"
)

// ServerConfig tunes a Server. The zero value is ready to use: every zero field means the
// default written beside it. NewServer refuses impossible values with an error naming the field.
type ServerConfig struct {
	// DataFile is where the bindings and the version counter persist, rewritten atomically on
	// every write (mode 0600); NewServer loads it, so a restarted server keeps its bindings and
	// its versions never go backwards. Its directory must exist. Default "": memory only.
	DataFile string

	// Token, when set, is the bearer token that writes (bind, rebind, unbind) must carry in
	// "Authorization: Bearer <token>"; others are answered 401. Lookups and watches need none.
	// Default "": anyone who reaches the server may write.
	Token string

	// MaxNames bounds the names bound at once; a bind of a new name beyond it is answered 507.
	// Default 10,000; at most 100,000 (the data file is rewritten whole on every write).
	MaxNames int

	// MaxWatchers bounds the watches waiting at once; one more is answered 503 with
	// Retry-After. Each costs a connection and a goroutine of the HTTP server. Default 10,000.
	MaxWatchers int

	// MaxWait caps a watch's wait parameter. Default 10 minutes.
	MaxWait time.Duration

	// DefaultWait is a watch's wait when the request gives none. Default 5 minutes, or
	// MaxWait if that is shorter.
	DefaultWait time.Duration

	// Logger receives the server's log: every write at info level, refusals at debug. The zero
	// value logs nothing.
	Logger zerolog.Logger
}

// Defaults, as documented on ServerConfig.
const (
	DefaultMaxNames    = 10_000
	DefaultMaxWatchers = 10_000
	DefaultMaxWait     = 10 * time.Minute
	DefaultWait        = 5 * time.Minute

	maxMaxNames = 100_000
	// maxTombstones bounds the unbinds the server remembers for watchers (see tombstones).
	maxTombstones = 4096
	// retryAfter is the Retry-After, in seconds, of a watch refused for MaxWatchers.
	retryAfter = "5"
)

// IndexHeader is the response header carrying the index to pass as the next watch's index
// parameter: a binding's version, or for a name not bound the server's version counter.
const IndexHeader = "X-Ftsl-Index"

// namesPath is the API's one path prefix: a name follows it.
const namesPath = "/v1/names/"

func (c ServerConfig) withDefaults() (ServerConfig, error) {
	bad := func(format string, args ...any) (ServerConfig, error) {
		return c, ftslerr.Errorf("ftsl: naming: invalid ServerConfig: "+format, args...)
	}
	switch {
	case c.MaxNames < 0:
		return bad("MaxNames is negative")
	case c.MaxNames > maxMaxNames:
		return bad("MaxNames %d is above %d", c.MaxNames, maxMaxNames)
	case c.MaxWatchers < 0:
		return bad("MaxWatchers is negative")
	case c.MaxWait < 0:
		return bad("MaxWait is negative")
	case c.DefaultWait < 0:
		return bad("DefaultWait is negative")
	case c.MaxWait > 0 && c.DefaultWait > c.MaxWait:
		return bad("DefaultWait %v is above MaxWait %v", c.DefaultWait, c.MaxWait)
	}
	for i := 0; i < len(c.Token); i++ {
		if c.Token[i] <= ' ' || c.Token[i] >= 0x7f {
			return bad("Token has byte %d, a space or control or non-ASCII byte: it cannot travel in a header", i)
		}
	}
	if c.MaxNames == 0 {
		c.MaxNames = DefaultMaxNames
	}
	if c.MaxWatchers == 0 {
		c.MaxWatchers = DefaultMaxWatchers
	}
	if c.MaxWait == 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.DefaultWait == 0 {
		c.DefaultWait = min(DefaultWait, c.MaxWait)
	}
	return c, nil
}

// Server is a naming service: it maps names to the addresses of the servers they name, and
// answers lookups and watches over HTTP with JSON bodies (the API is in the package
// documentation). It is an http.Handler; serve it with an http.Server whose WriteTimeout, if
// any, exceeds MaxWait plus a sixteenth, or watches are cut off.
type Server struct {
	cfg       ServerConfig
	tokenHash [sha256.Size]byte
	log       zerolog.Logger
	done      chan struct{} // closed by Close: wakes every watch

	// writeMu serialises writes, each with its data file write, so that lookups and watches
	// never wait for a disk. Lock order: writeMu, then mu. A writer reads index and names
	// holding writeMu alone: only writers change them.
	writeMu sync.Mutex

	mu       sync.Mutex
	closed   bool
	index    uint64             // the version counter: the version of the last write
	names    map[string]Binding // by name
	waits    map[string]*waitSet
	watchers int // watches waiting, in all waitSets
	tombs    tombstones

	// waiting, if set (by tests, before serving), is called once a watch waits.
	waiting func(name string)
}

// waitSet is the watches waiting on one name. Its channel is closed, and the set dropped, when
// the name changes; the last watch to leave an unchanged set drops it, so the map holds no more
// sets than there are watches.
type waitSet struct {
	ch chan struct{}
	n  int
}

// tombstones remember when names were unbound, so that a watch of a name that is no longer
// bound can tell whether it was unbound after the watcher's index (answer at once) or was
// already gone (wait for a bind). Only the last maxTombstones are kept; floor is the latest
// unbind forgotten, or the index the server started at, and a watch of an unbound name with an
// index below it is answered at once: it may have missed an unbind, and an early answer costs a
// request where a late one would hide a change.
type tombstones struct {
	at    map[string]uint64
	order []tombstone // oldest first, at most maxTombstones
	floor uint64
}

type tombstone struct {
	name  string
	index uint64
}

func (t *tombstones) add(name string, index uint64) {
	t.at[name] = index
	t.order = append(t.order, tombstone{name, index})
	if len(t.order) > maxTombstones {
		old := t.order[0]
		t.order = t.order[1:]
		if t.at[old.name] == old.index {
			delete(t.at, old.name)
		}
		t.floor = max(t.floor, old.index)
	}
}

// unboundAfter reports whether name, not bound now, may have been unbound after index.
func (t *tombstones) unboundAfter(name string, index uint64) bool {
	return t.at[name] > index || t.floor > index
}

// NewServer returns a server with the bindings of cfg.DataFile, if it exists. It fails if cfg
// has an impossible value, or the data file cannot be read or breaks a rule.
func NewServer(cfg ServerConfig) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:   cfg,
		log:   cfg.Logger,
		done:  make(chan struct{}),
		names: make(map[string]Binding),
		waits: make(map[string]*waitSet),
		tombs: tombstones{at: make(map[string]uint64)},
	}
	if cfg.Token != "" {
		s.tokenHash = sha256.Sum256([]byte(cfg.Token))
	}
	if cfg.DataFile != "" {
		d, err := loadData(cfg.DataFile, cfg.MaxNames)
		if err != nil {
			return nil, err
		}
		s.index = d.Index
		for _, b := range d.Bindings {
			s.names[b.Name] = b
		}
		// Unbinds before the restart are forgotten: a watcher from before it is answered at once.
		s.tombs.floor = d.Index
		s.log.Info().Str("file", cfg.DataFile).Int("names", len(s.names)).Uint64("index", s.index).Msg("naming data loaded")
	}
	return s, nil
}

// Close stops the server: every waiting watch is answered 503 at once, and so is every
// request from then on. A write under way completes (its data file write included) before
// Close returns. Close is safe to call twice. It does not close connections: shut the
// http.Server down after it.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	// An empty critical section: it only waits for a write under way, and none starts after.
	s.writeMu.Lock()
	s.writeMu.Unlock()
	return nil
}

// ServeHTTP answers the naming API (see the package documentation).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, namesPath)
	if !ok {
		writeError(w, http.StatusNotFound, "no such path: the API is "+namesPath+"{name}")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete:
	default:
		w.Header().Set("Allow", "GET, POST, PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "method "+truncate(r.Method)+" not allowed: GET looks up or watches, POST binds, PUT rebinds, DELETE unbinds")
		return
	}
	if err := validName(name); err != nil {
		writeError(w, http.StatusBadRequest, message(err))
		return
	}
	if r.Method == http.MethodGet {
		s.get(w, r, name)
		return
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ftsl-naming"`)
		s.log.Debug().Str("remote", r.RemoteAddr).Str("method", r.Method).Str("name", name).Msg("write refused: bad or missing token")
		writeError(w, http.StatusUnauthorized, "writes need the server's token: Authorization: Bearer <token>")
		return
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut:
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		addr, err := decodeBindRequest(r.Body)
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxBodyBytes))
			return
		case err != nil:
			writeError(w, http.StatusBadRequest, message(err))
			return
		}
		s.bind(w, r, name, addr, r.Method == http.MethodPut)
	case http.MethodDelete:
		var want uint64
		if v := r.URL.Query().Get("version"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n == 0 {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("version %q: want a positive integer", truncate(v)))
				return
			}
			want = n
		}
		s.unbind(w, r, name, want)
	}
}

// authorized reports whether r may write. Both sides are hashed first so that the comparison
// takes the same time whatever the length of the token offered.
func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.Token == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	const scheme = "bearer "
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(h[len(scheme):])))
	return subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) == 1
}

// bind binds name to addr: only if it is free, or in any case if replace is set (rebind).
func (s *Server) bind(w http.ResponseWriter, r *http.Request, name, addr string, replace bool) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.isClosed() {
		writeError(w, http.StatusServiceUnavailable, "server closed")
		return
	}
	cur, bound := s.names[name]
	switch {
	case bound && !replace:
		w.Header().Set(IndexHeader, strconv.FormatUint(cur.Version, 10))
		writeError(w, http.StatusConflict, fmt.Sprintf("name %q is bound to %s (version %d): rebind (PUT) replaces it", name, cur.Addr, cur.Version))
		return
	case !bound && len(s.names) >= s.cfg.MaxNames:
		writeError(w, http.StatusInsufficientStorage, fmt.Sprintf("the server holds its maximum of %d names", s.cfg.MaxNames))
		return
	}
	b := Binding{Name: name, Addr: addr, Version: s.index + 1}
	if err := s.commit(b, true); err != nil {
		s.log.Error().Err(err).Str("name", name).Msg("write failed: data file not written, binding unchanged")
		writeError(w, http.StatusInternalServerError, "data file not written: binding unchanged")
		return
	}
	s.log.Info().Str("name", name).Str("addr", addr).Uint64("version", b.Version).Str("remote", r.RemoteAddr).Msg("bound")
	status := http.StatusOK
	if !bound {
		status = http.StatusCreated
	}
	writeBinding(w, status, b, b.Version)
}

// unbind removes name's binding: in any case if want is 0, else only at version want.
func (s *Server) unbind(w http.ResponseWriter, r *http.Request, name string, want uint64) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.isClosed() {
		writeError(w, http.StatusServiceUnavailable, "server closed")
		return
	}
	cur, bound := s.names[name]
	switch {
	case !bound:
		w.Header().Set(IndexHeader, strconv.FormatUint(max(s.index, 1), 10))
		writeError(w, http.StatusNotFound, fmt.Sprintf("name %q is not bound", name))
		return
	case want != 0 && cur.Version != want:
		w.Header().Set(IndexHeader, strconv.FormatUint(cur.Version, 10))
		writeError(w, http.StatusConflict, fmt.Sprintf("name %q is at version %d, not %d", name, cur.Version, want))
		return
	}
	b := Binding{Name: name, Version: s.index + 1}
	if err := s.commit(b, false); err != nil {
		s.log.Error().Err(err).Str("name", name).Msg("write failed: data file not written, binding unchanged")
		writeError(w, http.StatusInternalServerError, "data file not written: binding unchanged")
		return
	}
	s.log.Info().Str("name", name).Str("was", cur.Addr).Uint64("version", b.Version).Str("remote", r.RemoteAddr).Msg("unbound")
	writeBinding(w, http.StatusOK, b, b.Version)
}

// commit makes b, whose version is the next index, the state of its name (bound, or unbound
// if not bound): in the data file first, then in memory, then it wakes the name's watches. On
// error nothing changed. The caller holds writeMu.
func (s *Server) commit(b Binding, bound bool) error {
	if s.cfg.DataFile != "" {
		d := dataFile{Format: dataFormat, Index: b.Version, Bindings: make([]Binding, 0, len(s.names)+1)}
		for n, x := range s.names {
			if n != b.Name {
				d.Bindings = append(d.Bindings, x)
			}
		}
		if bound {
			d.Bindings = append(d.Bindings, b)
		}
		dirErr, err := saveData(s.cfg.DataFile, d)
		if err != nil {
			return err
		}
		if dirErr != nil {
			s.log.Warn().Err(dirErr).Str("file", s.cfg.DataFile).Msg("data file written, but its directory could not be synced: a crash now may lose this write")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index = b.Version
	if bound {
		s.names[b.Name] = b
	} else {
		delete(s.names, b.Name)
		s.tombs.add(b.Name, b.Version)
	}
	if ws := s.waits[b.Name]; ws != nil {
		close(ws.ch)
		delete(s.waits, b.Name)
	}
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// writeBinding answers with b as the body and index in IndexHeader.
func writeBinding(w http.ResponseWriter, status int, b Binding, index uint64) {
	w.Header().Set(IndexHeader, strconv.FormatUint(index, 10))
	writeJSON(w, status, b)
}

// errorBody is the body of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // a cached answer would hide a move
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // a client gone is no error of ours
}

// message is err's text for an answer's body, without the package prefix: the client puts
// its own sentinel's in front.
func message(err error) string {
	return strings.TrimPrefix(err.Error(), "ftsl: naming: ")
}
