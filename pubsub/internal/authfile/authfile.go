// Package authfile reads the auth file of ftsl-hub: who may connect to the hub, with which
// credential, and what each may publish and subscribe to. A File's Authenticate is a
// pubsub.HubConfig.Authenticate.
//
// The file is JSON:
//
//	{
//	  "users": [
//	    {"user": "alice", "password_hash": "pbkdf2-sha256$600000$<salt>$<key>",
//	     "publish": {"allow": ["orders.>"], "deny": ["orders.secret"]},
//	     "subscribe": {"allow": ["updates.>"]}},
//	    {"user": "bob", "password": "plain text"},
//	    {"token_sha256": "<hex of SHA-256(token)>", "identity": "billing"},
//	    {"token": "plain text", "identity": "reports"},
//	    {"certificate_cn": "sensor-17", "publish": {"allow": ["sensors.17.>"]}}
//	  ],
//	  "anonymous": {"subscribe": {"allow": ["public.>"]}, "publish": {"deny": [">"]}}
//	}
//
// Each user has exactly one way in: a user name with a password or a password hash, a token or
// its SHA-256, or (under mutual TLS) the subject common name of a verified client certificate.
// "identity" names the client to others (the publisher of its messages); it defaults to the user
// name or the certificate's CN, and a token user must give one. "publish" and "subscribe" are
// pubsub.Rules: an empty allow list allows everything, deny wins. "anonymous", if present, is what
// a client that presents no credential may do; without it such a client is refused.
//
// Secrets. A plain "password" or "token" is accepted only in a file its owner alone may read
// (mode 0600 or stricter): anyone who reads the file has them. "password_hash" is PBKDF2 with
// SHA-256 (HashPassword, or ftsl-hub -hash-password): a stolen file then costs an attacker the
// iterations per guess, and the hub the same per login, bounded to half the CPUs at a time.
// "token_sha256" is a plain SHA-256, which is enough for a random token (it cannot be guessed,
// however fast the hash) and not for a password. Every secret is compared in constant time.
package authfile

import (
	"bytes"
	"cmp"
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/ftsl-go/ftsl/pubsub"
	"github.com/ftsl-go/ftsl/pubsub/internal/subjects"
)

// Limits and defaults of the file and its password hashes.
const (
	// MaxFileSize bounds the auth file: it is read whole.
	MaxFileSize = 16 << 20
	// DefaultIterations is what HashPassword uses when asked for 0: OWASP's 2023 advice for
	// PBKDF2-HMAC-SHA256. About 150 ms of one CPU per login.
	DefaultIterations = 600_000
	// MinIterations and MaxIterations bound a password hash's iterations: fewer protect too
	// little; more would let the file make every login cost seconds.
	MinIterations = 10_000
	MaxIterations = 10_000_000

	hashScheme = "pbkdf2-sha256"
	saltLen    = 16
	keyLen     = 32
)

var (
	// ErrInvalid is wrapped by every error about the file's content; the error names the line
	// and the field.
	ErrInvalid = errors.New("ftsl: invalid auth file")

	// ErrNoCredential refuses a client that presented no credential when the file has no
	// anonymous entry (or no user for its certificate).
	ErrNoCredential = errors.New("ftsl: a credential is required")

	// ErrBadCredential refuses a wrong token, an unknown user or a wrong password, without saying
	// which: that would tell a guesser which user names exist.
	ErrBadCredential = errors.New("ftsl: credential not accepted")
)

// equal compares two secrets' digests. It is a variable so that a test can check that every
// comparison goes through the constant-time compare.
var equal = subtle.ConstantTimeCompare

// Options tune how a file is read.
type Options struct {
	// MaxSubjectLength bounds the patterns in the file, as the hub's MaxSubjectLength does the
	// subjects it is given. Default pubsub.DefaultMaxSubjectLength.
	MaxSubjectLength int
}

// File is a loaded auth file. Its Authenticate may be called from any number of goroutines.
type File struct {
	tokens    []tokenUser
	users     map[string]*passUser
	certs     map[string]*pubsub.Permissions
	anonymous *pubsub.Permissions
	// decoy is checked when the user is unknown, so that an unknown user takes as long to
	// refuse as a wrong password.
	decoy passUser
	// slots bounds the password derivations running at once, so a flood of wrong passwords
	// leaves CPUs for routing.
	slots chan struct{}
}

