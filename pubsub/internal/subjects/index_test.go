package subjects

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// spec is a subscription in a table: "pattern" or "pattern queue"; its Value is the spec.
func specSub(spec string) *Subscription[string] {
	pattern, queue, _ := strings.Cut(spec, " ")
	return NewSubscription(pattern, queue, spec)
}

func TestMatchTable(t *testing.T) {
	tests := []struct {
		name    string
		subs    []string
		subject string
		plain   []string
		groups  map[string][]string
	}{
		{"literal", []string{"foo", "bar"}, "foo", []string{"foo"}, nil},
		{"literal multi-token", []string{"foo.bar.baz", "foo.bar"}, "foo.bar.baz", []string{"foo.bar.baz"}, nil},
		{"no match", []string{"foo"}, "bar", nil, nil},
		{"two-token subject, one-token sub", []string{"foo"}, "foo.bar", nil, nil},
		{"star middle", []string{"a.b.c", "a.*.c"}, "a.b.c", []string{"a.*.c", "a.b.c"}, nil},
		{"star end", []string{"a.b.c", "a.b.*"}, "a.b.c", []string{"a.b.*", "a.b.c"}, nil},
		{"star is one token", []string{"a.*"}, "a.b.c", nil, nil},
		{"star needs a token", []string{"a.*"}, "a", nil, nil},
		{"star alone", []string{"*"}, "a", []string{"*"}, nil},
		{"star star", []string{"*.*", "*"}, "a.b", []string{"*.*"}, nil},
		{"full", []string{"a.b.c", "a.>"}, "a.b.c", []string{"a.>", "a.b.c"}, nil},
		{"full needs a token", []string{"a.>"}, "a", nil, nil},
		{"full alone", []string{">"}, "a.b.c.d", []string{">"}, nil},
		{"full after star", []string{"*.>"}, "a.b", []string{"*.>"}, nil},
		{"full after star needs two", []string{"*.>"}, "a", nil, nil},
		{"mixed", []string{"a.b.c.d", "a.b.*.d", "a.b.>", "a.*.*.d", "*.b.c.*", ">", "a.b.c", "a.*.c.d.e"},
			"a.b.c.d", []string{">", "*.b.c.*", "a.*.*.d", "a.b.*.d", "a.b.>", "a.b.c.d"}, nil},
		{"wildcard characters as literals", []string{"foo.*-", "foo.>-", "foo.*"}, "foo.bar", []string{"foo.*"}, nil},
		{"wildcard characters as literals, exact", []string{"foo.*-", "foo.>-"}, "foo.*-", []string{"foo.*-"}, nil},
		{"duplicates", []string{"a.b", "a.b", "a.*"}, "a.b", []string{"a.*", "a.b", "a.b"}, nil},
		{"empty tokens match nothing", []string{">", "> q"}, "foo..bar", nil, nil},
		{"leading dot", []string{">", "> q"}, ".foo", nil, nil},
		{"trailing dot", []string{">", "> q"}, "foo.", nil, nil},
		{"only dots", []string{">", "*"}, "..", nil, nil},
		{"empty subject", []string{">", "*"}, "", nil, nil},
		{"wildcard subject matches nothing", []string{">", "a.*", "a.>"}, "a.*", nil, nil},
		{"space in subject", []string{">"}, "a b", nil, nil},
		{"queue", []string{"foo bar", "foo baz", "foo"}, "foo", []string{"foo"},
			map[string][]string{"bar": {"foo bar"}, "baz": {"foo baz"}}},
		{"queue members", []string{"foo q", "foo q", "foo r"}, "foo", nil,
			map[string][]string{"q": {"foo q", "foo q"}, "r": {"foo r"}}},
		{"queue merged across patterns", []string{"a.b q", "a.* q", "a.> q", "a.* r", "x.y q"}, "a.b", nil,
			map[string][]string{"q": {"a.* q", "a.> q", "a.b q"}, "r": {"a.* r"}}},
		{"queue and plain on one pattern", []string{"a.* q", "a.*"}, "a.b", []string{"a.*"},
			map[string][]string{"q": {"a.* q"}}},
	}
	cacheModes(t, func(t *testing.T, cfg Config) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ix := newIndex(t, cfg)
				for _, spec := range tt.subs {
					if err := ix.Insert(specSub(spec)); err != nil {
						t.Fatalf("Insert(%q): %v", spec, err)
					}
				}
				want := view{plain: tt.plain, groups: tt.groups}
				if want.groups == nil {
					want.groups = map[string][]string{}
				}
				slices.Sort(want.plain)
				// Twice: the second comes from the cache, if there is one.
				for i := range 2 {
					if got := viewOf(ix.Match(tt.subject)); !got.equal(want) {
						t.Errorf("Match(%q) #%d = %+v, want %+v", tt.subject, i, got, want)
					}
					if got := viewOf(ix.MatchBytes([]byte(tt.subject))); !got.equal(want) {
						t.Errorf("MatchBytes(%q) #%d = %+v, want %+v", tt.subject, i, got, want)
					}
				}
			})
		}
	})
}

