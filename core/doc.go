// Package core is FTSL's session protocol: a Session carries a stream of messages each way between
// a client and a server, exactly once and in order, over any number of successive TCP (or TLS)
// connections. When a connection breaks, the client reconnects (asking its Resolver where the
// server is now) and both sides resume where they were; heartbeats find connections that died
// silently. The wire format is in PROTOCOL.md beside this file.
//
// A client opens a session with Dial; a server takes them from a Listener (Listen, Accept). Then
// both ends are the same:
//
//   - Send (or TrySend, or a MessageWriter for a message too big to hold) queues a message and
//     returns its ID once it is in the sent buffer, asking the peer for an acknowledgement level:
//     AckNone, AckDelivered (the peer application was handed it) or AckProcessed (the peer
//     application settled it). An Observer hears how far the peer got, and of every failure.
//   - Recv returns the next message; the application holds it, its Data valid, until it calls
//     Settle, with nil (processed) or an error (failed, the reason reaching the sender). Up to
//     Config.MaxInFlight messages may be held at once, by several goroutines, and settled in any
//     order. Requeue gives a held message back to be received again.
//   - Close ends a session gracefully (everything sent acknowledged first), Abort at once.
//
// Every buffer is bounded (Config), and the peer may send only what the receiver granted it, so a
// slow reader holds back data, never acknowledgements or heartbeats. A Listener defends itself
// against strangers: deadlines on handshakes, places per address, busy answers, memory budgets.
// A Listener can also move with its sessions: Pause, Export, and NewListenerFrom in the process
// that takes over, where the clients resume (package snapshot writes the state to a file).
//
// The layers above, oneway (tickets, redelivery) and pubsub, are built on this package; most
// applications use them rather than core directly.
package core
