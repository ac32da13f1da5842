//go:build unix

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/testkit"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub"
	"github.com/ftsl-go/ftsl/pubsub/internal/authfile"
)

// TestCommand builds ftsl-hub and runs it as a user would: flags, files, signals, exit status.
func TestCommand(t *testing.T) {
	bin := testkit.Build(t, ".")
	t.Run("AuthFile", func(t *testing.T) { testAuthFile(t, bin) })
	t.Run("MutualTLS", func(t *testing.T) { testMutualTLS(t, bin) })
	t.Run("ShutdownCutShort", func(t *testing.T) { testShutdownCutShort(t, bin) })
	t.Run("BadSetup", func(t *testing.T) { testBadSetup(t, bin) })
	t.Run("Help", func(t *testing.T) { testHelp(t, bin) })
	t.Run("HashPassword", func(t *testing.T) { testHashPassword(t, bin) })
}

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

// hubLimit bounds every wait for the hub. It stays short of a minute so that a second SIGTERM
// that did not cut the shutdown short cannot pass for one that did (-shutdown-timeout 1m).
const hubLimit = 10 * time.Second

// hubProc is a running ftsl-hub.
type hubProc struct {
	*testkit.Proc
	addr string
}

// startHub runs the binary on a free loopback port and returns once it printed its address. The
// process is killed when the test ends, if it still runs.
func startHub(t *testing.T, bin string, args ...string) *hubProc {
	t.Helper()
	args = append([]string{"-listen", "127.0.0.1:0", "-log", "debug", "-log-format", "json"}, args...)
	h := &hubProc{Proc: testkit.Start(t, bin, args...)}
	h.SetLimit(hubLimit)
	h.Until(t, "printing its address", func(out, _ []string) bool { return len(out) > 0 })
	line := h.Stdout()[0]
	addr, ok := strings.CutPrefix(line, "ftsl-hub listening on ")
	if !ok {
		t.Fatalf("first line on stdout %q, want \"ftsl-hub listening on ADDR\"", line)
	}
	h.addr = addr
	if _, err := net.ResolveTCPAddr("tcp", h.addr); err != nil || strings.HasSuffix(h.addr, ":0") {
		t.Fatalf("ftsl-hub printed address %q: %v", h.addr, err)
	}
	return h
}

// waitLog waits for a line of stderr that contains s.
func (h *hubProc) waitLog(t *testing.T, s string) {
	t.Helper()
	h.Until(t, fmt.Sprintf("logging %q", s), func(_, errs []string) bool {
		return slices.ContainsFunc(errs, func(l string) bool { return strings.Contains(l, s) })
	})
}

// dial connects a client to the hub; the test ends by aborting it, if it still lives.
func dial(t *testing.T, addr string, cfg pubsub.Config) (*pubsub.Client, error) {
	t.Helper()
	c, err := pubsub.Dial(testkit.Ctx(t), addr, cfg)
	if err == nil {
		t.Cleanup(func() { c.Abort(); <-c.Done() })
	}
	return c, err
}

func mustDial(t *testing.T, addr string, cfg pubsub.Config) *pubsub.Client {
	t.Helper()
	c, err := dial(t, addr, cfg)
	if err != nil {
		t.Fatalf("%s: %v", cfg.Name, err)
	}
	return c
}