type tokenUser struct {
	digest [sha256.Size]byte
	perms  *pubsub.Permissions
}

// passUser is a password check: a plain password's digest, or a PBKDF2 hash.
type passUser struct {
	digest []byte // SHA-256 of the plain password; nil with a hash
	hash   *passwordHash
	perms  *pubsub.Permissions
}

type passwordHash struct {
	iter      int
	salt, key []byte
}

// Users counts the file's entries, anonymous excluded.
func (f *File) Users() int { return len(f.tokens) + len(f.users) + len(f.certs) }

// UsesCertificates reports whether the file maps client certificates to users, which only
// mutual TLS can use.
func (f *File) UsesCertificates() bool { return len(f.certs) > 0 }

// Authenticate decides who the client is and returns its permissions, shared by every client of
// the same user: callers must not modify them. A token goes first, then a user and password,
// then, when the client presented neither, its verified certificate's CN, then the anonymous
// entry. A refusal is ErrBadCredential or ErrNoCredential, the text the client gets, or ctx's
// error if it ended while the password check waited for a CPU.
func (f *File) Authenticate(ctx context.Context, c pubsub.ConnectInfo) (*pubsub.Permissions, error) {
	switch {
	case c.Token != "":
		if c.User != "" || c.Password != "" {
			return nil, ftslerr.Errorf("%w: a token or a user and password, not both", ErrBadCredential)
		}
		return f.byToken(c.Token)
	case c.User != "":
		return f.byPassword(ctx, c.User, c.Password)
	case c.Password != "":
		return nil, ftslerr.Errorf("%w: a password needs a user", ErrBadCredential)
	}
	if cn, ok := verifiedCN(c.TLS); ok {
		if p := f.certs[cn]; p != nil {
			return p, nil
		}
	}
	if f.anonymous != nil {
		return f.anonymous, nil
	}
	return nil, ErrNoCredential
}

// byToken compares the token with every token user's, all of them, so that the time taken says
// nothing about which one matched or how close a guess came.
func (f *File) byToken(token string) (*pubsub.Permissions, error) {
	d := sha256.Sum256([]byte(token))
	var match *pubsub.Permissions
	for i := range f.tokens {
		if equal(d[:], f.tokens[i].digest[:]) == 1 {
			match = f.tokens[i].perms
		}
	}
	if match == nil {
		return nil, ErrBadCredential
	}
	return match, nil
}

func (f *File) byPassword(ctx context.Context, user, password string) (*pubsub.Permissions, error) {
	u, known := f.users[user]
	if !known {
		u = &f.decoy
	}
	ok, err := f.check(ctx, u, password)
	if err != nil {
		return nil, err
	}
	if !ok || !known {
		return nil, ErrBadCredential
	}
	return u.perms, nil
}

func (f *File) check(ctx context.Context, u *passUser, password string) (bool, error) {
	if u.hash == nil {
		d := sha256.Sum256([]byte(password))
		return equal(d[:], u.digest) == 1, nil
	}
	select {
	case f.slots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	key, err := pbkdf2.Key(sha256.New, password, u.hash.salt, u.hash.iter, len(u.hash.key))
	<-f.slots
	if err != nil {
		return false, err
	}
	return equal(key, u.hash.key) == 1, nil
}

// verifiedCN is the subject CN of the client's certificate, if TLS verified it.
func verifiedCN(st *tls.ConnectionState) (string, bool) {
	if st == nil || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return "", false
	}
	cn := st.VerifiedChains[0][0].Subject.CommonName
	return cn, cn != ""
}