func TestMatchLimit(t *testing.T) {
	ix := newIndex(t, Config{MaxSubjectLength: 8})
	if err := ix.Insert(specSub(">")); err != nil {
		t.Fatal(err)
	}
	if r := ix.Match("abcd.fgh"); len(r.Plain) != 1 {
		t.Errorf("8-byte subject: %d matches", len(r.Plain))
	}
	if r := ix.Match("abcd.fghi"); !r.Empty() {
		t.Errorf("9-byte subject with MaxSubjectLength 8 matched")
	}
	if err := ix.Insert(specSub("abcd.fghi")); !errors.Is(err, ErrInvalidSubject) {
		t.Errorf("Insert of a 9-byte pattern: %v", err)
	}
}

func TestInsertErrors(t *testing.T) {
	ix := newIndex(t, Config{})
	for _, bad := range []struct{ pattern, queue string }{
		{"", ""}, {".foo", ""}, {"foo.", ""}, {"foo..bar", ""}, {"foo.bar..baz", ""}, {"foo.>.bar", ""},
		{"a b", ""}, {"a\tb", ""}, {"x", "\tq"}, {"x", "a b"}, {"x", "\xff"},
	} {
		if err := ix.Insert(NewSubscription(bad.pattern, bad.queue, "")); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("Insert(%q, queue %q) = %v, want ErrInvalidSubject", bad.pattern, bad.queue, err)
		}
	}
	if err := ix.Insert(nil); !errors.Is(err, ErrInvalidSubject) {
		t.Errorf("Insert(nil) = %v", err)
	}
	s := specSub("a.b")
	if err := ix.Insert(s); err != nil {
		t.Fatal(err)
	}
	if err := ix.Insert(s); !errors.Is(err, ErrDuplicate) {
		t.Errorf("second Insert = %v, want ErrDuplicate", err)
	}
	other := newIndex(t, Config{})
	if err := other.Insert(s); !errors.Is(err, ErrDuplicate) {
		t.Errorf("Insert into a second index = %v, want ErrDuplicate", err)
	}
	if n := ix.Len(); n != 1 {
		t.Errorf("Len = %d after failed inserts, want 1", n)
	}
}

