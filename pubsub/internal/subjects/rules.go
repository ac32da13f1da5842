package subjects

import (
	"math"
	"strings"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// Rules say which subjects a client may use, with NATS's semantics: a list of allow patterns
// (empty: everything is allowed) and a list of deny patterns, deny winning over allow. A client
// typically has two, one for publishing and one for subscribing, as a NATS user has. A nil
// *Rules allows everything. Rules never change once made, so any number of goroutines may use
// them at once without locking.
type Rules struct {
	allow, deny   [][]string      // the patterns, split into tokens
	denyText      []string        // the deny patterns whole
	allowT, denyT *trie[struct{}] // the same patterns for matching; nil when the list is empty
}

// NewRules checks the patterns (ValidateSubscribe with maxLen) and returns the rules. The error
// wraps ErrInvalidSubject and names the offending entry, such as deny[2].
func NewRules(allow, deny []string, maxLen int) (*Rules, error) {
	r := &Rules{}
	var err error
	if r.allow, r.allowT, err = compile("allow", allow, maxLen); err != nil {
		return nil, err
	}
	if r.deny, r.denyT, err = compile("deny", deny, maxLen); err != nil {
		return nil, err
	}
	for _, d := range r.deny {
		r.denyText = append(r.denyText, strings.Join(d, "."))
	}
	return r, nil
}

func compile(list string, patterns []string, maxLen int) ([][]string, *trie[struct{}], error) {
	if len(patterns) == 0 {
		return nil, nil, nil
	}
	toks := make([][]string, len(patterns))
	t := &trie[struct{}]{}
	for i, p := range patterns {
		if err := ValidateSubscribe(p, maxLen); err != nil {
			return nil, nil, ftslerr.Errorf("%w (Rules %s[%d])", err, list, i)
		}
		p = strings.Clone(p)
		toks[i] = strings.Split(p, ".")
		t.insert(&Subscription[struct{}]{subject: p})
	}
	return toks, t, nil
}

// CanPublish reports whether publishing to subject is allowed: some allow pattern matches it
// (or there are none) and no deny pattern does. subject should have passed ValidatePublish; one
// with an empty token is refused, even by nil Rules. It allocates nothing.
func (r *Rules) CanPublish(subject string) bool {
	if !tokensNonEmpty(subject) {
		return false
	}
	if r == nil {
		return true
	}
	if r.allowT != nil && !walkAny(&r.allowT.root, subject) {
		return false
	}
	return r.denyT == nil || !walkAny(&r.denyT.root, subject)
}

// CanSubscribe reports whether a subscription to pattern is allowed: every subject pattern can
// match is allowed (together the allow patterns cover it, so "a.>" is allowed by "a.*" plus
// "a.*.>", and not by "a.*" alone), and the deny patterns together do not cover it all. A
// pattern that only overlaps a deny pattern, such as "a.*" against deny "a.secret", is allowed;
// the hub then filters its messages with Deliverable (see NeedsDeliveryCheck). An invalid
// pattern is refused.
//
// This is stricter than NATS, whose server (client.go canSubscribe, as read in its source)
// matches the pattern's tokens against the allow list as if they were a subject, which lets
// "a.>" through an allow of "a.*".
func (r *Rules) CanSubscribe(pattern string) bool {
	if p, _ := check(pattern, math.MaxInt, false); p != probNone {
		return false
	}
	if r == nil {
		return true
	}
	toks := strings.Split(pattern, ".")
	if r.allow != nil && !covers(r.allow, toks) {
		return false
	}
	return r.deny == nil || !covers(r.deny, toks)
}

// NeedsDeliveryCheck reports whether a subscription to pattern, once allowed, can match a
// subject that a deny pattern refuses, so that the hub must ask Deliverable for each message
// it would deliver on it. It is false for literal patterns that CanSubscribe allowed.
func (r *Rules) NeedsDeliveryCheck(pattern string) bool {
	if r == nil || r.deny == nil {
		return false
	}
	if p, _ := check(pattern, math.MaxInt, false); p != probNone {
		return false
	}
	for _, d := range r.denyText {
		if overlaps(pattern, d) {
			return true
		}
	}
	return false
}

// Deliverable reports whether a message on subject may be delivered: no deny pattern matches
// it. Allow patterns are not consulted: CanSubscribe made sure every subject the subscription
// matches is allowed. It allocates nothing.
func (r *Rules) Deliverable(subject string) bool {
	return r == nil || r.denyT == nil || !r.denyT.matchesAny(subject)
}

// covers reports whether the patterns in set together match every subject that p matches.
func covers(set [][]string, p []string) bool {
	cand := make([]int, len(set))
	for i := range cand {
		cand[i] = i
	}
	return coverFrom(set, cand, p, 0)
}

// coverFrom reports whether the candidates, which all match p's first i tokens, together
// match every subject that p matches. A wildcard in p can stand for a token that no literal
// in any pattern names (tokens are unbounded), so only wildcards in the set cover it.
func coverFrom(set [][]string, cand []int, p []string, i int) bool {
	for {
		if len(cand) == 0 {
			return false
		}
		if i == len(p) {
			for _, c := range cand {
				if len(set[c]) == i {
					return true
				}
			}
			return false
		}
		for _, c := range cand {
			if q := set[c]; len(q) > i && q[i] == ">" {
				return true // p has a token left here, and ">" takes any number
			}
		}
		t := p[i]
		if t == ">" {
			return coverTail(set, cand, i)
		}
		next := cand[:0:0]
		for _, c := range cand {
			if q := set[c]; len(q) > i && (q[i] == "*" || q[i] == t) {
				next = append(next, c)
			}
		}
		cand, i = next, i+1
	}
}

// coverTail reports whether the candidates together match every run of one or more tokens
// from position i on: one token needs a pattern ending at i+1 with "*" (or having ">" at i),
// longer runs need the same again from i+1, among the patterns with "*" at i.
func coverTail(set [][]string, cand []int, i int) bool {
	for {
		for _, c := range cand {
			if q := set[c]; len(q) > i && q[i] == ">" {
				return true
			}
		}
		stars := cand[:0:0]
		ends := false
		for _, c := range cand {
			if q := set[c]; len(q) > i && q[i] == "*" {
				stars = append(stars, c)
				ends = ends || len(q) == i+1
			}
		}
		if !ends {
			return false
		}
		cand, i = stars, i+1
	}
}
