package authfile

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ftsl-go/ftsl/pubsub"
)

func mustHash(t *testing.T, password string) string {
	t.Helper()
	h, err := HashPassword(password, MinIterations) // the fewest allowed: tests stay fast
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func sha(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

// goodFile has one user of every kind.
func goodFile(t *testing.T) string {
	return fmt.Sprintf(`{
  "users": [
    {"user": "alice", "password_hash": %q,
     "publish": {"allow": ["orders.>"], "deny": ["orders.secret"]},
     "subscribe": {"allow": ["updates.*"]}},
    {"user": "bob", "password": "bob-pw", "identity": "builder"},
    {"token": "tok-reports", "identity": "reports", "publish": {"deny": [">"]}},
    {"token_sha256": %q, "identity": "billing"},
    {"certificate_cn": "sensor-17", "publish": {"allow": ["sensors.17.>"]}}
  ],
  "anonymous": {"subscribe": {"allow": ["public.>"]}, "publish": {"deny": [">"]}}
}`, mustHash(t, "alice-pw"), sha("tok-billing"))
}

func parse(t *testing.T, content string, mode os.FileMode) *File {
	t.Helper()
	f, err := Parse("auth.json", []byte(content), mode, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// withCert is a TLS state whose verified chain starts with a certificate for cn.
func withCert(cn string, verified bool) *tls.ConnectionState {
	c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}}
	st := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}
	if verified {
		st.VerifiedChains = [][]*x509.Certificate{{c}}
	}
	return st
}

func cred(token, user, password string) pubsub.ConnectInfo {
	return pubsub.ConnectInfo{Name: "self-named", Credential: pubsub.Credential{Token: token, User: user, Password: password}}
}

func TestAuthenticate(t *testing.T) {
	f := parse(t, goodFile(t), 0o600)
	if f.Users() != 5 || !f.UsesCertificates() {
		t.Fatalf("Users %d, UsesCertificates %v; want 5, true", f.Users(), f.UsesCertificates())
	}
	anon := pubsub.Permissions{Publish: pubsub.Rules{Deny: []string{">"}}, Subscribe: pubsub.Rules{Allow: []string{"public.>"}}}
	for _, tc := range []struct {
		name string
		info pubsub.ConnectInfo
		want pubsub.Permissions
	}{
		{"password hash", cred("", "alice", "alice-pw"), pubsub.Permissions{Identity: "alice",
			Publish:   pubsub.Rules{Allow: []string{"orders.>"}, Deny: []string{"orders.secret"}},
			Subscribe: pubsub.Rules{Allow: []string{"updates.*"}}}},
		{"plain password", cred("", "bob", "bob-pw"), pubsub.Permissions{Identity: "builder"}},
		{"plain token", cred("tok-reports", "", ""), pubsub.Permissions{Identity: "reports",
			Publish: pubsub.Rules{Deny: []string{">"}}}},
		{"token sha256", cred("tok-billing", "", ""), pubsub.Permissions{Identity: "billing"}},
		{"certificate", pubsub.ConnectInfo{TLS: withCert("sensor-17", true)}, pubsub.Permissions{Identity: "sensor-17",
			Publish: pubsub.Rules{Allow: []string{"sensors.17.>"}}}},
		{"nothing", pubsub.ConnectInfo{Name: "guest"}, anon},
		{"unverified certificate", pubsub.ConnectInfo{TLS: withCert("sensor-17", false)}, anon},
		{"unknown certificate", pubsub.ConnectInfo{TLS: withCert("sensor-99", true)}, anon},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := f.Authenticate(context.Background(), tc.info)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%+v", *p) != fmt.Sprintf("%+v", tc.want) {
				t.Errorf("got  %+v\nwant %+v", *p, tc.want)
			}
		})
	}
}

func TestAuthenticateRefuses(t *testing.T) {
	f := parse(t, goodFile(t), 0o600)
	for _, tc := range []struct {
		name string
		info pubsub.ConnectInfo
	}{
		{"wrong token", cred("tok-reportz", "", "")},
		{"token's digest as the token", cred(sha("tok-billing"), "", "")},
		{"wrong hashed password", cred("", "alice", "alice-pwd")},
		{"wrong plain password", cred("", "bob", "bob")},
		{"empty password", cred("", "bob", "")},
		{"unknown user", cred("", "carol", "bob-pw")},
		{"token and user", cred("tok-reports", "bob", "bob-pw")},
		{"password without user", cred("", "", "bob-pw")},
		{"certificate CN as a user", cred("", "sensor-17", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := f.Authenticate(context.Background(), tc.info)
			if !errors.Is(err, ErrBadCredential) {
				t.Errorf("got %+v, %v; want ErrBadCredential", p, err)
			}
		})
	}

	noAnon := parse(t, `{"users": [{"token": "t", "identity": "i"}, {"certificate_cn": "a"}]}`, 0o600)
	for _, info := range []pubsub.ConnectInfo{{}, {TLS: withCert("b", true)}, {TLS: withCert("a", false)}} {
		if p, err := noAnon.Authenticate(context.Background(), info); !errors.Is(err, ErrNoCredential) {
			t.Errorf("%+v: got %+v, %v; want ErrNoCredential", info.TLS, p, err)
		}
	}
}

