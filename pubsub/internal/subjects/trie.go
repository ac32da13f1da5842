package subjects

import "slices"

// The trie has one node per pattern prefix, keyed by token; "*" and ">" have their own pointers,
// so a match follows at most three edges per node and never scans subscriptions. Nodes hold no
// maps until they need them: most nodes have one child and one subscription, and an empty Go
// map costs more than the rest of the node.

const (
	// smallKids is how many children a node keeps in a slice, searched linearly, before it
	// moves them to a map.
	smallKids = 8
	// smallGroups is the same for queue groups.
	smallGroups = 8
)

// node is one pattern prefix. Guarded by the owner's lock (Index.mu), or immutable (Rules).
type node[T any] struct {
	kids  []child[T] // literal children while there are at most smallKids; nil once big is set
	big   *kidMap[T] // literal children beyond smallKids
	star  *node[T]   // the "*" child
	full  *node[T]   // the ">" child; it has no children, ">" being last
	plain []*Subscription[T]
	q     *queues[T] // nil while the node has no queue subscription
}

type child[T any] struct {
	tok string
	n   *node[T]
}

// kidMap holds the children of a node that has many. peak lets a map that held many more
// entries than it does now be rebuilt smaller: Go maps never give memory back.
type kidMap[T any] struct {
	m    map[string]*node[T]
	peak int
}

// queues are the queue groups subscribed to one pattern.
type queues[T any] struct {
	list   []*group[T]
	byName map[string]int // index into list; only past smallGroups groups
}

// group is one queue group on one pattern. Members are in no particular order.
type group[T any] struct {
	name    string
	members []*Subscription[T]
}

// step is one edge on the path from the root to a node, kept by remove for pruning.
type step[T any] struct {
	parent *node[T]
	tok    string
}

// child returns the literal child for tok, or nil.
func (n *node[T]) child(tok string) *node[T] {
	if n.big != nil {
		return n.big.m[tok]
	}
	for i := range n.kids {
		if n.kids[i].tok == tok {
			return n.kids[i].n
		}
	}
	return nil
}

// next returns the child for a pattern token, wildcards included, or nil.
func (n *node[T]) next(tok string) *node[T] {
	switch tok {
	case "*":
		return n.star
	case ">":
		return n.full
	}
	return n.child(tok)
}

// makeNext returns the child for a pattern token, creating it if needed.
func (n *node[T]) makeNext(tok string) *node[T] {
	switch tok {
	case "*":
		if n.star == nil {
			n.star = &node[T]{}
		}
		return n.star
	case ">":
		if n.full == nil {
			n.full = &node[T]{}
		}
		return n.full
	}
	if c := n.child(tok); c != nil {
		return c
	}
	c := &node[T]{}
	switch {
	case n.big != nil:
		n.big.m[tok] = c
		n.big.peak = max(n.big.peak, len(n.big.m))
	case len(n.kids) < smallKids:
		n.kids = append(n.kids, child[T]{tok, c})
	default:
		m := make(map[string]*node[T], 2*smallKids)
		for _, k := range n.kids {
			m[k.tok] = k.n
		}
		m[tok] = c
		n.kids = nil
		n.big = &kidMap[T]{m: m, peak: len(m)}
	}
	return c
}

// unlink removes the child for a pattern token.
func (n *node[T]) unlink(tok string) {
	switch tok {
	case "*":
		n.star = nil
		return
	case ">":
		n.full = nil
		return
	}
	if n.big != nil {
		delete(n.big.m, tok)
		switch l := len(n.big.m); {
		case l <= smallKids/2:
			n.kids = make([]child[T], 0, l)
			for t, c := range n.big.m {
				n.kids = append(n.kids, child[T]{t, c})
			}
			n.big = nil
		case n.big.peak >= 64 && l < n.big.peak/4:
			n.big.m = resized(n.big.m)
			n.big.peak = l
		}
		return
	}
	for i := range n.kids {
		if n.kids[i].tok == tok {
			last := len(n.kids) - 1
			n.kids[i] = n.kids[last]
			n.kids[last] = child[T]{}
			n.kids = n.kids[:last]
			if last == 0 {
				n.kids = nil
			}
			return
		}
	}
}

