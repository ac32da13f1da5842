// Package netns is a test helper that puts a client and a server into two
// fresh Linux network namespaces, A and B, joined by a veth pair, so that a
// test can take the link down and up again while TCP connections exist —
// like pulling a network cable and plugging it back in.
//
// Typical use:
//
//	pair, err := netns.NewPair(t.Name())
//	defer pair.Close()
//	ln, err := pair.ListenB("tcp", ":0")                    // socket lives in B
//	conn, err := pair.DialA(ctx, "tcp", ln.Addr().String()) // socket lives in A
//	err = pair.LinkDown() // packets silently vanish
//	err = pair.LinkUp()   // and flow again; TCP retransmits what was lost
//
// Only the loopback devices and the veth pair inside the namespaces created
// here ever carry traffic; the host's own interfaces and addresses are never
// touched (the veth pair is created directly inside namespace A, with its
// peer end placed directly into B, so it never appears in the host
// namespace).
//
// Everything requires root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the
// iproute2 "ip" command; use Available to skip tests when that is missing.
package netns