// TestConstantTimeCompare checks that every secret goes through the constant-time compare, and
// that a token is compared with every token user's, not only up to the one that matches.
func TestConstantTimeCompare(t *testing.T) {
	f := parse(t, goodFile(t), 0o600)
	if reflect.ValueOf(equal).Pointer() != reflect.ValueOf(subtle.ConstantTimeCompare).Pointer() {
		t.Fatal("equal is not subtle.ConstantTimeCompare")
	}
	saved := equal
	t.Cleanup(func() { equal = saved })
	calls := 0
	equal = func(x, y []byte) int { calls++; return saved(x, y) }
	for _, tc := range []struct {
		info  pubsub.ConnectInfo
		calls int
	}{
		{cred("tok-reports", "", ""), 2}, // the first token user matches; the second is compared too
		{cred("nope", "", ""), 2},
		{cred("", "alice", "alice-pw"), 1},
		{cred("", "bob", "wrong"), 1},
		{cred("", "carol", "x"), 1}, // an unknown user is checked against the decoy
	} {
		calls = 0
		_, _ = f.Authenticate(context.Background(), tc.info)
		if calls != tc.calls {
			t.Errorf("%+v: %d constant-time compares, want %d", tc.info.Credential, calls, tc.calls)
		}
	}
}

// TestDecoyCostsAHash checks that an unknown user is checked against a password hash as costly
// as the file's, so that timing does not tell which users exist.
func TestDecoyCostsAHash(t *testing.T) {
	f := parse(t, goodFile(t), 0o600)
	if f.decoy.hash == nil || f.decoy.hash.iter != MinIterations {
		t.Fatalf("decoy %+v, want a hash of %d iterations", f.decoy, MinIterations)
	}
	plain := parse(t, `{"users": [{"user": "a", "password": "p"}]}`, 0o600)
	if plain.decoy.hash != nil || len(plain.decoy.digest) != sha256.Size {
		t.Fatalf("decoy %+v, want a plain digest", plain.decoy)
	}
}

