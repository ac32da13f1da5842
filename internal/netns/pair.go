package netns

import "sync"

// Pair is two fresh network namespaces, A and B, joined by a veth pair
// whose end VethA (in A) has address AddrA and whose end VethB (in B) has
// address AddrB, both in 10.213.0.0/24. Because every Pair lives in its own
// namespaces, several Pairs may exist at the same time with the same
// addresses.
type Pair struct {
	NameA, NameB string // namespace names, as listed by "ip netns list"
	VethA, VethB string // veth interface names inside A and B
	AddrA, AddrB string // IPv4 addresses of VethA and VethB, e.g. 10.213.0.1

	mu     sync.Mutex
	closed bool
}