// HashPassword returns the password_hash of password: PBKDF2-HMAC-SHA256 with a random 16-byte
// salt and iterations (0: DefaultIterations), as "pbkdf2-sha256$<iterations>$<salt>$<key>" with
// salt and key in unpadded standard base64.
func HashPassword(password string, iterations int) (string, error) {
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if iterations < MinIterations || iterations > MaxIterations {
		return "", ftslerr.Errorf("ftsl: password hash iterations %d outside [%d, %d]", iterations, MinIterations, MaxIterations)
	}
	if password == "" {
		return "", errors.New("ftsl: empty password")
	}
	salt := make([]byte, saltLen)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails
	key, err := pbkdf2.Key(sha256.New, password, salt, iterations, keyLen)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("%s$%d$%s$%s", hashScheme, iterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

func parseHash(s string) (*passwordHash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 4 || parts[0] != hashScheme {
		return nil, fmt.Errorf("want %s$<iterations>$<salt>$<key> (ftsl-hub -hash-password makes one)", hashScheme)
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < MinIterations || iter > MaxIterations {
		return nil, fmt.Errorf("iterations %q: want a number in [%d, %d]", parts[1], MinIterations, MaxIterations)
	}
	enc := base64.RawStdEncoding
	salt, err := enc.DecodeString(parts[2])
	if err != nil || len(salt) < 8 {
		return nil, errors.New("salt: want unpadded base64 of at least 8 bytes")
	}
	key, err := enc.DecodeString(parts[3])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return nil, errors.New("key: want unpadded base64 of 16 to 64 bytes")
	}
	return &passwordHash{iter: iter, salt: salt, key: key}, nil
}

// Load reads the auth file at path (see Parse); its mode decides whether plain secrets are
// allowed.
func Load(path string, opts Options) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, ftslerr.Errorf("ftsl: auth file: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, ftslerr.Errorf("ftsl: auth file: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, ftslerr.Errorf("ftsl: auth file: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, ftslerr.Errorf("%w: %s: larger than %d bytes", ErrInvalid, path, MaxFileSize)
	}
	return Parse(path, data, st.Mode(), opts)
}

// Parse reads an auth file's content; name is what errors call it, mode its permission bits:
// plain secrets are refused unless mode gives the group and others no access. An error wraps
// ErrInvalid and names the line and the field.
func Parse(name string, data []byte, mode fs.FileMode, opts Options) (*File, error) {
	if opts.MaxSubjectLength == 0 {
		opts.MaxSubjectLength = pubsub.DefaultMaxSubjectLength
	}
	p := &parser{name: name, data: data, mode: mode, opts: opts,
		f: &File{users: map[string]*passUser{}, certs: map[string]*pubsub.Permissions{}}}
	if err := p.parse(); err != nil {
		return nil, err
	}
	f := p.f
	if f.Users() == 0 && f.anonymous == nil {
		return nil, ftslerr.Errorf("%w: %s: no users and no anonymous entry: nobody could connect", ErrInvalid, name)
	}
	f.slots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))
	f.decoy = passUser{digest: make([]byte, sha256.Size)}
	for _, u := range f.users {
		if u.hash != nil { // the decoy costs what a real hash does
			f.decoy = passUser{hash: &passwordHash{iter: u.hash.iter, salt: make([]byte, saltLen), key: make([]byte, len(u.hash.key))}}
			break
		}
	}
	_, _ = rand.Read(f.decoy.digest)
	if f.decoy.hash != nil {
		_, _ = rand.Read(f.decoy.hash.salt)
		_, _ = rand.Read(f.decoy.hash.key)
	}
	return f, nil
}

// The file's JSON. Empty strings count as absent.
type (
	rulesJSON struct {
		Allow []string `json:"allow"`
		Deny  []string `json:"deny"`
	}
	permsJSON struct {
		Identity  string    `json:"identity"`
		Publish   rulesJSON `json:"publish"`
		Subscribe rulesJSON `json:"subscribe"`
	}
	userJSON struct {
		User          string `json:"user"`
		Password      string `json:"password"`
		PasswordHash  string `json:"password_hash"`
		Token         string `json:"token"`
		TokenSHA256   string `json:"token_sha256"`
		CertificateCN string `json:"certificate_cn"`
		// permsJSON's fields, spelt out: an embedded struct's name would show in error paths.
		Identity  string    `json:"identity"`
		Publish   rulesJSON `json:"publish"`
		Subscribe rulesJSON `json:"subscribe"`
	}
)

