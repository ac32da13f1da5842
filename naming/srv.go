package naming

import (
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"

	"github.com/ftsl-go/ftsl/internal/ftslerr"
)

// SRVResolver resolves names through DNS SRV records (RFC 2782): it picks, among the records of
// the lowest priority, one at random in proportion to its weight, and returns "target:port". A
// server moves by changing its records; DNS caches make that slow to be seen, so SRVResolver
// does not watch (it is a core.Resolver, not a WatchingResolver): clients find the new place
// when they next reconnect.
type SRVResolver struct {
	// Service and Proto, such as "ftsl" and "tcp", make the query _service._proto.name. If both
	// are empty, the name itself is queried (it is then "_ftsl._tcp.example.com" or the like).
	Service, Proto string

	// LookupSRV queries DNS. Default net.DefaultResolver.LookupSRV; tests give their records.
	LookupSRV func(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)

	// intN draws a random number in [0, n); tests make it predictable. Default rand.N.
	intN func(n int) int
}

// Resolve returns the address of one of name's SRV records, or fails with ErrNotFound if it
// has none that can be dialled (a target "." says the service is decidedly not there).
func (r *SRVResolver) Resolve(ctx context.Context, name string) (string, error) {
	lookup := r.LookupSRV
	if lookup == nil {
		lookup = net.DefaultResolver.LookupSRV
	}
	_, recs, err := lookup(ctx, r.Service, r.Proto, name)
	if err != nil {
		return "", ftslerr.Errorf("ftsl: naming: SRV lookup of %q: %w", truncate(name), err)
	}
	rec := r.pick(recs)
	if rec == nil {
		return "", ftslerr.Errorf("%w: no usable SRV record for %q", ErrNotFound, truncate(name))
	}
	// The trailing dot of a fully qualified target would end up in TLS's ServerName.
	return net.JoinHostPort(strings.TrimSuffix(rec.Target, "."), strconv.Itoa(int(rec.Port))), nil
}

// pick chooses a record as RFC 2782 says: the lowest priority first; within it, at random in
// proportion to the weights. Records of weight 0 are chosen only when all have weight 0, then
// uniformly (the RFC gives them "a very small chance"; Go's own resolver gives them none).
func (r *SRVResolver) pick(recs []*net.SRV) *net.SRV {
	intN := r.intN
	if intN == nil {
		intN = rand.N[int]
	}
	var group []*net.SRV
	for _, rec := range recs {
		if rec == nil || rec.Port == 0 || rec.Target == "" || rec.Target == "." {
			continue
		}
		switch {
		case len(group) == 0 || rec.Priority < group[0].Priority:
			group = append(group[:0], rec)
		case rec.Priority == group[0].Priority:
			group = append(group, rec)
		}
	}
	if len(group) == 0 {
		return nil
	}
	sum := 0
	for _, rec := range group {
		sum += int(rec.Weight)
	}
	if sum == 0 {
		return group[intN(len(group))]
	}
	n := intN(sum)
	for _, rec := range group {
		if n < int(rec.Weight) {
			return rec
		}
		n -= int(rec.Weight)
	}
	return group[len(group)-1] // not reached: n < sum
}
