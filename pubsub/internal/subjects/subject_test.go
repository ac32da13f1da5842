package subjects

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	long := strings.Repeat("a", DefaultMaxLength)
	tests := []struct {
		s        string
		pub, sub string // "" when valid, else a fragment of the error
	}{
		{"foo", "", ""},
		{"foo.bar.baz", "", ""},
		{"a", "", ""},
		{"日本.語", "", ""},
		{"$SYS.x-y_z", "", ""},
		{long, "", ""},
		{long + "a", "over the limit of 256", "over the limit of 256"},
		{"", "empty subject", "empty pattern"},
		{".", "empty token at byte 0", "empty token at byte 0"},
		{".foo", "empty token at byte 0", "empty token at byte 0"},
		{"foo.", "empty token at byte 4", "empty token at byte 4"},
		{"foo..bar", "empty token at byte 4", "empty token at byte 4"},
		{"foo.bar..baz", "empty token at byte 8", "empty token at byte 8"},
		{"*", "wildcard '*'", ""},
		{">", "wildcard '>'", ""},
		{"foo.*", "wildcard '*' at byte 4", ""},
		{"foo.*.bar", "wildcard '*'", ""},
		{"foo.>", "wildcard '>'", ""},
		{"*.*.>", "wildcard '*' at byte 0", ""},
		{">.bar", "wildcard '>'", "token after \">\""},
		{"foo.>.bar", "wildcard '>'", "token after \">\""},
		{"foo.>.>", "wildcard '>'", "token after \">\""},
		// Wildcard characters inside a token are literal, as in NATS.
		{"foo*", "", ""},
		{"foo.**", "", ""},
		{"foo.*bar", "", ""},
		{"*bar.baz", "", ""},
		{"foo>", "", ""},
		{"foo.>>", "", ""},
		{">bar", "", ""},
		{"foo.*-", "", ""},
		{"foo bar", "(U+0020) at byte 3", "(U+0020) at byte 3"},
		{"foo\tbar", "U+0009", "U+0009"},
		{"foo\nbar", "U+000A", "U+000A"},
		{"foo\rbar", "U+000D", "U+000D"},
		{"foo\fbar", "U+000C", "U+000C"},
		{"foo\vbar", "U+000B", "U+000B"}, // NATS lets \v through; we do not
		{"foo\x00", "U+0000", "U+0000"},
		{"foo\x7f", "U+007F", "U+007F"},
		{"foo.\u00a0", "U+00A0", "U+00A0"},
		{"foo\u2028", "U+2028", "U+2028"},
		{"foo\u0085", "U+0085", "U+0085"},
		{"foo.\xff", "not valid UTF-8 at byte 4", "not valid UTF-8 at byte 4"},
		{"\xc3", "not valid UTF-8 at byte 0", "not valid UTF-8 at byte 0"},
		{" ", "U+0020", "U+0020"},
	}
	for _, tt := range tests {
		for _, c := range []struct {
			name string
			f    func(string, int) error
			want string
		}{{"ValidatePublish", ValidatePublish, tt.pub}, {"ValidateSubscribe", ValidateSubscribe, tt.sub}} {
			err := c.f(tt.s, 0)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("%s(%q) = %v, want nil", c.name, tt.s, err)
			case c.want != "" && err == nil:
				t.Errorf("%s(%q) = nil, want an error about %q", c.name, tt.s, c.want)
			case c.want != "" && (!errors.Is(err, ErrInvalidSubject) || !strings.Contains(err.Error(), c.want)):
				t.Errorf("%s(%q) = %v, want ErrInvalidSubject about %q", c.name, tt.s, err, c.want)
			}
		}
	}
}

