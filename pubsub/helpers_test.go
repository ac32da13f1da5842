package pubsub

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub/internal/wire"
)

// eventLog records the events of a hub or client, for tests to wait on and count.
type eventLog struct {
	mu      sync.Mutex
	evs     []events.Event
	changed chan struct{} // closed and replaced on every event
}

func watchEvents(onEvent func(func(events.Event))) *eventLog {
	l := &eventLog{changed: make(chan struct{})}
	onEvent(func(e events.Event) {
		l.mu.Lock()
		l.evs = append(l.evs, e)
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
	})
	return l
}

// all returns the events of kind on subject ("" for any subject) so far.
func (l *eventLog) all(kind events.Kind, subject string) []events.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []events.Event
	for _, e := range l.evs {
		if e.Kind == kind && (subject == "" || e.Subject == subject) {
			out = append(out, e)
		}
	}
	return out
}

// wait waits until kind on subject has been seen n times, and returns those events.
func (l *eventLog) wait(t testing.TB, kind events.Kind, subject string, n int) []events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		l.mu.Lock()
		ch := l.changed
		l.mu.Unlock()
		if evs := l.all(kind, subject); len(evs) >= n {
			return evs
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("waited for %d %v events on %q; have %v", n, kind, subject, l.all(kind, subject))
		}
	}
}

// barrier makes c subscribe to a subject of its own and waits until h's log has seen it: the
// hub's events come in order, so every event raised before is in the log then.
func barrier(t testing.TB, hubLog *eventLog, c *Client) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	subject := "barrier." + hex.EncodeToString(b[:])
	sub, err := c.Subscribe(subject, func(context.Context, *Msg) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	hubLog.wait(t, events.Subscribed, subject, 1)
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
}

// rawClient is a oneway session to a hub that speaks the pubsub protocol by hand, or not at all.
type rawClient struct {
	s     *oneway.Session
	inbox string
}

// rawDial opens a raw session to h, aborted when the test ends.
func rawDial(t testing.TB, h *testedHub, cfg oneway.Config) *rawClient {
	t.Helper()
	s, err := oneway.Dial(testCtx(t), h.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Abort(); <-s.Done() })
	var id [12]byte
	_, _ = rand.Read(id[:])
	return &rawClient{s: s, inbox: inboxPrefix + hex.EncodeToString(id[:])}
}

// ask sends b asking for AckProcessed and returns what the hub answered: nil (confirmed) or
// its refusal as the client would read it.
func (r *rawClient) ask(t testing.TB, b []byte) error {
	t.Helper()
	tk, err := r.s.Send(testCtx(t), b, oneway.AckProcessed)
	if err != nil {
		t.Fatal(err)
	}
	st, err := tk.Wait(testCtx(t))
	if st != oneway.StatusProcessed && err == nil {
		t.Fatalf("ticket ended %v without an error", st)
	}
	return ticketError(err)
}

// connect sends a valid CONNECT and fails the test unless the hub accepts it.
func (r *rawClient) connect(t testing.TB, name string) {
	t.Helper()
	if err := r.ask(t, wire.AppendConnect(nil, wire.Connect{Version: wire.Version, Name: name, Inbox: r.inbox})); err != nil {
		t.Fatalf("raw CONNECT: %v", err)
	}
}

var (
	tlsOnce              sync.Once
	tlsServer, tlsClient *tls.Config
)

// testTLS returns a server and a client config sharing one self-signed certificate for
// 127.0.0.1 (core's test helper): the client presents it too, for mutual TLS.
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
			KeyUsage:              x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
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
		tlsClient = &tls.Config{RootCAs: pool}
	})
	return tlsServer.Clone(), tlsClient.Clone()
}
