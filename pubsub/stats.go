package pubsub

import "sync/atomic"

// HubStats is a snapshot of a hub's load, for monitoring.
type HubStats struct {
	Clients       int    // connected clients, in-process ones included
	Subscriptions int    // subscriptions of all clients, queue-group members included
	Published     uint64 // publishes routed since the hub started
	Sent          uint64 // copies of them handed to subscribers' sessions
	SlowDropped   uint64 // copies not sent because their subscriber was too slow (ErrSlowConsumer)
	// BufferMemory is what the clients' sessions hold in send and receive buffers. An idle session
	// gives its buffers back (core.Config.HeartbeatInterval after its last traffic), so a hub of
	// idle clients holds next to none.
	BufferMemory int
}

// hubCounters are the hub's running totals: added to once per publish, not per copy, so that
// publishers on both cores do not fight over one cache line for every subscriber.
type hubCounters struct {
	published   atomic.Uint64
	sent        atomic.Uint64
	slowDropped atomic.Uint64
}

// Stats returns the hub's figures now.
func (h *Hub) Stats() HubStats {
	h.mu.Lock()
	members := make([]*member, 0, len(h.members))
	for m := range h.members {
		members = append(members, m)
	}
	h.mu.Unlock()
	st := HubStats{
		Clients:       len(members),
		Subscriptions: h.index.Len(),
		Published:     h.counts.published.Load(),
		Sent:          h.counts.sent.Load(),
		SlowDropped:   h.counts.slowDropped.Load(),
	}
	for _, m := range members {
		st.BufferMemory += m.sess.Stats().BufferMemory
	}
	return st
}
