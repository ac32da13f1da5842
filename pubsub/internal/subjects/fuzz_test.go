package subjects

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// refValid is the validator written the slow, plain way.
func refValid(s string, maxLen int, literal bool) bool {
	if s == "" || len(s) > maxLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return false
		case (t == "*" || t == ">") && literal:
			return false
		case t == ">" && i != len(toks)-1:
			return false
		}
	}
	return true
}

// FuzzValidate checks the validators against refValid, and that nothing panics on any input.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{"foo.bar", "foo.*", "foo.>", "a.>.b", "..", "a b", "\xff", "é.ü", "foo*.>bar", ""} {
		f.Add(s)
	}
	ix := newIndex(f, Config{MaxSubjectLength: 64})
	if err := ix.Insert(specSub(">")); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, maxLen := range []int{0, 5, 64} {
			errP, errS := ValidatePublish(s, maxLen), ValidateSubscribe(s, maxLen)
			for _, c := range []struct {
				err     error
				literal bool
			}{{errP, true}, {errS, false}} {
				if want := refValid(s, limit(maxLen), c.literal); (c.err == nil) != want {
					t.Fatalf("literal %v, limit %d: error %v, want valid=%v", c.literal, maxLen, c.err, want)
				}
				if c.err != nil && (!errors.Is(c.err, ErrInvalidSubject) || len(c.err.Error()) > 300) {
					t.Fatalf("error %q", c.err)
				}
			}
			if errP == nil && (errS != nil || !isLiteral(s) || !Matches(s, s) || !IsSubset(s, s)) {
				t.Fatalf("%q: publishable but not a literal pattern matching itself", s)
			}
		}
		_ = ValidateQueue(s, 0)
		// Matching an arbitrary string never panics, and matches only valid subjects.
		if r := ix.Match(s); r.Empty() != (ValidatePublish(s, 64) != nil) {
			t.Fatalf("Match(%q) with a > subscription: %d results", s, len(r.Plain))
		}
		Matches(s, s)
		Matches(">", s)
		Overlaps(s, ">")
		if ValidateSubscribe(s, 1<<20) == nil && !Overlaps(s, s) {
			t.Fatalf("%q does not overlap itself", s)
		}
	})
}

// fuzzReader hands out the fuzzer's bytes, then zeros.
type fuzzReader struct {
	b []byte
}

func (r *fuzzReader) next() int {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return int(c)
}

func (r *fuzzReader) done() bool { return len(r.b) == 0 }

// pattern reads one to four tokens from alphabet; it may be invalid (">" in the middle).
func (r *fuzzReader) pattern(alphabet []string) string {
	n := 1 + r.next()%4
	toks := make([]string, n)
	for i := range toks {
		toks[i] = alphabet[r.next()%len(alphabet)]
	}
	return strings.Join(toks, ".")
}

// FuzzIndex runs random inserts, removes and matches on two indexes, one with a tiny cache (so
// entries are evicted, replaced and invalidated all the time) and one without, and checks
// every match against refMatch over the live subscriptions.
func FuzzIndex(f *testing.F) {
	f.Add([]byte{0, 0, 1, 2, 0, 2, 3, 0, 1, 1})
	f.Add([]byte{0, 3, 4, 4, 4, 0, 0, 1, 0, 2, 2, 1, 0, 2, 0, 1, 2})
	f.Add([]byte("\x00\x02\x03\x03\x08\x00\x01\x03\x02\x02\x01\x01\x01\x00\x05\x03\x02\x00\x03\x07"))
	patternTokens := []string{"a", "b", "c", "*", ">"}
	subjectTokens := []string{"a", "b", "c", "a", "b", "*", ">", ""}
	queues := []string{"", "", "q", "r"}
	f.Fuzz(func(t *testing.T, data []byte) {
		cached, err := New[string](Config{CacheSize: 4})
		if err != nil {
			t.Fatal(err)
		}
		plain := newIndex(t, Config{CacheSize: -1})
		var live [2][]*Subscription[string]
		r := &fuzzReader{b: data}
		for step := 0; !r.done() && step < 200; step++ {
			switch r.next() % 4 {
			case 0, 1: // insert the same pattern into both
				p, q := r.pattern(patternTokens), queues[r.next()%len(queues)]
				valid := ValidateSubscribe(p, 0) == nil
				for i, ix := range []*Index[string]{cached, plain} {
					s := NewSubscription(p, q, p+" "+q)
					if err := ix.Insert(s); (err == nil) != valid {
						t.Fatalf("Insert(%q): %v, valid %v", p, err, valid)
					} else if err == nil {
						live[i] = append(live[i], s)
					}
				}
			case 2: // remove
				if len(live[0]) == 0 {
					continue
				}
				k := r.next() % len(live[0])
				for i, ix := range []*Index[string]{cached, plain} {
					if err := ix.Remove(live[i][k]); err != nil {
						t.Fatalf("Remove(%q): %v", live[i][k].Value, err)
					}
					live[i] = append(live[i][:k], live[i][k+1:]...)
				}
			case 3: // match
				s := r.pattern(subjectTokens)
				want := refView(live[0], s)
				if ValidatePublish(s, 0) != nil {
					want = view{groups: map[string][]string{}}
				}
				for _, ix := range []*Index[string]{cached, plain} {
					for range 2 {
						if got := viewOf(ix.Match(s)); !got.equal(want) {
							t.Fatalf("Match(%q) = %+v, want %+v", s, got, want)
						}
					}
				}
				if ix := cached; ix.cache.len() > cacheShards {
					t.Fatalf("a cache of 4 holds %d", ix.cache.len())
				}
			}
		}
		for i, ix := range []*Index[string]{cached, plain} {
			for _, s := range live[i] {
				if err := ix.Remove(s); err != nil {
					t.Fatal(err)
				}
			}
			if !ix.trieEmpty() || ix.Len() != 0 {
				t.Fatalf("not empty at the end")
			}
		}
	})
}

