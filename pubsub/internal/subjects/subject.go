package subjects

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// DefaultMaxLength is the longest subject, pattern or queue name, in bytes, accepted when a
// caller passes a limit of zero or less.
const DefaultMaxLength = 256

// ErrInvalidSubject is wrapped by every error about a malformed subject, pattern or queue name;
// the wrapping error says what is wrong and where.
var ErrInvalidSubject = errors.New("ftsl: invalid subject")

// problem says what check found wrong with a subject. The hot paths (Index.Match) need only
// "valid or not"; building the error text is left to the exported validators.
type problem uint8

const (
	probNone problem = iota
	probEmpty
	probTooLong
	probEmptyToken
	probFullNotLast
	probWildcard
	probSpace
	probUTF8
)

// check validates s as a subject (literal true) or a subscription pattern (literal false),
// in one pass. It returns the problem and the byte offset where it was found.
func check(s string, maxLen int, literal bool) (problem, int) {
	if s == "" {
		return probEmpty, 0
	}
	if len(s) > maxLen {
		return probTooLong, maxLen
	}
	start := 0 // first byte of the current token
	full := false
	for i := 0; i <= len(s); {
		if i == len(s) || s[i] == '.' {
			if i == start {
				return probEmptyToken, i
			}
			if full {
				// The token before this one was ">", and here is another.
				return probFullNotLast, start
			}
			if i-start == 1 {
				switch s[start] {
				case '*':
					if literal {
						return probWildcard, start
					}
				case '>':
					if literal {
						return probWildcard, start
					}
					full = true
				}
			}
			i++
			start = i
			continue
		}
		c := s[i]
		if c < utf8.RuneSelf {
			// Space, ASCII controls and DEL: NATS refuses " \t\n\r\f"; we refuse every control
			// character too, because subjects end up in logs and line-based tools.
			if c <= ' ' || c == 0x7f {
				return probSpace, i
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return probUTF8, i
		}
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return probSpace, i
		}
		i += size
	}
	return probNone, 0
}

// limit turns a caller's maximum length into the one to apply.
func limit(maxLen int) int {
	if maxLen <= 0 {
		return DefaultMaxLength
	}
	return maxLen
}

// ValidatePublish checks that subject can be published to: at most maxLen bytes (DefaultMaxLength
// if maxLen <= 0), valid UTF-8, dot-separated non-empty tokens, no whitespace or control
// characters, and no wildcard token ("*" or ">"; a token that merely contains them, like "a*", is
// literal). The error wraps ErrInvalidSubject.
func ValidatePublish(subject string, maxLen int) error {
	p, at := check(subject, limit(maxLen), true)
	return explain("subject", subject, p, at)
}

// ValidateSubscribe checks that pattern can be subscribed to: the rules of ValidatePublish,
// except that a token may be "*" (exactly one token) and the last token may be ">" (one or more
// tokens). The error wraps ErrInvalidSubject.
func ValidateSubscribe(pattern string, maxLen int) error {
	p, at := check(pattern, limit(maxLen), false)
	return explain("pattern", pattern, p, at)
}