// resized copies m into a map sized for what it holds now (maps.Clone keeps the old size).
func resized[K comparable, V any](m map[K]V) map[K]V {
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// hasSubs reports whether subscriptions end at n.
func (n *node[T]) hasSubs() bool {
	return len(n.plain) > 0 || n.q != nil
}

// empty reports whether n can be pruned.
func (n *node[T]) empty() bool {
	return len(n.plain) == 0 && n.q == nil && len(n.kids) == 0 && n.big == nil &&
		n.star == nil && n.full == nil
}

// add puts s on n and records its position in s.pos.
func (n *node[T]) add(s *Subscription[T]) {
	if s.queue == "" {
		n.plain = append(n.plain, s)
		s.pos = len(n.plain)
		return
	}
	if n.q == nil {
		n.q = &queues[T]{}
	}
	g := n.q.find(s.queue)
	if g == nil {
		g = &group[T]{name: s.queue}
		n.q.add(g)
	}
	g.members = append(g.members, s)
	s.pos = len(g.members)
}

// drop takes s off n, if it is there. Positions make this O(1): the last entry moves into the
// hole.
func (n *node[T]) drop(s *Subscription[T]) bool {
	if s.queue == "" {
		var found bool
		n.plain, found = cutAt(n.plain, s)
		return found
	}
	if n.q == nil {
		return false
	}
	g := n.q.find(s.queue)
	if g == nil {
		return false
	}
	var found bool
	if g.members, found = cutAt(g.members, s); !found {
		return false
	}
	if len(g.members) == 0 {
		n.q.remove(s.queue)
		if len(n.q.list) == 0 {
			n.q = nil
		}
	}
	return true
}

// cutAt removes s from list at the position s.pos records, and clears s.pos. A list that has
// shrunk to a quarter of its capacity is copied smaller, so that a burst of subscriptions does
// not hold memory after they go.
func cutAt[T any](list []*Subscription[T], s *Subscription[T]) ([]*Subscription[T], bool) {
	i := s.pos - 1
	if i < 0 || i >= len(list) || list[i] != s {
		return list, false
	}
	last := len(list) - 1
	if i != last {
		list[i] = list[last]
		list[i].pos = i + 1
	}
	list[last] = nil
	list = list[:last]
	s.pos = 0
	switch {
	case last == 0:
		return nil, true
	case cap(list) > 32 && last < cap(list)/4:
		return slices.Clone(list), true
	}
	return list, true
}

// find returns the group called name, or nil.
func (q *queues[T]) find(name string) *group[T] {
	if q.byName != nil {
		if i, ok := q.byName[name]; ok {
			return q.list[i]
		}
		return nil
	}
	for _, g := range q.list {
		if g.name == name {
			return g
		}
	}
	return nil
}

// add appends a new group.
func (q *queues[T]) add(g *group[T]) {
	q.list = append(q.list, g)
	switch {
	case q.byName != nil:
		q.byName[g.name] = len(q.list) - 1
	case len(q.list) > smallGroups:
		q.byName = make(map[string]int, len(q.list))
		for i, g := range q.list {
			q.byName[g.name] = i
		}
	}
}

// remove deletes the group called name, which must exist.
func (q *queues[T]) remove(name string) {
	i := -1
	if q.byName != nil {
		i = q.byName[name]
		delete(q.byName, name)
	} else {
		for j, g := range q.list {
			if g.name == name {
				i = j
				break
			}
		}
	}
	last := len(q.list) - 1
	if i != last {
		q.list[i] = q.list[last]
		if q.byName != nil {
			q.byName[q.list[i].name] = i
		}
	}
	q.list[last] = nil
	q.list = q.list[:last]
	if q.byName != nil && len(q.list) <= smallGroups/2 {
		q.byName = nil
	}
}

// trie is the pattern tree. It does no locking and no validation: Index and Rules do both.
type trie[T any] struct {
	root node[T]
}

// insert adds s under its (valid) pattern.
func (t *trie[T]) insert(s *Subscription[T]) {
	n := &t.root
	rest := s.subject
	for {
		tok, r, more := cut(rest)
		n = n.makeNext(tok)
		if !more {
			break
		}
		rest = r
	}
	n.add(s)
}

// remove takes s out and prunes the nodes it leaves empty. It reports false if s is not in
// this trie.
func (t *trie[T]) remove(s *Subscription[T]) bool {
	var buf [16]step[T]
	path := buf[:0]
	n := &t.root
	rest := s.subject
	for {
		tok, r, more := cut(rest)
		c := n.next(tok)
		if c == nil {
			return false
		}
		path = append(path, step[T]{n, tok})
		n = c
		if !more {
			break
		}
		rest = r
	}
	if !n.drop(s) {
		return false
	}
	for i := len(path) - 1; i >= 0 && n.empty(); i-- {
		path[i].parent.unlink(path[i].tok)
		n = path[i].parent
	}
	return true
}

// match appends to out every node holding subscriptions whose pattern matches subject, which
// must be a valid literal subject. A node appears once: each pattern is one path in the trie.
func (t *trie[T]) match(subject string, out []*node[T]) []*node[T] {
	return walk(&t.root, subject, out)
}

func walk[T any](n *node[T], subject string, out []*node[T]) []*node[T] {
	for {
		tok, rest, more := cut(subject)
		// At least tok is left: enough for ">".
		if f := n.full; f != nil && f.hasSubs() {
			out = append(out, f)
		}
		if st := n.star; st != nil {
			if more {
				out = walk(st, rest, out)
			} else if st.hasSubs() {
				out = append(out, st)
			}
		}
		c := n.child(tok)
		if c == nil {
			return out
		}
		if !more {
			if c.hasSubs() {
				out = append(out, c)
			}
			return out
		}
		n, subject = c, rest
	}
}

// matchesAny reports whether any pattern matches subject, without collecting anything. A
// subject with an empty token matches nothing.
func (t *trie[T]) matchesAny(subject string) bool {
	if !tokensNonEmpty(subject) {
		return false
	}
	return walkAny(&t.root, subject)
}

func walkAny[T any](n *node[T], subject string) bool {
	for {
		tok, rest, more := cut(subject)
		if n.full != nil && n.full.hasSubs() {
			return true
		}
		if st := n.star; st != nil {
			if more {
				if walkAny(st, rest) {
					return true
				}
			} else if st.hasSubs() {
				return true
			}
		}
		c := n.child(tok)
		if c == nil {
			return false
		}
		if !more {
			return c.hasSubs()
		}
		n, subject = c, rest
	}
}

// tokensNonEmpty reports whether s is one or more dot-separated non-empty tokens.
func tokensNonEmpty(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] == '.' && s[i-1] == '.' {
			return false
		}
	}
	return true
}

