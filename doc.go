// Package ftsl is the Fault-Tolerant Session Layer for Go: sessions that survive broken TCP
// connections, one-way messages whose senders still learn what became of each one, and servers
// that can move to another machine without their clients noticing. It implements the protocol of
// Ivaki, Boychenko and Araujo, "A Fault-Tolerant Session Layer with Reliable One-Way Messaging and
// Server Migration Facility".
//
// The packages, from the bottom up:
//
//   - core: the session protocol. A Session carries a message stream each way over any number of
//     successive TCP (or TLS) connections, exactly once and in order; the client reconnects and
//     resumes by itself; heartbeats find silent dead connections; buffers are bounded and flow is
//     credit-controlled. The wire format is in core/PROTOCOL.md.
//   - oneway: Send returns a Ticket at once; the ticket later says whether the peer's session
//     layer got the message, whether its application processed it, or why it failed.
//   - events: the event type and dispatcher the layers above share.
//   - pubsub: topics, a hub and clients over sessions.
//   - naming: where a server is now, for clients that reconnect after it moved.
//   - snapshot: checkpoint files a moving server writes and its successor reads.
//
// Start with core.Dial and core.Listen; examples/ holds complete programs.
package ftsl