// TestAuthenticateWaitsWithContext checks that a login waiting for a derivation slot gives up
// when its context ends.
func TestAuthenticateWaitsWithContext(t *testing.T) {
	f := parse(t, goodFile(t), 0o600)
	for range cap(f.slots) {
		f.slots <- struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Authenticate(ctx, cred("", "alice", "alice-pw")); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, err := f.Authenticate(ctx, cred("", "bob", "bob-pw")); err != nil {
		t.Fatalf("a plain password needs no slot: %v", err)
	}
}

func TestParseBad(t *testing.T) {
	hash := mustHash(t, "pw")
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		opts          Options
		want          string
	}{
		{"not an object", `[1]`, 0o600, Options{}, "auth.json:1: the file: want a JSON object"},
		{"syntax", "{\n\"users\": [\n {\"user\": \"a\",, }\n]}", 0o600, Options{}, "auth.json:3: invalid character ','"},
		{"truncated", "{\"users\": [\n", 0o600, Options{}, "auth.json:2: the file ends too early"},
		{"unknown key", "{\n  \"user\": []\n}", 0o600, Options{}, `auth.json:2: "user": unknown field`},
		{"users twice", "{\"users\": [{\"user\": \"a\", \"password\": \"p\"}],\n\"users\": []}", 0o600, Options{}, `auth.json:2: users: given twice`},
		{"users not a list", `{"users": {}}`, 0o600, Options{}, "auth.json:1: users: want a list"},
		{"unknown user field", "{\"users\": [\n{\"user\": \"a\", \"password\": \"p\"},\n{\"user\": \"b\", \"passwd\": \"p\"}]}", 0o600, Options{},
			`auth.json:3: users[1]: unknown field "passwd"`},
		{"wrong type", "{\"users\": [\n{\"user\": 3}]}", 0o600, Options{}, "auth.json:2: users[0].user: got a JSON number, want string"},
		{"wrong nested type", "{\"users\": [\n{\"token\": \"t\", \"identity\": \"i\", \"publish\": {\"allow\": [1]}}]}", 0o600, Options{},
			"auth.json:2: users[0].publish.allow: got a JSON number, want string"},
		{"two ways in", `{"users": [{"user": "a", "password": "p", "token": "t"}]}`, 0o600, Options{}, "users[0]: want exactly one of"},
		{"no way in", `{"users": [{"identity": "i"}]}`, 0o600, Options{}, "users[0]: want exactly one of"},
		{"null user", `{"users": [null]}`, 0o600, Options{}, "users[0]: want exactly one of"},
		{"password without user", `{"users": [{"token": "t", "identity": "i", "password": "p"}]}`, 0o600, Options{}, "users[0]: a password goes with a user"},
		{"user without password", `{"users": [{"user": "a"}]}`, 0o600, Options{}, `users[0]: user "a" wants one of password, password_hash`},
		{"user with both", `{"users": [{"user": "a", "password": "p", "password_hash": "` + hash + `"}]}`, 0o600, Options{}, `wants one of password, password_hash`},
		{"plain password, readable", `{"users": [{"user": "a", "password": "p"}]}`, 0o644, Options{},
			"users[0].password: a plain secret needs a file only its owner can read (chmod 600), and this one is -rw-r--r--; or use password_hash"},
		{"plain token, group-readable", `{"users": [{"token": "t", "identity": "i"}]}`, 0o640, Options{}, "users[0].token: a plain secret needs"},
		{"token without identity", `{"users": [{"token_sha256": "` + sha("t") + `"}]}`, 0o644, Options{}, "users[0].identity: a token user needs one"},
		{"bad token digest", `{"users": [{"token_sha256": "abc", "identity": "i"}]}`, 0o644, Options{}, "users[0].token_sha256: want 64 hex digits"},
		{"bad hash scheme", `{"users": [{"user": "a", "password_hash": "bcrypt$x"}]}`, 0o644, Options{}, "users[0].password_hash: want pbkdf2-sha256$"},
		{"weak hash", `{"users": [{"user": "a", "password_hash": "pbkdf2-sha256$1000$c2FsdHNhbHQ$` + strings.Repeat("A", 43) + `"}]}`, 0o644, Options{},
			`users[0].password_hash: iterations "1000": want a number in [10000, 10000000]`},
		{"bad salt", `{"users": [{"user": "a", "password_hash": "pbkdf2-sha256$10000$!!$` + strings.Repeat("A", 43) + `"}]}`, 0o644, Options{},
			"users[0].password_hash: salt:"},
		{"duplicate user", "{\"users\": [\n{\"user\": \"a\", \"password_hash\": \"" + hash + "\"},\n{\"user\": \"a\", \"password_hash\": \"" + hash + "\"}]}", 0o644, Options{},
			`auth.json:3: users[1].user: "a" already given in users[0] (line 2)`},
		{"duplicate token", "{\"users\": [\n{\"token\": \"t\", \"identity\": \"i\"},\n{\"token_sha256\": \"" + sha("t") + "\", \"identity\": \"j\"}]}", 0o600, Options{},
			"auth.json:3: users[1]: same token as users[0] (line 2)"},
		{"duplicate certificate", `{"users": [{"certificate_cn": "c"}, {"certificate_cn": "c"}]}`, 0o644, Options{},
			`users[1].certificate_cn: "c" already given in users[0]`},
		{"bad pattern", `{"users": [{"certificate_cn": "c", "subscribe": {"deny": ["a..b"]}}]}`, 0o644, Options{}, "users[0].subscribe: invalid subject: pattern \"a..b\""},
		{"pattern too long", `{"users": [{"certificate_cn": "c", "publish": {"allow": ["abcdefghi"]}}]}`, 0o644, Options{MaxSubjectLength: 8},
			"users[0].publish: invalid subject"},
		{"bad anonymous pattern", "{\n\"anonymous\": {\"publish\": {\"allow\": [\"a.>.b\"]}}}", 0o644, Options{}, "auth.json:2: anonymous.publish:"},
		{"null anonymous", `{"anonymous": null}`, 0o644, Options{}, "anonymous: want an object"},
		{"nobody", `{"users": []}`, 0o644, Options{}, "auth.json: no users and no anonymous entry"},
		{"trailing data", "{\"anonymous\": {}}\n{}", 0o644, Options{}, "auth.json:2: something after the closing }"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("auth.json", []byte(tc.content), tc.mode, tc.opts)
			if err == nil {
				t.Fatalf("accepted: %+v", f)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not match ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub-auth.json")
	if err := os.WriteFile(path, []byte(`{"users": [{"user": "a", "password": "p"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := f.Authenticate(context.Background(), cred("", "a", "p")); err != nil || p.Identity != "a" {
		t.Fatalf("got %+v, %v", p, err)
	}
	if err := os.Chmod(path, 0o604); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, Options{}); err == nil || !strings.Contains(err.Error(), path+":1: users[0].password: a plain secret") {
		t.Fatalf("a world-readable plain password: got %v", err)
	}
	if _, err := Load(path+".missing", Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing file: got %v", err)
	}
}

func TestHashPassword(t *testing.T) {
	a, b := mustHash(t, "pw"), mustHash(t, "pw")
	if a == b || !strings.HasPrefix(a, "pbkdf2-sha256$10000$") {
		t.Fatalf("hashes %q and %q: want distinct salts, the scheme and the iterations", a, b)
	}
	f := parse(t, `{"users": [{"user": "u", "password_hash": "`+a+`"}]}`, 0o644)
	if _, err := f.Authenticate(context.Background(), cred("", "u", "pw")); err != nil {
		t.Fatal(err)
	}
	for _, iter := range []int{MinIterations - 1, MaxIterations + 1, -1} {
		if h, err := HashPassword("pw", iter); err == nil {
			t.Errorf("iterations %d: got %q", iter, h)
		}
	}
	if h, err := HashPassword("", 0); err == nil {
		t.Errorf("empty password: got %q", h)
	}
}