// parser walks the file token by token, so that each error can name the line of the entry it
// is about.
type parser struct {
	name string
	data []byte
	mode fs.FileMode
	opts Options
	dec  *json.Decoder
	f    *File
	// where each user came from, for duplicates: "users[3] (line 12)"
	seenToken map[[sha256.Size]byte]string
	seenUser  map[string]string
	seenCN    map[string]string
}

func (p *parser) parse() error {
	p.dec = json.NewDecoder(bytes.NewReader(p.data))
	p.dec.DisallowUnknownFields()
	p.seenToken, p.seenUser, p.seenCN = map[[sha256.Size]byte]string{}, map[string]string{}, map[string]string{}
	if err := p.delim('{', "the file: want a JSON object"); err != nil {
		return err
	}
	seen := map[string]bool{}
	for p.dec.More() {
		at := p.line(p.next())
		tok, err := p.dec.Token()
		if err != nil {
			return p.jsonErr(err, at, "")
		}
		key, _ := tok.(string)
		if seen[key] {
			return p.errorf(at, key, "given twice")
		}
		seen[key] = true
		switch key {
		case "users":
			if err := p.users(); err != nil {
				return err
			}
		case "anonymous":
			at := p.line(p.next())
			var a *permsJSON
			if err := p.dec.Decode(&a); err != nil {
				return p.jsonErr(err, at, "anonymous")
			}
			if a == nil {
				return p.errorf(at, "anonymous", "want an object; leave it out to refuse clients without a credential")
			}
			perms, err := p.perms(*a, "", at, "anonymous")
			if err != nil {
				return err
			}
			p.f.anonymous = perms
		default:
			return p.errorf(at, strconv.Quote(key), "unknown field; want users or anonymous")
		}
	}
	if err := p.delim('}', ""); err != nil {
		return err
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return p.errorf(p.line(p.next()), "", "something after the closing }")
	}
	return nil
}

func (p *parser) users() error {
	if err := p.delim('[', "users: want a list"); err != nil {
		return err
	}
	for i := 0; p.dec.More(); i++ {
		at := p.line(p.next())
		field := fmt.Sprintf("users[%d]", i)
		var u userJSON
		if err := p.dec.Decode(&u); err != nil {
			return p.jsonErr(err, at, field)
		}
		if err := p.user(u, at, field); err != nil {
			return err
		}
	}
	return p.delim(']', "")
}

// user checks one entry and adds it.
func (p *parser) user(u userJSON, at int, field string) error {
	where := fmt.Sprintf("%s (line %d)", field, at)
	ways := 0
	for _, s := range []string{u.User, u.Token, u.TokenSHA256, u.CertificateCN} {
		if s != "" {
			ways++
		}
	}
	if ways != 1 {
		return p.errorf(at, field, "want exactly one of user (with password or password_hash), token, token_sha256, certificate_cn")
	}
	if u.User == "" && (u.Password != "" || u.PasswordHash != "") {
		return p.errorf(at, field, "a password goes with a user")
	}
	identity := u.Identity
	switch {
	case u.User != "":
		identity = cmp.Or(identity, u.User)
	case u.CertificateCN != "":
		identity = cmp.Or(identity, u.CertificateCN)
	case identity == "":
		return p.errorf(at, field+".identity", "a token user needs one: it names the client to others")
	}
	perms, err := p.perms(permsJSON{Identity: u.Identity, Publish: u.Publish, Subscribe: u.Subscribe}, identity, at, field)
	if err != nil {
		return err
	}
	switch {
	case u.Token != "" || u.TokenSHA256 != "":
		var d [sha256.Size]byte
		if u.Token != "" {
			if err := p.private(at, field+".token", "token_sha256"); err != nil {
				return err
			}
			d = sha256.Sum256([]byte(u.Token))
		} else if b, err := hex.DecodeString(u.TokenSHA256); err != nil || len(b) != sha256.Size {
			return p.errorf(at, field+".token_sha256", "want 64 hex digits (sha256sum of the token)")
		} else {
			copy(d[:], b)
		}
		if prev, dup := p.seenToken[d]; dup {
			return p.errorf(at, field, "same token as %s", prev)
		}
		p.seenToken[d] = where
		p.f.tokens = append(p.f.tokens, tokenUser{digest: d, perms: perms})
	case u.User != "":
		if prev, dup := p.seenUser[u.User]; dup {
			return p.errorf(at, field+".user", "%q already given in %s", u.User, prev)
		}
		p.seenUser[u.User] = where
		pu := &passUser{perms: perms}
		switch {
		case (u.Password == "") == (u.PasswordHash == ""):
			return p.errorf(at, field, "user %q wants one of password, password_hash", u.User)
		case u.Password != "":
			if err := p.private(at, field+".password", "password_hash"); err != nil {
				return err
			}
			d := sha256.Sum256([]byte(u.Password))
			pu.digest = d[:]
		default:
			if pu.hash, err = parseHash(u.PasswordHash); err != nil {
				return p.errorf(at, field+".password_hash", "%v", err)
			}
		}
		p.f.users[u.User] = pu
	default:
		if prev, dup := p.seenCN[u.CertificateCN]; dup {
			return p.errorf(at, field+".certificate_cn", "%q already given in %s", u.CertificateCN, prev)
		}
		p.seenCN[u.CertificateCN] = where
		p.f.certs[u.CertificateCN] = perms
	}
	return nil
}

