package core

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/internal/testkit"
)

// transports are the kinds of connection every basic session test runs over.
var transports = []string{"tcp", "pipe", "tls"}

func testCtx(t testing.TB) context.Context { return testkit.Ctx(t) }

// pair is a connected session and the listener that accepted its server end.
type pair struct {
	client, server *Session
	ln             *Listener
}

// newPair opens a session over the named transport. clientCfg and serverCfg are completed with
// what the transport needs (dialer, TLS). The sessions are aborted and checked for leaks when the
// test ends.
func newPair(t testing.TB, transport string, clientCfg, serverCfg Config) pair {
	t.Helper()
	ctx := testCtx(t)
	base := runtime.NumGoroutine()
	var nl net.Listener
	switch transport {
	case "tcp", "tls":
		var err error
		nl, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if transport == "tls" {
			serverCfg.TLS, clientCfg.TLS = testTLS(t)
		}
	case "pipe":
		pl := newPipeListener()
		nl = pl
		clientCfg.Dial = pl.dial
	default:
		t.Fatalf("unknown transport %q", transport)
	}
	ln, err := NewListener(nl, serverCfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(ctx, nl.Addr().String(), clientCfg)
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	s, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Abort()
		_ = ln.Close()
		waitDone(t, c, s)
		checkGoroutines(t, base)
	})
	return pair{client: c, server: s, ln: ln}
}

// waitDone waits for sessions to end and their goroutines to return.
func waitDone(t testing.TB, ss ...*Session) {
	t.Helper()
	for _, s := range ss {
		select {
		case <-s.Done():
		case <-time.After(10 * time.Second):
			t.Errorf("session %d did not finish: state %v", s.ID(), s.State())
		}
	}
}

func checkGoroutines(t testing.TB, base int) { t.Helper(); testkit.CheckGoroutines(t, base) }

// pipeListener is a net.Listener whose connections are net.Pipe pairs.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (p *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.closed:
		return nil, net.ErrClosed
	}
}

func (p *pipeListener) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

func (p *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (p *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	a, b := net.Pipe()
	select {
	case p.conns <- b:
		return a, nil
	case <-p.closed:
		return nil, errors.New("pipe listener closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

var (
	tlsOnce              sync.Once
	tlsServer, tlsClient *tls.Config
)

// testTLS returns a server and a client config sharing a self-signed certificate for 127.0.0.1.
func testTLS(t testing.TB) (server, client *tls.Config) {
	tlsOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: "ftsl test"},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(24 * time.Hour),
			IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
			DNSNames:              []string{"pipe"},
			KeyUsage:              x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		cert, _ := x509.ParseCertificate(der)
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		tlsServer = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
		tlsClient = &tls.Config{RootCAs: pool, ServerName: "pipe"}
	})
	return tlsServer, tlsClient
}

// payload returns a message whose bytes are derived from (seed, i) and whose length is n, so a
// receiver can check content without keeping copies.
func payload(seed, i uint64, n int) []byte {
	b := make([]byte, n)
	fillPayload(b, seed, i)
	return b
}

func fillPayload(b []byte, seed, i uint64) { testkit.Fill(b, seed, i) }

// checkPayload reports how m differs from payload(seed, i, len).
func checkPayload(m []byte, seed, i uint64, n int) error {
	if len(m) != n {
		return fmt.Errorf("message %d: %d bytes, want %d", i, len(m), n)
	}
	want := payload(seed, i, n)
	if !bytes.Equal(m, want) {
		k := 0
		for k < n && m[k] == want[k] {
			k++
		}
		return fmt.Errorf("message %d: byte %d differs", i, k)
	}
	return nil
}

// recorder is an Observer that keeps everything it hears.
type recorder struct {
	mu       sync.Mutex
	progress Progress
	failed   map[uint64]string
	states   []State
	errs     []error
	order    []string
	changed  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{failed: map[uint64]string{}, changed: make(chan struct{}, 1)}
}

func (r *recorder) Progress(p Progress) {
	r.mu.Lock()
	if p.Acked < r.progress.Acked || p.Delivered < r.progress.Delivered || p.Processed < r.progress.Processed {
		r.order = append(r.order, fmt.Sprintf("BACKWARDS %+v after %+v", p, r.progress))
	}
	r.progress = p
	r.order = append(r.order, fmt.Sprintf("progress %d/%d/%d", p.Acked, p.Delivered, p.Processed))
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) Failed(mid uint64, reason string) {
	r.mu.Lock()
	if _, dup := r.failed[mid]; dup {
		r.order = append(r.order, fmt.Sprintf("DUPLICATE failed %d", mid))
	}
	if r.progress.Processed >= mid {
		r.order = append(r.order, fmt.Sprintf("LATE failed %d after processed %d", mid, r.progress.Processed))
	}
	r.failed[mid] = reason
	r.order = append(r.order, fmt.Sprintf("failed %d", mid))
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) StateChanged(st State, err error) {
	r.mu.Lock()
	r.states = append(r.states, st)
	r.errs = append(r.errs, err)
	r.order = append(r.order, "state "+st.String())
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// await waits until cond holds for the recorder's state, or ctx ends.
func (r *recorder) await(ctx context.Context, cond func(r *recorder) bool) error {
	for {
		r.mu.Lock()
		ok := cond(r)
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-r.changed:
		case <-ctx.Done():
			r.mu.Lock()
			defer r.mu.Unlock()
			return fmt.Errorf("%w; recorder saw: %s", ctx.Err(), strings.Join(r.order, ", "))
		}
	}
}

// anomalies lists what the recorder saw that must never happen.
func (r *recorder) anomalies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.order {
		if strings.HasPrefix(s, "BACKWARDS") || strings.HasPrefix(s, "DUPLICATE") || strings.HasPrefix(s, "LATE") {
			out = append(out, s)
		}
	}
	return out
}

// pingPong runs n request-reply exchanges over p: the client sends, the server answers.
func pingPong(t *testing.T, ctx context.Context, p pair, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		for _, step := range [][2]*Session{{p.client, p.server}, {p.server, p.client}} {
			if _, err := step[0].Send(ctx, []byte("ping"), AckNone); err != nil {
				t.Fatal(err)
			}
			m, err := step[1].Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = step[1].Settle(m.ID, nil)
		}
	}
}