// build copies the subscriptions of the matched nodes into a fresh Result. Queue groups of the
// same name on different patterns become one group, as in NATS: a message goes to one member
// of each group name, whichever patterns matched.
func build[T any](nodes []*node[T]) Result[T] {
	var r Result[T]
	np, ng, gnodes := 0, 0, 0
	for _, n := range nodes {
		np += len(n.plain)
		if n.q != nil {
			ng += len(n.q.list)
			gnodes++
		}
	}
	if np > 0 {
		r.Plain = make([]*Subscription[T], 0, np)
		for _, n := range nodes {
			r.Plain = append(r.Plain, n.plain...)
		}
	}
	if ng == 0 {
		return r
	}
	r.Groups = make([]Group[T], 0, ng)
	var byName map[string]int // only when many groups come from several nodes
	for _, n := range nodes {
		if n.q == nil {
			continue
		}
		for _, g := range n.q.list {
			i := -1
			if gnodes > 1 {
				// Names are unique within a node, so only merging across nodes needs a look.
				if byName == nil && len(r.Groups) > 16 {
					byName = make(map[string]int, ng)
					for j := range r.Groups {
						byName[r.Groups[j].Name] = j
					}
				}
				if byName != nil {
					if j, ok := byName[g.name]; ok {
						i = j
					}
				} else {
					for j := range r.Groups {
						if r.Groups[j].Name == g.name {
							i = j
							break
						}
					}
				}
			}
			if i >= 0 {
				r.Groups[i].Members = slices.Clip(append(r.Groups[i].Members, g.members...))
				continue
			}
			if byName != nil {
				byName[g.name] = len(r.Groups)
			}
			r.Groups = append(r.Groups, Group[T]{Name: g.name, Members: slices.Clip(slices.Clone(g.members))})
		}
	}
	r.Groups = slices.Clip(r.Groups)
	return r
}