func TestValidateLimit(t *testing.T) {
	if err := ValidatePublish("abc.def", 7); err != nil {
		t.Errorf("7 bytes with a limit of 7: %v", err)
	}
	if err := ValidatePublish("abc.defg", 7); !errors.Is(err, ErrInvalidSubject) {
		t.Errorf("8 bytes with a limit of 7: %v", err)
	}
	if err := ValidateSubscribe(strings.Repeat("a.", 1000)+"a", 4096); err != nil {
		t.Errorf("a raised limit: %v", err)
	}
	// A hostile subject does not make a hostile error message.
	err := ValidatePublish(strings.Repeat("x", 1<<20), 0)
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("error for a 1 MiB subject: %d bytes", len(err.Error()))
	}
	err = ValidatePublish(strings.Repeat("é", 100)+" ", 1000)
	if err == nil || !strings.Contains(err.Error(), "...") || len(err.Error()) > 200 {
		t.Errorf("error for a long subject with a space: %v", err)
	}
}

func TestValidateQueue(t *testing.T) {
	for _, q := range []string{"workers", "a.b", "*", ">", "a..b", "日本"} {
		if err := ValidateQueue(q, 0); err != nil {
			t.Errorf("ValidateQueue(%q) = %v", q, err)
		}
	}
	for _, q := range []string{"", "a b", "a\tb", "a\x00", "\xff", strings.Repeat("q", 257)} {
		if err := ValidateQueue(q, 0); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("ValidateQueue(%q) = %v, want ErrInvalidSubject", q, err)
		}
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		pattern, subject string
		want             bool
	}{
		// NATS's matchLiteral cases, with the pattern first.
		{"foo", "foo", true},
		{"bar", "foo", false},
		{"*", "foo", true},
		{">", "foo", true},
		{">", "foo.bar", true},
		{"foo.>", "foo.bar", true},
		{"bar.>", "foo.bar", false},
		{"stats.>", "stats.test.22", true},
		{"stats.*.*", "stats.test.22", true},
		{"foo", "foo.bar", false},
		{"stats.test.foos", "stats.test.foos", true},
		{"stats.test.foo", "stats.test.foos", false},
		{"stats.test.*", "stats.test", false},
		{"stats.*", "stats.test.foos", false},
		{"stats.*.*.foos", "stats.test.foos", false},
		{"*bar", "*bar", true},
		{"foo*", "foo*", true},
		{"foo.***.bar", "foo.***.bar", true},
		{">bar", ">bar", true},
		{"foo.>>>.bar", "foo.>>>.bar", true},
		{"*bar", "xbar", false},
		// ">" wants at least one token; "*" exactly one.
		{"foo.>", "foo", false},
		{"foo.*", "foo", false},
		{"*.*", "foo", false},
		{"*.*", "a.b", true},
		{"*.>", "a", false},
		{"*.>", "a.b.c", true},
		// Subjects with empty tokens match nothing, not even ">".
		{">", "", false},
		{">", ".foo", false},
		{">", "foo.", false},
		{">", "foo..bar", false},
		{"foo.>", "foo.bar.", false},
		{"*", "", false},
		{"foo.*.bar", "foo..bar", false},
	}
	for _, tt := range tests {
		if got := Matches(tt.pattern, tt.subject); got != tt.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tt.pattern, tt.subject, got, tt.want)
		}
		if got := refMatch(tt.pattern, tt.subject); got != tt.want {
			t.Errorf("refMatch(%q, %q) = %v, want %v (the test's reference is wrong)", tt.pattern, tt.subject, got, tt.want)
		}
	}
}