// ValidateQueue checks a queue group name: non-empty, at most maxLen bytes (DefaultMaxLength if
// maxLen <= 0), valid UTF-8, no whitespace or control characters. Dots and wildcard characters
// carry no meaning in a queue name and are allowed. The error wraps ErrInvalidSubject.
func ValidateQueue(name string, maxLen int) error {
	maxLen = limit(maxLen)
	if name == "" {
		return explain("queue name", name, probEmpty, 0)
	}
	if len(name) > maxLen {
		return explain("queue name", name, probTooLong, maxLen)
	}
	for i := 0; i < len(name); {
		c := name[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == 0x7f {
				return explain("queue name", name, probSpace, i)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(name[i:])
		if r == utf8.RuneError && size == 1 {
			return explain("queue name", name, probUTF8, i)
		}
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return explain("queue name", name, probSpace, i)
		}
		i += size
	}
	return nil
}

// explain builds the error for a problem found by check.
func explain(what, s string, p problem, at int) error {
	switch p {
	case probNone:
		return nil
	case probEmpty:
		return ftslerr.Errorf("%w: empty %s", ErrInvalidSubject, what)
	case probTooLong:
		return ftslerr.Errorf("%w: %s %s is %d bytes, over the limit of %d", ErrInvalidSubject, what, clip(s), len(s), at)
	case probEmptyToken:
		return ftslerr.Errorf("%w: %s %s has an empty token at byte %d", ErrInvalidSubject, what, clip(s), at)
	case probFullNotLast:
		return ftslerr.Errorf("%w: %s %s has a token after \">\" (at byte %d); \">\" must be the last token", ErrInvalidSubject, what, clip(s), at)
	case probWildcard:
		return ftslerr.Errorf("%w: %s %s has the wildcard %q at byte %d; publish to a literal subject", ErrInvalidSubject, what, clip(s), s[at], at)
	case probSpace:
		r, _ := utf8.DecodeRuneInString(s[at:])
		return ftslerr.Errorf("%w: %s %s has whitespace or a control character (%U) at byte %d", ErrInvalidSubject, what, clip(s), r, at)
	case probUTF8:
		return ftslerr.Errorf("%w: %s %s is not valid UTF-8 at byte %d", ErrInvalidSubject, what, clip(s), at)
	}
	return ftslerr.Errorf("%w: %s %s", ErrInvalidSubject, what, clip(s))
}

// clip quotes s for an error message, cut short so that a hostile megabyte-long subject does
// not become a megabyte-long log line.
func clip(s string) string {
	const max = 32
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q...", s[:cut])
}

// cut splits off the first token of s.
func cut(s string) (tok, rest string, more bool) {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// isLiteral reports whether s has no wildcard token. It does not validate s.
func isLiteral(s string) bool {
	for {
		tok, rest, more := cut(s)
		if tok == "*" || tok == ">" {
			return false
		}
		if !more {
			return true
		}
		s = rest
	}
}

// Matches reports whether the literal subject matches pattern: "*" stands for exactly one token,
// a final ">" for one or more. It allocates nothing and does not validate; for inputs that
// ValidatePublish and ValidateSubscribe refuse, the answer is false or meaningless, never a
// panic. A subject with an empty token matches nothing.
func Matches(pattern, subject string) bool {
	for {
		ptok, prest, pmore := cut(pattern)
		stok, srest, smore := cut(subject)
		if stok == "" {
			return false
		}
		if ptok == ">" && !pmore {
			// One or more tokens remain in subject: stok is one, and any that follow must not
			// be empty either.
			return !smore || tokensNonEmpty(srest)
		}
		if ptok != "*" && ptok != stok {
			return false
		}
		if pmore != smore {
			return false
		}
		if !pmore {
			return true
		}
		pattern, subject = prest, srest
	}
}

// IsSubset reports whether every subject that pattern matches is also matched by of: "a.b",
// "a.*" and "a.b.>" are subsets of "a.>", and "a.>" is not a subset of "a.*". Both must be
// valid subscription patterns (of any length); otherwise the answer is false.
func IsSubset(pattern, of string) bool {
	if p, _ := check(pattern, math.MaxInt, false); p != probNone {
		return false
	}
	if p, _ := check(of, math.MaxInt, false); p != probNone {
		return false
	}
	return isSubset(pattern, of)
}

// isSubset is IsSubset on patterns known to be valid.
func isSubset(p, of string) bool {
	for {
		ptok, prest, pmore := cut(p)
		otok, orest, omore := cut(of)
		if otok == ">" {
			// p has at least this token left, and ">" takes any number of them.
			return true
		}
		if ptok == ">" {
			// p goes on for any number of tokens, of for a fixed number.
			return false
		}
		if otok != "*" && otok != ptok {
			// A literal in of covers only the same literal, never a wildcard.
			return false
		}
		if pmore != omore {
			return false
		}
		if !pmore {
			return true
		}
		p, of = prest, orest
	}
}

// Overlaps reports whether some subject matches both patterns: "a.*" and "*.b" overlap (on
// "a.b"), "a.*" and "a.*.c" do not. Both must be valid subscription patterns; otherwise the
// answer is false.
func Overlaps(a, b string) bool {
	if p, _ := check(a, math.MaxInt, false); p != probNone {
		return false
	}
	if p, _ := check(b, math.MaxInt, false); p != probNone {
		return false
	}
	return overlaps(a, b)
}

// overlaps is Overlaps on patterns known to be valid.
func overlaps(a, b string) bool {
	for {
		at, arest, amore := cut(a)
		bt, brest, bmore := cut(b)
		if at == ">" || bt == ">" {
			// Both have a token here; whatever the other requires from here on, ">" takes it.
			return true
		}
		if at != "*" && bt != "*" && at != bt {
			return false
		}
		if amore != bmore {
			return false
		}
		if !amore {
			return true
		}
		a, b = arest, brest
	}
}