// perms checks the rules' patterns as the hub will, and makes the entry's Permissions.
func (p *parser) perms(j permsJSON, identity string, at int, field string) (*pubsub.Permissions, error) {
	for _, r := range []struct {
		name  string
		rules rulesJSON
	}{{"publish", j.Publish}, {"subscribe", j.Subscribe}} {
		if _, err := subjects.NewRules(r.rules.Allow, r.rules.Deny, p.opts.MaxSubjectLength); err != nil {
			return nil, p.errorf(at, field+"."+r.name, "%v", err)
		}
	}
	return &pubsub.Permissions{
		Identity:  cmp.Or(j.Identity, identity),
		Publish:   pubsub.Rules{Allow: j.Publish.Allow, Deny: j.Publish.Deny},
		Subscribe: pubsub.Rules{Allow: j.Subscribe.Allow, Deny: j.Subscribe.Deny},
	}, nil
}

// private refuses a plain secret in a file that others than its owner may read.
func (p *parser) private(at int, field, instead string) error {
	if p.mode.Perm()&0o077 == 0 {
		return nil
	}
	return p.errorf(at, field, "a plain secret needs a file only its owner can read (chmod 600), and this one is %v; or use %s",
		p.mode.Perm(), instead)
}

func (p *parser) delim(want json.Delim, what string) error {
	at := p.line(p.next())
	tok, err := p.dec.Token()
	if err != nil {
		return p.jsonErr(err, at, "")
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		if what == "" {
			what = fmt.Sprintf("want %q", want)
		}
		return p.errorf(at, "", "%s", what)
	}
	return nil
}

// next is the offset of the next token: the decoder's offset is the end of the last one.
func (p *parser) next() int64 {
	off := p.dec.InputOffset()
	for off < int64(len(p.data)) && strings.IndexByte(" \t\r\n,:", p.data[off]) >= 0 {
		off++
	}
	return off
}

func (p *parser) line(off int64) int {
	return 1 + bytes.Count(p.data[:min(off, int64(len(p.data)))], []byte{'\n'})
}

// jsonErr words a decoding error: its line, and the field it is about.
func (p *parser) jsonErr(err error, at int, field string) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return p.errorf(p.line(syn.Offset), "", "%v", syn)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return p.errorf(p.line(int64(len(p.data))), "", "the file ends too early")
	case errors.As(err, &typ):
		if typ.Field != "" {
			field += "." + typ.Field
		}
		return p.errorf(at, field, "got a JSON %s, want %v", typ.Value, typ.Type)
	}
	return p.errorf(at, field, "%s", strings.TrimPrefix(err.Error(), "json: "))
}

func (p *parser) errorf(line int, field, format string, args ...any) error {
	if field != "" {
		field = " " + field + ":"
	}
	return ftslerr.Errorf("%w: %s:%d:%s %s", ErrInvalid, p.name, line, field, fmt.Sprintf(format, args...))
}