func TestRemove(t *testing.T) {
	cacheModes(t, func(t *testing.T, cfg Config) {
		ix := newIndex(t, cfg)
		sub, psub, fsub := specSub("a.b.c.d"), specSub("a.b.*.d"), specSub("a.b.>")
		q1, q2 := specSub("a.b.c.d q"), specSub("a.b.c.d q")
		for _, s := range []*Subscription[string]{sub, psub, fsub, q1, q2} {
			if err := ix.Insert(s); err != nil {
				t.Fatal(err)
			}
		}
		check := func(plain []string, group []string) {
			t.Helper()
			want := view{plain: plain, groups: map[string][]string{}}
			if group != nil {
				want.groups["q"] = group
			}
			if got := viewOf(ix.Match("a.b.c.d")); !got.equal(want) {
				t.Errorf("Match = %+v, want %+v", got, want)
			}
		}
		check([]string{"a.b.*.d", "a.b.>", "a.b.c.d"}, []string{"a.b.c.d q", "a.b.c.d q"})

		// Not in the index: a prefix of a pattern, a pattern nobody has, a twin never inserted.
		for _, s := range []*Subscription[string]{specSub("a.b.c"), specSub("x.y"), specSub("a.b.c.d"), specSub("a.b.c.d q"), specSub("a.b.c.d r"), nil} {
			if err := ix.Remove(s); !errors.Is(err, ErrNotFound) {
				t.Errorf("Remove(%v) = %v, want ErrNotFound", s, err)
			}
		}
		if ix.Len() != 5 {
			t.Fatalf("Len = %d, want 5", ix.Len())
		}
		steps := []struct {
			s     *Subscription[string]
			plain []string
			group []string
		}{
			{sub, []string{"a.b.*.d", "a.b.>"}, []string{"a.b.c.d q", "a.b.c.d q"}},
			{q1, []string{"a.b.*.d", "a.b.>"}, []string{"a.b.c.d q"}},
			{fsub, []string{"a.b.*.d"}, []string{"a.b.c.d q"}},
			{q2, []string{"a.b.*.d"}, nil},
			{psub, nil, nil},
		}
		for i, st := range steps {
			if err := ix.Remove(st.s); err != nil {
				t.Fatalf("Remove(%q): %v", st.s.Value, err)
			}
			if err := ix.Remove(st.s); !errors.Is(err, ErrNotFound) {
				t.Errorf("second Remove(%q) = %v", st.s.Value, err)
			}
			check(st.plain, st.group)
			if ix.Len() != 4-i {
				t.Errorf("Len = %d, want %d", ix.Len(), 4-i)
			}
		}
		if !ix.trieEmpty() {
			t.Errorf("trie not pruned after the last Remove")
		}
		// A removed subscription can go back in.
		if err := ix.Insert(sub); err != nil {
			t.Errorf("Insert after Remove: %v", err)
		}
	})
}

func TestRemoveFromOtherIndex(t *testing.T) {
	a, b := newIndex(t, Config{}), newIndex(t, Config{})
	sa, sb := specSub("x.y"), specSub("x.y")
	if err := a.Insert(sa); err != nil {
		t.Fatal(err)
	}
	if err := b.Insert(sb); err != nil {
		t.Fatal(err)
	}
	// Both sit at position 1 of the same pattern; the pointers tell them apart.
	if err := b.Remove(sa); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove from the wrong index = %v", err)
	}
	if r := b.Match("x.y"); len(r.Plain) != 1 || r.Plain[0] != sb {
		t.Errorf("b lost its subscription")
	}
}

func TestPruning(t *testing.T) {
	ix := newIndex(t, Config{})
	subs := []*Subscription[string]{specSub("a.b.c.d.e.f"), specSub("a.b.*.d.e.>"), specSub("a.b.c q"), specSub("a.b")}
	for _, s := range subs {
		if err := ix.Insert(s); err != nil {
			t.Fatal(err)
		}
	}
	if n := countNodes(&ix.trie.root); n != 10 {
		t.Errorf("%d nodes, want 10 (a, b, c, d, e, f, *, d, e, >)", n)
	}
	if err := ix.Remove(subs[0]); err != nil {
		t.Fatal(err)
	}
	if n := countNodes(&ix.trie.root); n != 7 {
		t.Errorf("%d nodes after removing a.b.c.d.e.f, want 7 (a, b, c, *, d, e, >)", n)
	}
	for _, s := range subs[1:] {
		if err := ix.Remove(s); err != nil {
			t.Fatal(err)
		}
	}
	if !ix.trieEmpty() {
		t.Errorf("%d nodes left", countNodes(&ix.trie.root))
	}
}

// TestManyOnOneNode removes from the middle, the front and the back of a long list, as NATS's
// TestSublistRemoveWithLargeSubs does, for plain subscriptions and for a queue group.
func TestManyOnOneNode(t *testing.T) {
	for _, queue := range []string{"", "q"} {
		ix := newIndex(t, Config{})
		var subs []*Subscription[string]
		for i := range 600 {
			s := NewSubscription("foo", queue, fmt.Sprint(i))
			subs = append(subs, s)
			if err := ix.Insert(s); err != nil {
				t.Fatal(err)
			}
		}
		members := func() []*Subscription[string] {
			r := ix.Match("foo")
			if queue == "" {
				return r.Plain
			}
			if len(r.Groups) != 1 {
				t.Fatalf("%d groups", len(r.Groups))
			}
			return r.Groups[0].Members
		}
		m := members()
		gone := []*Subscription[string]{m[300], m[0], m[len(m)-1]}
		for _, s := range gone {
			if err := ix.Remove(s); err != nil {
				t.Fatal(err)
			}
		}
		m = members()
		if len(m) != 597 {
			t.Errorf("queue %q: %d left, want 597", queue, len(m))
		}
		for _, s := range gone {
			if slices.Contains(m, s) {
				t.Errorf("queue %q: removed %s still matched", queue, s.Value)
			}
		}
		// Every one left can still be removed: positions stayed right through the moves.
		for _, s := range subs {
			if !slices.Contains(gone, s) {
				if err := ix.Remove(s); err != nil {
					t.Fatalf("queue %q: Remove(%s): %v", queue, s.Value, err)
				}
			}
		}
		if !ix.trieEmpty() {
			t.Errorf("queue %q: trie not empty", queue)
		}
	}
}

