// Package ftsl is the Fault-Tolerant Session Layer for Go: sessions that survive broken TCP
// connections, one-way messages whose senders still learn what became of each one, servers that
// move to another address with their sessions, and a publish/subscribe hub on top. It implements
// the protocol of Ivaki, Boychenko and Araujo, "A Fault-Tolerant Session Layer with Reliable
// One-Way Messaging and Server Migration Facility".
//
// The packages, from the bottom up:
//
//   - core: the session protocol. A Session carries a message stream each way over any number of
//     successive TCP (or TLS) connections, exactly once and in order; the client reconnects and
//     resumes by itself; heartbeats find silent dead connections; buffers are bounded and flow is
//     credit-controlled; a receiver may hold several messages and settle them in any order; a
//     Listener can be paused and its sessions exported and imported elsewhere. The wire format is
//     in core/PROTOCOL.md.
//   - oneway: Send returns a Ticket at once; the ticket later says whether the peer's session
//     layer got the message, whether its application processed it, or why it failed. Messages the
//     receiver fails are delivered again, up to a limit; Handle runs a pool of handlers.
//   - events: the event type and dispatcher the layers share.
//   - naming: the naming service through which clients find a server that moved, and resolvers
//     (watching, static, DNS SRV) for core.Config.Resolver; naming/cmd/ftsl-naming runs one.
//   - snapshot: a frozen server's state as a file (snapshot/FORMAT.md), and one-call moves.
//   - pubsub: a topic hub (NATS subjects, queue groups, request-reply, permissions) over oneway
//     sessions, with an outcome per publish; pubsub/cmd/ftsl-hub runs one.
//
// Start with oneway.Dial and oneway.Listen, core.Dial and core.Listen for the raw sessions, or
// pubsub.NewHub and pubsub.Dial for publish/subscribe.
package ftsl
