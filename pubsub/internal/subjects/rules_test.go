package subjects

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func mustRules(t testing.TB, allow, deny []string) *Rules {
	t.Helper()
	r, err := NewRules(allow, deny, 0)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRules(t *testing.T) {
	type sub struct {
		pattern string
		allowed bool
		check   bool // NeedsDeliveryCheck
	}
	tests := []struct {
		name        string
		allow, deny []string
		publish     map[string]bool
		subscribe   []sub
		deliverable map[string]bool
	}{
		{
			name:  "allow and deny",
			allow: []string{"foo.*", "bar.>"},
			deny:  []string{"foo.secret", "bar.private.>"},
			publish: map[string]bool{
				"foo.x": true, "foo.secret": false, "foo.x.y": false, "foo": false,
				"bar.a": true, "bar.a.b.c": true, "bar.private": true, "bar.private.x": false, "baz": false,
			},
			subscribe: []sub{
				{"foo.x", true, false},
				{"foo.*", true, true}, // overlaps foo.secret: filtered per message
				{"foo.secret", false, true},
				{"foo.>", false, true}, // foo.a.b is not allowed
				{"bar.>", true, true},
				{"bar.*", true, false}, // bar.private.> needs three tokens
				{"bar.private.>", false, true},
				{"bar.private.*", false, true}, // wholly denied
				{"bar.*.x", true, true},
				{">", false, true},
				{"*.x", false, false}, // baz.x is not allowed
				{"foo..x", false, false},
				{"", false, false},
			},
			deliverable: map[string]bool{"foo.secret": false, "foo.x": true, "bar.private.a": false, "bar.private": true},
		},
		{
			name:  "allow patterns together",
			allow: []string{"a.*", "a.*.>"},
			subscribe: []sub{
				{"a.>", true, false}, // neither alone, both together
				{"a.b.>", true, false},
				{"a.*.*", true, false},
				{">", false, false},
				{"a", false, false},
			},
		},
		{
			name:      "allow one alone",
			allow:     []string{"a.*"},
			subscribe: []sub{{"a.>", false, false}, {"a.*", true, false}, {"a.b", true, false}},
		},
		{
			name:  "literals never cover a wildcard",
			allow: []string{"a.b", "a.c", "a.d"},
			subscribe: []sub{
				{"a.*", false, false},
				{"a.b", true, false},
			},
			publish: map[string]bool{"a.b": true, "a.e": false},
		},
		{
			name: "deny patterns together",
			deny: []string{"a.*", "a.*.>"},
			subscribe: []sub{
				{"a.>", false, true},
				{">", true, true},
				{"a.b.c", false, true},
				{"b.c", true, false},
			},
			publish:     map[string]bool{"a.b": false, "a.b.c": false, "a": true, "b.c": true},
			deliverable: map[string]bool{"a.b": false, "a": true},
		},
		{
			name:      "deny only, everything else allowed",
			deny:      []string{"admin.>"},
			publish:   map[string]bool{"x": true, "admin": true, "admin.x": false},
			subscribe: []sub{{">", true, true}, {"admin.*", false, true}, {"x.*", true, false}},
		},
		{
			name:      "nothing",
			publish:   map[string]bool{"x": true, "a.b.c": true, "a..b": false, "": false},
			subscribe: []sub{{">", true, false}, {"*.*", true, false}, {"a.>.b", false, false}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustRules(t, tt.allow, tt.deny)
			for s, want := range tt.publish {
				if got := r.CanPublish(s); got != want {
					t.Errorf("CanPublish(%q) = %v, want %v", s, got, want)
				}
			}
			for _, s := range tt.subscribe {
				if got := r.CanSubscribe(s.pattern); got != s.allowed {
					t.Errorf("CanSubscribe(%q) = %v, want %v", s.pattern, got, s.allowed)
				}
				if got := r.NeedsDeliveryCheck(s.pattern); got != s.check {
					t.Errorf("NeedsDeliveryCheck(%q) = %v, want %v", s.pattern, got, s.check)
				}
			}
			for s, want := range tt.deliverable {
				if got := r.Deliverable(s); got != want {
					t.Errorf("Deliverable(%q) = %v, want %v", s, got, want)
				}
			}
		})
	}
}

func TestNilRules(t *testing.T) {
	var r *Rules
	if !r.CanPublish("a.b") || !r.CanSubscribe(">") || !r.Deliverable("a") || r.NeedsDeliveryCheck(">") {
		t.Errorf("nil Rules restrict something")
	}
	if r.CanSubscribe("a..b") || r.CanPublish("a..b") || r.CanPublish("") {
		t.Errorf("nil Rules allow an invalid subject or pattern")
	}
}

func TestNewRulesErrors(t *testing.T) {
	_, err := NewRules([]string{"a", "b..c"}, nil, 0)
	if !errors.Is(err, ErrInvalidSubject) || !strings.Contains(err.Error(), "allow[1]") || !strings.HasPrefix(err.Error(), "ftsl: ") {
		t.Errorf("bad allow entry: %v", err)
	}
	_, err = NewRules(nil, []string{"a.>.b"}, 0)
	if !errors.Is(err, ErrInvalidSubject) || !strings.Contains(err.Error(), "deny[0]") {
		t.Errorf("bad deny entry: %v", err)
	}
	_, err = NewRules([]string{"abcdef"}, nil, 5)
	if !errors.Is(err, ErrInvalidSubject) {
		t.Errorf("entry over maxLen: %v", err)
	}
}

func TestRulesAllocs(t *testing.T) {
	r := mustRules(t, []string{"orders.*.created", "orders.>", "x"}, []string{"orders.secret.>"})
	if n := testing.AllocsPerRun(1000, func() {
		r.CanPublish("orders.eu.created")
		r.Deliverable("orders.eu.created")
	}); n != 0 {
		t.Errorf("CanPublish and Deliverable: %v allocs", n)
	}
}

// bits is a set of smallSubjects.
type bits [2]uint64

func (b bits) or(c bits) bits       { return bits{b[0] | c[0], b[1] | c[1]} }
func (b bits) within(c bits) bool   { return b[0]&^c[0] == 0 && b[1]&^c[1] == 0 }
func (b bits) overlaps(c bits) bool { return b[0]&c[0] != 0 || b[1]&c[1] != 0 }

// matchSets returns, for each small pattern, the set of small subjects it matches.
func matchSets(patterns, subjects []string) map[string]bits {
	if len(subjects) > 128 {
		panic("too many subjects for bits")
	}
	m := map[string]bits{}
	for _, p := range patterns {
		var b bits
		for i, s := range subjects {
			if refMatch(p, s) {
				b[i/64] |= 1 << (i % 64)
			}
		}
		m[p] = b
	}
	return m
}

// TestRulesExhaustive checks CanSubscribe, CanPublish, Deliverable and NeedsDeliveryCheck
// against brute force: every small pattern against every allow list of up to two small
// patterns, every deny list of one, and random lists of three and four. smallSubjects stand
// for all subjects (see there), so "covered" is exact.
func TestRulesExhaustive(t *testing.T) {
	patterns, subjects := smallPatterns(), smallSubjects()
	sets := matchSets(patterns, subjects)
	union := func(list []string) bits {
		var b bits
		for _, p := range list {
			b = b.or(sets[p])
		}
		return b
	}
	checkRules := func(allow, deny []string) {
		r := mustRules(t, allow, deny)
		allowed := union(allow)
		if len(allow) == 0 {
			allowed = bits{^uint64(0), ^uint64(0)}
		}
		denied := union(deny)
		for _, p := range patterns {
			m := sets[p]
			want := m.within(allowed) && !(m.within(denied) && len(deny) > 0)
			if got := r.CanSubscribe(p); got != want {
				t.Fatalf("allow %q deny %q: CanSubscribe(%q) = %v, want %v", allow, deny, p, got, want)
			}
			if got, want := r.NeedsDeliveryCheck(p), m.overlaps(denied); got != want {
				t.Fatalf("allow %q deny %q: NeedsDeliveryCheck(%q) = %v, want %v", allow, deny, p, got, want)
			}
		}
		for i, s := range subjects {
			in := func(b bits) bool { return b[i/64]&(1<<(i%64)) != 0 }
			if got, want := r.CanPublish(s), in(allowed) && !in(denied); got != want {
				t.Fatalf("allow %q deny %q: CanPublish(%q) = %v, want %v", allow, deny, s, got, want)
			}
			if got, want := r.Deliverable(s), !in(denied); got != want {
				t.Fatalf("allow %q deny %q: Deliverable(%q) = %v, want %v", allow, deny, s, got, want)
			}
		}
	}
	for i, a := range patterns {
		checkRules([]string{a}, nil)
		checkRules(nil, []string{a})
		for _, b := range patterns[i+1:] {
			checkRules([]string{a, b}, nil)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	pick := func(n int) []string {
		var l []string
		for range n {
			l = append(l, patterns[rng.IntN(len(patterns))])
		}
		return l
	}
	rounds := 2000
	if raceEnabled {
		rounds = 200
	}
	for range rounds {
		checkRules(pick(3+rng.IntN(2)), pick(rng.IntN(3)))
	}
}