// TestManyChildrenAndGroups takes nodes past the sizes where children and queue groups move
// from slices to maps, and back.
func TestManyChildrenAndGroups(t *testing.T) {
	ix := newIndex(t, Config{})
	var subs []*Subscription[string]
	for i := range 300 {
		for _, spec := range []string{fmt.Sprintf("k.%d", i), fmt.Sprintf("g.x g%d", i), fmt.Sprintf("g.* g%d", i%20)} {
			s := specSub(spec)
			subs = append(subs, s)
			if err := ix.Insert(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(live []*Subscription[string]) {
		t.Helper()
		for _, subject := range []string{"k.0", "k.150", "k.299", "k.300", "g.x", "g.y"} {
			if got, want := viewOf(ix.Match(subject)), refView(live, subject); !got.equal(want) {
				t.Fatalf("Match(%q): got %d plain, %d groups; want %d, %d", subject, len(got.plain), len(got.groups), len(want.plain), len(want.groups))
			}
		}
	}
	check(subs)
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(subs), func(i, j int) { subs[i], subs[j] = subs[j], subs[i] })
	for len(subs) > 0 {
		if err := ix.Remove(subs[len(subs)-1]); err != nil {
			t.Fatal(err)
		}
		subs = subs[:len(subs)-1]
		if len(subs)%50 == 0 {
			check(subs)
		}
	}
	if !ix.trieEmpty() {
		t.Errorf("trie not empty")
	}
}

func TestCacheInvalidation(t *testing.T) {
	ix := newIndex(t, Config{})
	plain := func(subject string) []string { return viewOf(ix.Match(subject)).plain }
	insert := func(spec string) *Subscription[string] {
		s := specSub(spec)
		if err := ix.Insert(s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	remove := func(s *Subscription[string]) {
		if err := ix.Remove(s); err != nil {
			t.Fatal(err)
		}
	}
	cached := func(subject string) bool {
		_, ok := ix.cache.get(subject, ix.wgen.Load())
		return ok
	}

	// An empty result is cached too, and a new literal subscription replaces it.
	if got := plain("a.b"); got != nil {
		t.Fatalf("empty index matched %v", got)
	}
	if !cached("a.b") {
		t.Fatalf("result for a.b not cached")
	}
	lit := insert("a.b")
	if got := plain("a.b"); !slices.Equal(got, []string{"a.b"}) {
		t.Errorf("after inserting a.b: %v", got)
	}
	// A wildcard subscription changes cached results for subjects it matches.
	star := insert("a.*")
	if got := plain("a.b"); !slices.Equal(got, []string{"a.*", "a.b"}) {
		t.Errorf("after inserting a.*: %v", got)
	}
	full := insert(">")
	if got := plain("a.b"); !slices.Equal(got, []string{">", "a.*", "a.b"}) {
		t.Errorf("after inserting >: %v", got)
	}
	// A literal on another subject leaves this entry alone, and does not show up in it.
	plain("a.b")
	insert("a.c")
	if !cached("a.b") {
		t.Errorf("inserting a.c dropped the entry for a.b")
	}
	if got := plain("a.b"); !slices.Equal(got, []string{">", "a.*", "a.b"}) {
		t.Errorf("after inserting a.c: %v", got)
	}
	// Queue subscriptions invalidate as plain ones do.
	q := insert("a.b q")
	if g := ix.Match("a.b").Groups; len(g) != 1 || len(g[0].Members) != 1 {
		t.Errorf("after inserting a queue subscription: %v", g)
	}
	remove(q)
	if g := ix.Match("a.b").Groups; len(g) != 0 {
		t.Errorf("after removing the queue subscription: %v", g)
	}
	remove(star)
	if got := plain("a.b"); !slices.Equal(got, []string{">", "a.b"}) {
		t.Errorf("after removing a.*: %v", got)
	}
	remove(lit)
	if got := plain("a.b"); !slices.Equal(got, []string{">"}) {
		t.Errorf("after removing a.b: %v", got)
	}
	remove(full)
	if got := plain("a.b"); got != nil {
		t.Errorf("after removing >: %v", got)
	}
}

func TestCacheHitAllocs(t *testing.T) {
	ix := newIndex(t, Config{})
	for _, spec := range []string{"orders.eu.created", "orders.*.created", "orders.> audit", "orders.>"} {
		if err := ix.Insert(specSub(spec)); err != nil {
			t.Fatal(err)
		}
	}
	subject := "orders.eu.created"
	b := []byte(subject)
	ix.Match(subject)
	if n := testing.AllocsPerRun(1000, func() { ix.Match(subject) }); n != 0 {
		t.Errorf("Match on a cache hit: %v allocs", n)
	}
	if n := testing.AllocsPerRun(1000, func() { ix.MatchBytes(b) }); n != 0 {
		t.Errorf("MatchBytes on a cache hit: %v allocs", n)
	}
	r := ix.Match(subject)
	if len(r.Plain) != 3 || len(r.Groups) != 1 {
		t.Fatalf("result %+v", viewOf(r))
	}
	accept := func(s *Subscription[string]) bool { return s != r.Plain[0] }
	if n := testing.AllocsPerRun(1000, func() { r.Groups[0].Pick(7, accept); r.Groups[0].PickRandom(accept) }); n != 0 {
		t.Errorf("Pick: %v allocs", n)
	}
}

func TestCacheBounded(t *testing.T) {
	ix := newIndex(t, Config{CacheSize: 100})
	if err := ix.Insert(specSub(">")); err != nil {
		t.Fatal(err)
	}
	for i := range 10000 {
		if r := ix.Match(fmt.Sprintf("s.%d", i)); len(r.Plain) != 1 {
			t.Fatalf("s.%d: %d matches", i, len(r.Plain))
		}
	}
	// The bound is per shard, rounded up.
	if n := ix.cache.len(); n > 100+cacheShards {
		t.Errorf("cache holds %d entries, bound 100", n)
	}
	// Invalid subjects are not cached at all.
	small := newIndex(t, Config{CacheSize: 16})
	for i := range 1000 {
		small.Match(fmt.Sprintf("bad..%d", i))
	}
	if n := small.cache.len(); n != 0 {
		t.Errorf("%d invalid subjects cached", n)
	}
}

// TestCacheSecondChance: a subject matched between every two one-off subjects keeps its entry
// through eviction far more often than not.
func TestCacheSecondChance(t *testing.T) {
	ix := newIndex(t, Config{CacheSize: 64})
	ix.Match("hot")
	lost := 0
	for i := range 5000 {
		if _, ok := ix.cache.get("hot", ix.wgen.Load()); !ok {
			lost++
		}
		ix.Match("hot")
		ix.Match(fmt.Sprintf("cold.%d", i))
	}
	// Each cold subject is matched once, so its used bit is never set: an eviction always
	// finds one before it would take the hot subject. Evicting at random loses the hot
	// subject about once in four evictions of its shard, some 50 times here.
	if lost > 5 {
		t.Errorf("hot subject evicted %d times in 5000", lost)
	}
}

func TestConfig(t *testing.T) {
	for _, cfg := range []Config{{MaxSubjectLength: -1}, {CacheSize: -2}, {CacheSize: MaxCacheSize + 1}} {
		_, err := New[int](cfg)
		if err == nil {
			t.Errorf("New(%+v) accepted", cfg)
			continue
		}
		field := "MaxSubjectLength"
		if cfg.CacheSize != 0 {
			field = "CacheSize"
		}
		if !strings.Contains(err.Error(), field) || !strings.HasPrefix(err.Error(), "ftsl: ") {
			t.Errorf("New(%+v) = %q, want it to name %s", cfg, err, field)
		}
	}
	ix, err := New[int](Config{})
	if err != nil || ix.maxLen != DefaultMaxLength || ix.cache.perShard != DefaultCacheSize/cacheShards {
		t.Errorf("defaults: %v, %+v", err, ix)
	}
	if ix, _ := New[int](Config{CacheSize: -1}); ix.cache != nil {
		t.Errorf("CacheSize -1 left a cache")
	}
}

func TestPick(t *testing.T) {
	var members []*Subscription[string]
	for i := range 5 {
		members = append(members, NewSubscription("x", "q", fmt.Sprint(i)))
	}
	g := Group[string]{Name: "q", Members: members}
	for start := range uint64(12) {
		if got := g.Pick(start, nil); got != members[start%5] {
			t.Errorf("Pick(%d) = %s", start, got.Value)
		}
	}
	notTwo := func(s *Subscription[string]) bool { return s.Value != "2" }
	if got := g.Pick(2, notTwo); got != members[3] {
		t.Errorf("Pick(2) skipping 2 = %s, want 3", got.Value)
	}
	if got := g.Pick(7, func(s *Subscription[string]) bool { return s.Value == "1" }); got != members[1] {
		t.Errorf("Pick wrapping around = %v", got)
	}
	never := func(*Subscription[string]) bool { return false }
	if g.Pick(0, never) != nil || g.PickRandom(never) != nil || (Group[string]{}).Pick(0, nil) != nil || (Group[string]{}).PickRandom(nil) != nil {
		t.Errorf("a pick where nothing is acceptable returned a member")
	}
	seen := map[string]int{}
	for range 2000 {
		m := g.PickRandom(notTwo)
		if m == nil || m.Value == "2" {
			t.Fatalf("PickRandom returned %v", m)
		}
		seen[m.Value]++
	}
	for _, v := range []string{"0", "1", "3", "4"} {
		// 500 expected each; the bound is many standard deviations (about 19) wide.
		if seen[v] < 350 || seen[v] > 650 {
			t.Errorf("PickRandom: %v", seen)
		}
	}
}

// TestConcurrent runs matchers against inserts and removes, under -race. Subscriptions that
// stay in the index must be in every result; after the churn, every result must be exact,
// which a result computed before a change and stored after it would break.
func TestConcurrent(t *testing.T) {
	ix := newIndex(t, Config{CacheSize: 64})
	stay := []*Subscription[string]{specSub("a.b"), specSub("a.*"), specSub("> q")}
	for _, s := range stay {
		if err := ix.Insert(s); err != nil {
			t.Fatal(err)
		}
	}
	subjects := []string{"a.b", "a.c", "b.c", "a.b.c"}
	churn := []string{"a.b", "a.*", "a.>", "*.b", "a.b q", "a.c", "b.*.c", "> q", ">"}
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				subject := subjects[(i+w)%len(subjects)]
				var r Result[string]
				if i%2 == 0 {
					r = ix.Match(subject)
				} else {
					r = ix.MatchBytes([]byte(subject))
				}
				for _, s := range stay {
					if !refMatch(s.subject, subject) {
						continue
					}
					found := slices.Contains(r.Plain, s)
					for _, g := range r.Groups {
						found = found || slices.Contains(g.Members, s)
					}
					if !found {
						select {
						case errs <- fmt.Sprintf("Match(%q) missed %q", subject, s.Value):
						default:
						}
						return
					}
				}
			}
		}()
	}
	rounds := 3000
	if raceEnabled {
		rounds = 1000
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var live []*Subscription[string]
	for range rounds {
		if len(live) > 0 && rng.IntN(2) == 0 {
			i := rng.IntN(len(live))
			if err := ix.Remove(live[i]); err != nil {
				t.Fatal(err)
			}
			live = slices.Delete(live, i, i+1)
		} else {
			s := specSub(churn[rng.IntN(len(churn))])
			if err := ix.Insert(s); err != nil {
				t.Fatal(err)
			}
			live = append(live, s)
		}
		runtime.Gosched()
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	all := append(slices.Clone(stay), live...)
	for _, subject := range subjects {
		if got, want := viewOf(ix.Match(subject)), refView(all, subject); !got.equal(want) {
			t.Errorf("after the churn, Match(%q) = %+v, want %+v", subject, got, want)
		}
	}
}

// TestMillion inserts and removes a million subscriptions (a tenth of that under -race, which
// is ten times slower) and checks the index ends empty. The time it takes, and that it grows
// linearly, is in BenchmarkInsertRemoveMany.
func TestMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	n := 1_000_000
	if raceEnabled {
		n = 100_000
	}
	ix := newIndex(t, Config{})
	subs := millionSubs(n)
	for _, s := range subs {
		if err := ix.Insert(s); err != nil {
			t.Fatal(err)
		}
	}
	if ix.Len() != n {
		t.Fatalf("Len = %d, want %d", ix.Len(), n)
	}
	for _, subject := range []string{"m.7.0", "m.3.4999", "w.16.x"} {
		if r := ix.Match(subject); len(r.Plain) == 0 {
			t.Errorf("Match(%q) found nothing", subject)
		}
	}
	for _, s := range subs {
		if err := ix.Remove(s); err != nil {
			t.Fatal(err)
		}
	}
	if ix.Len() != 0 || !ix.trieEmpty() {
		t.Errorf("after removing all: Len %d, trie empty %v", ix.Len(), ix.trieEmpty())
	}
}

// millionSubs makes n subscriptions: distinct literals spread over a two-level tree, with one
// in 16 a wildcard and one in 16 in a queue group.
func millionSubs(n int) []*Subscription[string] {
	subs := make([]*Subscription[string], n)
	for i := range subs {
		switch i % 16 {
		case 0:
			subs[i] = NewSubscription(fmt.Sprintf("w.%d.*", i%1000), "", "")
		case 1:
			subs[i] = NewSubscription(fmt.Sprintf("m.%d.%d", i%10, i/10), fmt.Sprintf("q%d", i%7), "")
		default:
			subs[i] = NewSubscription(fmt.Sprintf("m.%d.%d", i%10, i/10), "", "")
		}
	}
	return subs
}

// TestMemoryPerSubscription measures the heap an index and its subscriptions take, per
// subscription (the Subscription structs, with their copied subjects, included). Run with -v to
// see the figures; the bound only catches a blow-up.
func TestMemoryPerSubscription(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	shapes := []struct {
		name    string
		pattern func(i int) string
	}{
		{"distinct literals room.<i>", func(i int) string { return fmt.Sprintf("room.%d", i) }},
		{"distinct literals user.<i>.inbox", func(i int) string { return fmt.Sprintf("user.%d.inbox", i) }},
		{"shared wildcard chat.*.msg", func(int) string { return "chat.*.msg" }},
		{"shared wildcard events.>", func(int) string { return "events.>" }},
	}
	for _, n := range []int{10_000, 100_000} {
		for _, sh := range shapes {
			perSub := heapPerSub(t, n, sh.pattern)
			t.Logf("%7d subscriptions, %-32s %5.0f bytes each", n, sh.name, perSub)
			if perSub > 400 {
				t.Errorf("%d subscriptions on %s: %.0f bytes each", n, sh.name, perSub)
			}
		}
	}
}

func heapPerSub(t *testing.T, n int, pattern func(int) string) float64 {
	patterns := make([]string, n)
	for i := range patterns {
		patterns[i] = pattern(i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ix, err := New[uint64](Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range patterns {
		if err := ix.Insert(NewSubscription[uint64](p, "", uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(ix)
	runtime.KeepAlive(patterns)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// TestCacheRejectsStaleStore replays, one step at a time, a Match that walks the trie, loses
// the processor while an Insert changes the answer, then stores what it found: the store must
// not happen, or the stale answer would be served until the next change.
func TestCacheRejectsStaleStore(t *testing.T) {
	for _, pattern := range []string{"a.b", "a.*"} {
		ix := newIndex(t, Config{})
		// The first half of matchSlow.
		ix.mu.RLock()
		g0, w0 := ix.gen.Load(), ix.wgen.Load()
		var buf [16]*node[string]
		r := build(ix.trie.match("a.b", buf[:0]))
		ix.mu.RUnlock()

		if err := ix.Insert(specSub(pattern)); err != nil {
			t.Fatal(err)
		}
		// The second half.
		ix.cache.put("a.b", r, w0, g0, &ix.gen)
		if got := ix.Match("a.b"); len(got.Plain) != 1 {
			t.Errorf("%s inserted between walk and store: Match = %d subscriptions, want 1", pattern, len(got.Plain))
		}
	}
}