// FuzzRules checks Rules on allow and deny lists of up to six and three small patterns against
// brute force over smallSubjects (exact for patterns of up to three tokens, see there).
func FuzzRules(f *testing.F) {
	f.Add([]byte{2, 1, 0, 2, 1, 1, 3, 0, 1})
	f.Add([]byte{3, 2, 0, 2, 1, 0, 3, 3, 1, 2, 1})
	patterns, subjects := smallPatterns(), smallSubjects()
	sets := matchSets(patterns, subjects)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &fuzzReader{b: data}
		list := func(max int) []string {
			var l []string
			for range r.next() % (max + 1) {
				l = append(l, patterns[r.next()%len(patterns)])
			}
			return l
		}
		allow, deny := list(6), list(3)
		rules := mustRules(t, allow, deny)
		var allowed, denied bits
		for _, p := range allow {
			allowed = allowed.or(sets[p])
		}
		if len(allow) == 0 {
			allowed = bits{^uint64(0), ^uint64(0)}
		}
		for _, p := range deny {
			denied = denied.or(sets[p])
		}
		for _, p := range patterns {
			m := sets[p]
			want := m.within(allowed) && !(len(deny) > 0 && m.within(denied))
			if got := rules.CanSubscribe(p); got != want {
				t.Fatalf("allow %q deny %q: CanSubscribe(%q) = %v, want %v", allow, deny, p, got, want)
			}
		}
	})
}

// FuzzPatterns checks IsSubset and Overlaps on arbitrary strings: never a panic, and for valid
// patterns the answer brute force gives over the subjects made of their own tokens and one
// token neither names.
func FuzzPatterns(f *testing.F) {
	for _, p := range [][2]string{{"foo.*", "foo.>"}, {"a.b", "a.*"}, {">", "*"}, {"a.*.c", "*.b.>"}, {"x..y", ">"}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		sub, over := IsSubset(a, b), Overlaps(a, b)
		if over != Overlaps(b, a) {
			t.Fatalf("Overlaps not symmetric on %q, %q", a, b)
		}
		if ValidateSubscribe(a, 1<<20) != nil || ValidateSubscribe(b, 1<<20) != nil {
			if sub || over {
				t.Fatalf("invalid %q or %q: subset %v, overlap %v", a, b, sub, over)
			}
			return
		}
		alphabet := []string{"\x01fresh"}
		seen := map[string]bool{"*": true, ">": true}
		ta, tb := strings.Split(a, "."), strings.Split(b, ".")
		for _, tok := range append(append([]string{}, ta...), tb...) {
			if !seen[tok] {
				seen[tok] = true
				alphabet = append(alphabet, tok)
			}
		}
		maxLen := max(len(ta), len(tb)) + 1
		total, n := 0, 1
		for range maxLen {
			n *= len(alphabet)
			total += n
			if total > 20000 {
				return // too many subjects to enumerate
			}
		}
		wantSub, wantOver := true, false
		var walk func(prefix string, left int)
		walk = func(prefix string, left int) {
			if left == 0 {
				return
			}
			for _, tok := range alphabet {
				s := tok
				if prefix != "" {
					s = prefix + "." + tok
				}
				ma, mb := refMatch(a, s), refMatch(b, s)
				wantSub = wantSub && (!ma || mb)
				wantOver = wantOver || (ma && mb)
				walk(s, left-1)
			}
		}
		walk("", maxLen)
		if sub != wantSub || over != wantOver {
			t.Fatalf("IsSubset(%q, %q) = %v, want %v; Overlaps = %v, want %v", a, b, sub, wantSub, over, wantOver)
		}
	})
}