func TestIsSubset(t *testing.T) {
	tests := []struct {
		pattern, of string
		want        bool
	}{
		// NATS's TestIsSubsetMatch.
		{"foo.bar", "foo.bar", true},
		{"foo.*", ">", true},
		{"foo.*", "*.*", true},
		{"foo.*", "foo.*", true},
		{"foo.*", "foo.bar", false},
		{"foo.>", ">", true},
		{"foo.>", "*.>", true},
		{"foo.>", "foo.>", true},
		{"foo.>", "foo.bar", false},
		{"foo..bar", "foo.*", false},
		{"foo.*", "foo..bar", false},
		// More.
		{"foo.>", "foo.*", false},
		{"foo.*.>", "foo.>", true},
		{"foo.>", "foo.*.>", false},
		{"foo", "foo.>", false},
		{"foo", ">", true},
		{"foo.bar", "foo.*", true},
		{"*", "foo", false},
		{">", "*", false},
		{"*", ">", true},
		{"a.b.c", "a.*.c", true},
		{"a.*.c", "a.b.c", false},
		{"a.b", "a.b.c", false},
		{"a.b.c", "a.b", false},
		{">", ">", true},
		{"", ">", false},
		{"a.>.b", ">", false},
	}
	for _, tt := range tests {
		if got := IsSubset(tt.pattern, tt.of); got != tt.want {
			t.Errorf("IsSubset(%q, %q) = %v, want %v", tt.pattern, tt.of, got, tt.want)
		}
	}
}

func TestOverlaps(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		// NATS's TestSublistSubjectCollide.
		{"foo.*", "foo.*.bar.>", false},
		{"foo.*.bar.>", "foo.*", false},
		{"foo.*", "foo.foo", true},
		{"foo.*", "*.foo", true},
		{"foo.bar.>", "*.bar.foo", true},
		// More.
		{"a.>", "a", false},
		{">", "a", true},
		{">", "a.b.c", true},
		{"a.*", "a.*.c", false},
		{"a.b", "a.c", false},
		{"a.b", "a.b", true},
		{"*.b", "a.*", true},
		{"a.>", "*.*.c", true},
		{"a..b", "a.b", false},
	}
	for _, tt := range tests {
		if got := Overlaps(tt.a, tt.b); got != tt.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := Overlaps(tt.b, tt.a); got != tt.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

// smallPatterns are all valid patterns of up to three tokens over a, b, * and >.
func smallPatterns() []string {
	var out []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		for _, t := range []string{"a", "b", "*", ">"} {
			p := t
			if prefix != "" {
				p = prefix + "." + t
			}
			out = append(out, p)
			if t != ">" && n > 1 {
				gen(p, n-1)
			}
		}
	}
	gen("", 3)
	return out
}

// smallSubjects are all subjects of up to four tokens over a, b and z, z standing for every
// token no pattern names. Four is enough: patterns have at most three tokens, and beyond one
// token more only ">" can tell subjects apart.
func smallSubjects() []string {
	var out []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		for _, t := range []string{"a", "b", "z"} {
			s := t
			if prefix != "" {
				s = prefix + "." + t
			}
			out = append(out, s)
			if n > 1 {
				gen(s, n-1)
			}
		}
	}
	gen("", 4)
	return out
}

// TestSubsetOverlapExhaustive checks IsSubset and Overlaps on every pair of small patterns
// against the subjects each matches.
func TestSubsetOverlapExhaustive(t *testing.T) {
	patterns, subjects := smallPatterns(), smallSubjects()
	if len(patterns) != 52 {
		t.Fatalf("%d small patterns, want 52", len(patterns))
	}
	for _, p := range patterns {
		for _, q := range patterns {
			subset, overlap := true, false
			for _, s := range subjects {
				mp, mq := refMatch(p, s), refMatch(q, s)
				subset = subset && (!mp || mq)
				overlap = overlap || (mp && mq)
			}
			if got := IsSubset(p, q); got != subset {
				t.Errorf("IsSubset(%q, %q) = %v, want %v", p, q, got, subset)
			}
			if got := Overlaps(p, q); got != overlap {
				t.Errorf("Overlaps(%q, %q) = %v, want %v", p, q, got, overlap)
			}
		}
	}
}

func TestValidateAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = ValidatePublish("orders.eu.created", 0) }); n != 0 {
		t.Errorf("ValidatePublish of a valid subject: %v allocs", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = Matches("orders.*.>", "orders.eu.created") }); n != 0 {
		t.Errorf("Matches: %v allocs", n)
	}
}