func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// collect subscribes c to pattern and sends what arrives, as "subject=data from publisher", to
// the returned channel.
func collect(t *testing.T, c *pubsub.Client, pattern string) <-chan string {
	t.Helper()
	got := make(chan string, 16)
	if _, err := c.Subscribe(pattern, func(_ context.Context, m *pubsub.Msg) error {
		got <- fmt.Sprintf("%s=%s from %s", m.Subject, m.Data, m.Publisher)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// publish publishes at AckProcessed and waits for the outcome.
func publish(t *testing.T, c *pubsub.Client, subject, data string) (pubsub.Outcome, error) {
	t.Helper()
	ctx := testkit.Ctx(t)
	tk, err := c.Publish(ctx, subject, []byte(data), pubsub.AckProcessed)
	if err != nil {
		return pubsub.Outcome{}, err
	}
	return tk.Wait(ctx)
}

func expect(t *testing.T, got <-chan string, want string) {
	t.Helper()
	select {
	case g := <-got:
		if g != want {
			t.Errorf("subscriber got %q, want %q", g, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("subscriber got nothing, want %q", want)
	}
}

// checkEnded waits for the clients to end (the hub closed their sessions) and for the test's
// goroutines to come back to base.
func checkEnded(t *testing.T, base int, clients ...*pubsub.Client) {
	t.Helper()
	for _, c := range clients {
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("a client still runs 10 s after the hub closed")
		}
		if err := c.Err(); !errors.Is(err, pubsub.ErrSessionClosed) {
			t.Errorf("client ended with %v, want ErrSessionClosed", err)
		}
	}
	testkit.CheckGoroutines(t, base)
}

func testAuthFile(t *testing.T, bin string) {
	base := runtime.NumGoroutine()
	bobHash, err := authfile.HashPassword("bob-pw", authfile.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	auth := writeFile(t, "auth.json", `{"users": [
  {"user": "alice", "password": "alice-pw", "subscribe": {"allow": ["orders.>"]}, "publish": {"deny": [">"]}},
  {"user": "bob", "password_hash": "`+bobHash+`", "publish": {"allow": ["orders.*"], "deny": ["orders.secret"]}},
  {"token": "svc-token", "identity": "svc"}
]}`, 0o600)
	h := startHub(t, bin, "-auth", auth)
	h.waitLog(t, `"users":3`)

	alice := mustDial(t, h.addr, pubsub.Config{Name: "a", Credential: pubsub.Credential{User: "alice", Password: "alice-pw"}})
	bob := mustDial(t, h.addr, pubsub.Config{Name: "b", Credential: pubsub.Credential{User: "bob", Password: "bob-pw"}})
	svc := mustDial(t, h.addr, pubsub.Config{Name: "pretends-to-be-bob", Credential: pubsub.Credential{Token: "svc-token"}})
	got := collect(t, alice, "orders.>")

	out, err := publish(t, bob, "orders.new", "1")
	if err != nil || out.Matched != 1 || out.Processed != 1 {
		t.Fatalf("bob publishes orders.new: %+v, %v; want 1 matched and processed", out, err)
	}
	expect(t, got, "orders.new=1 from bob")
	if _, err := publish(t, svc, "orders.eu.new", "2"); err != nil {
		t.Fatal(err)
	}
	expect(t, got, "orders.eu.new=2 from svc") // the token's identity, not the name it gave

	for _, tc := range []struct {
		who     string
		c       *pubsub.Client
		subject string
	}{{"bob", bob, "orders.secret"}, {"bob", bob, "orders.eu.new"}, {"alice", alice, "orders.new"}} {
		if _, err := publish(t, tc.c, tc.subject, "x"); !errors.Is(err, pubsub.ErrPermission) {
			t.Errorf("%s publishes %s: %v, want ErrPermission", tc.who, tc.subject, err)
		}
	}
	if _, err := alice.Subscribe("admin.>", func(context.Context, *pubsub.Msg) error { return nil }); !errors.Is(err, pubsub.ErrPermission) {
		t.Errorf("alice subscribes admin.>: %v, want ErrPermission", err)
	}
	for _, cred := range []pubsub.Credential{
		{User: "alice", Password: "bob-pw"}, {User: "bob", Password: "alice-pw"}, {User: "mallory", Password: "x"},
		{Token: "svc-tokem"}, {},
	} {
		if _, err := dial(t, h.addr, pubsub.Config{Name: "m", Credential: cred}); !errors.Is(err, pubsub.ErrPermission) {
			t.Errorf("%+v connects: %v; want ErrPermission", cred, err)
		}
	}
	h.waitLog(t, `"event":"permission denied"`)

	h.Signal(t, syscall.SIGTERM)
	if code := h.Wait(t); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0", code)
	}
	if !strings.Contains(h.Err(), `"message":"hub closed"`) {
		t.Error("no \"hub closed\" in the log")
	}
	checkEnded(t, base, alice, bob, svc)
}

func testMutualTLS(t *testing.T, bin string) {
	base := runtime.NumGoroutine()
	pki := newPKI(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "hub.pem"), filepath.Join(dir, "hub-key.pem")
	pki.write(t, caFile, "", pki.ca)
	pki.write(t, certFile, keyFile, pki.issue(t, "hub", true))
	// No plain secret: a world-readable file is fine.
	auth := writeFile(t, "auth.json", `{"users": [{"certificate_cn": "sensor-17", "publish": {"allow": ["sensors.>"]}}]}`, 0o644)
	h := startHub(t, bin, "-auth", auth, "-tls-cert", certFile, "-tls-key", keyFile, "-tls-client-ca", caFile)

	withCert := func(cert *tls.Certificate) pubsub.Config {
		tc := &tls.Config{RootCAs: pki.pool}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		return pubsub.Config{Name: "s", Session: oneway.Config{Core: core.Config{TLS: tc}}}
	}
	sensor := mustDial(t, h.addr, withCert(pki.issue(t, "sensor-17", false)))
	got := collect(t, sensor, "sensors.>")
	if out, err := publish(t, sensor, "sensors.17.temp", "21"); err != nil || out.Processed != 1 {
		t.Fatalf("publish: %+v, %v", out, err)
	}
	expect(t, got, "sensors.17.temp=21 from sensor-17")
	if _, err := publish(t, sensor, "orders.new", "x"); !errors.Is(err, pubsub.ErrPermission) {
		t.Errorf("sensor publishes orders.new: %v, want ErrPermission", err)
	}
	if _, err := dial(t, h.addr, withCert(pki.issue(t, "stranger", false))); !errors.Is(err, pubsub.ErrPermission) {
		t.Errorf("an unmapped certificate connects: %v; want ErrPermission", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c, err := pubsub.Dial(ctx, h.addr, withCert(nil)); err == nil {
		c.Abort()
		t.Error("a client without a certificate connected")
	}

	h.Signal(t, syscall.SIGINT)
	if code := h.Wait(t); code != 0 {
		t.Fatalf("exit status %d after SIGINT, want 0", code)
	}
	checkEnded(t, base, sensor)
}

// testShutdownCutShort holds a message unconfirmed, so that the hub's graceful close cannot
// finish: a second signal, or the timeout, must end it, with exit status 1.
func testShutdownCutShort(t *testing.T, bin string) {
	for _, tc := range []struct {
		name  string
		args  []string
		twice bool
		log   string
	}{
		{"second signal", []string{"-shutdown-timeout", "1m"}, true, "second signal"},
		{"timeout", []string{"-shutdown-timeout", "300ms"}, false, "shutdown cut short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHub(t, bin, tc.args...)
			sub := mustDial(t, h.addr, pubsub.Config{Name: "sub"})
			pub := mustDial(t, h.addr, pubsub.Config{Name: "pub"})
			held := make(chan *pubsub.Msg, 1)
			if _, err := sub.SubscribeChan("jobs", held); err != nil {
				t.Fatal(err)
			}
			if _, err := pub.Publish(testkit.Ctx(t), "jobs", []byte("j"), pubsub.AckProcessed); err != nil {
				t.Fatal(err)
			}
			select {
			case <-held: // taken, and never confirmed
			case <-time.After(10 * time.Second):
				t.Fatal("the subscriber got nothing")
			}
			h.Signal(t, syscall.SIGTERM)
			h.waitLog(t, "shutting down")
			if tc.twice {
				h.Signal(t, syscall.SIGTERM)
			}
			if code := h.Wait(t); code != 1 {
				t.Fatalf("exit status %d, want 1", code)
			}
			h.waitLog(t, tc.log)
		})
	}
}

func testBadSetup(t *testing.T, bin string) {
	dir := t.TempDir()
	syntax := writeFile(t, "syntax.json", "{\"users\": [\n  {\"user\": \"a\",, \"password\": \"p\"}\n]}", 0o600)
	readable := writeFile(t, "readable.json", "{\"users\": [\n  {\"user\": \"a\", \"password\": \"p\"}\n]}", 0o644)
	certs := writeFile(t, "certs.json", `{"users": [{"certificate_cn": "c"}]}`, 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-auth", syntax}, syntax + ":2: invalid character ','"},
		{[]string{"-auth", readable}, readable + ":2: users[0].password: a plain secret needs a file only its owner can read (chmod 600)"},
		{[]string{"-auth", certs}, "maps client certificates (certificate_cn), which needs -tls-client-ca"},
		{[]string{"-auth", filepath.Join(dir, "missing.json")}, "no such file"},
		{[]string{"-slow", "sometimes"}, `-slow "sometimes": want fail or block`},
		{[]string{"-max-payload", "2GiB"}, "-max-payload"},
		{[]string{"-tls-client-ca", certs}, "-tls-client-ca needs -tls-cert"},
		{[]string{"-tls-cert", certs, "-tls-key", certs}, "-tls-cert " + certs},
		{[]string{"-log", "loud"}, `-log "loud"`},
		{[]string{"serve"}, `unexpected argument "serve"`},
		{[]string{"-nope"}, "flag provided but not defined: -nope (ftsl-hub -h lists the flags)"},
	} {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, append([]string{"-listen", "127.0.0.1:0"}, tc.args...)...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit status 2", tc.args, err)
		}
		if !strings.Contains(stderr.String(), tc.want) || stdout.Len() != 0 {
			t.Errorf("%v: stdout %q, stderr %q; want nothing on stdout and %q on stderr", tc.args, stdout.String(), stderr.String(), tc.want)
		}
	}
}

func testHelp(t *testing.T, bin string) {
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-h")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{`-listen address`, `(default "127.0.0.1:4300")`, "-max-payload size", "(default 1MiB)",
		"-shutdown-timeout duration", "(default 10s)", `-slow policy`, `(default "fail")`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("-h does not say %q:\n%s", want, stderr.String())
		}
	}
}

func testHashPassword(t *testing.T, bin string) {
	cmd := exec.Command(bin, "-hash-password", "-hash-iterations", "10000")
	cmd.Stdin = strings.NewReader("s3cret\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	hash := strings.TrimSpace(string(out))
	f, err := authfile.Parse("auth.json", []byte(`{"users": [{"user": "u", "password_hash": "`+hash+`"}]}`), 0o644, authfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for pw, ok := range map[string]bool{"s3cret": true, "s3cret\n": false} {
		_, err := f.Authenticate(context.Background(), pubsub.ConnectInfo{Credential: pubsub.Credential{User: "u", Password: pw}})
		if (err == nil) != ok {
			t.Errorf("password %q: %v", pw, err)
		}
	}
}

// pki is a throwaway certificate authority.
type pki struct {
	ca   *tls.Certificate
	pool *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &pki{ca: &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool: x509.NewCertPool()}
	p.pool.AddCert(cert)
	return p
}

// issue makes a certificate for cn: a server's for 127.0.0.1, or a client's.
func (p *pki) issue(t *testing.T, cn string, server bool) *tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca.Leaf, &key.PublicKey, p.ca.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// write saves c's certificate to certFile and, if keyFile is set, its key, in PEM.
func (p *pki) write(t *testing.T, certFile, keyFile string, c *tls.Certificate) {
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
	if err := os.WriteFile(certFile, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if keyFile == "" {
		return
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	_ = pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(keyFile, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}
