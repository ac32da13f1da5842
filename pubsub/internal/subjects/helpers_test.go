package subjects

import (
	"slices"
	"strings"
	"testing"
)

// refMatch is the obviously right matcher the index is checked against: tokens compared one by
// one, "*" taking one, a final ">" taking one or more.
func refMatch(pattern, subject string) bool {
	if subject == "" {
		return false
	}
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for _, t := range s {
		if t == "" {
			return false
		}
	}
	for i, t := range p {
		if t == ">" && i == len(p)-1 {
			return len(s) > i
		}
		if i >= len(s) || (t != "*" && t != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}

// view is a Result reduced to comparable text: plain subscriptions by Value, sorted, and
// groups by name with their members sorted.
type view struct {
	plain  []string
	groups map[string][]string
}

func viewOf(r Result[string]) view {
	v := view{groups: map[string][]string{}}
	for _, s := range r.Plain {
		v.plain = append(v.plain, s.Value)
	}
	slices.Sort(v.plain)
	for _, g := range r.Groups {
		if _, dup := v.groups[g.Name]; dup {
			v.groups[g.Name] = append(v.groups[g.Name], "DUPLICATE GROUP")
		}
		var m []string
		for _, s := range g.Members {
			m = append(m, s.Value)
		}
		slices.Sort(m)
		v.groups[g.Name] = append(v.groups[g.Name], m...)
	}
	return v
}

// refView is what a set of subscriptions should give for subject.
func refView(subs []*Subscription[string], subject string) view {
	v := view{groups: map[string][]string{}}
	for _, s := range subs {
		if !refMatch(s.subject, subject) {
			continue
		}
		if s.queue == "" {
			v.plain = append(v.plain, s.Value)
		} else {
			v.groups[s.queue] = append(v.groups[s.queue], s.Value)
		}
	}
	slices.Sort(v.plain)
	for _, m := range v.groups {
		slices.Sort(m)
	}
	return v
}

func (v view) equal(w view) bool {
	if !slices.Equal(v.plain, w.plain) || len(v.groups) != len(w.groups) {
		return false
	}
	for k, m := range v.groups {
		if !slices.Equal(m, w.groups[k]) {
			return false
		}
	}
	return true
}

func newIndex(t testing.TB, cfg Config) *Index[string] {
	t.Helper()
	ix, err := New[string](cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// cacheModes runs f with the cache on and off.
func cacheModes(t *testing.T, f func(t *testing.T, cfg Config)) {
	t.Run("cache", func(t *testing.T) { f(t, Config{}) })
	t.Run("nocache", func(t *testing.T) { f(t, Config{CacheSize: -1}) })
}

// empty reports whether the trie has no node left under the root.
func (ix *Index[T]) trieEmpty() bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.trie.root.empty()
}

// nodes counts the trie's nodes, the root excluded.
func countNodes[T any](n *node[T]) int {
	c := 0
	visit := func(k *node[T]) {
		if k != nil {
			c += 1 + countNodes(k)
		}
	}
	for _, k := range n.kids {
		visit(k.n)
	}
	if n.big != nil {
		for _, k := range n.big.m {
			visit(k)
		}
	}
	visit(n.star)
	visit(n.full)
	return c
}
