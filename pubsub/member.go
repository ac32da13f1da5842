package pubsub

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub/internal/subjects"
	"github.com/ftsl-go/ftsl/pubsub/internal/wire"
)

// member is one client of the hub, as the hub sees it.
type member struct {
	hub  *Hub
	sess *oneway.Session
	id   uint64
	ln   *oneway.Listener // the listener that accepted its session

	// Owned by the goroutine draining the session (one at a time: drainMu).
	drainMu   sync.Mutex
	connected bool
	refused   bool
	names     interner // subjects seen, so routing allocates no string per publish
	hdr       []byte   // scratch for MSG headers
	// flush holds the wake-ups of the subscribers' writers for what one drain routed: each
	// writer is woken once per drain, not once per message.
	flush oneway.Flusher

	// Set once by CONNECT, read by everyone after.
	identity string
	inbox    string
	perms    *Permissions // as Authenticate gave them: an export takes them
	rules    *rules
	noEcho   bool // none of its publishes go to its own subscriptions (Config.NoEcho)

	// The publishes it made whose outcome is still to come, for an export to take: a list
	// through the publishes themselves, so that following one costs no allocation.
	pubsMu sync.Mutex
	pubs   *pubState

	mu   sync.Mutex // guards what follows
	subs map[uint64]*hubSub
	gone bool
	// Outcomes and notices that found the session full, oldest first; the housekeeper sends
	// them as room opens.
	waiting    [][]byte
	hasWaiting atomic.Bool
	// throttled: waiting reached maxWaiting, and drain stopped taking the client's messages
	// until the housekeeper sent them: a client that never reads cannot grow the hub.
	throttled atomic.Bool
}

// maxWaiting bounds a member's waiting outcomes and notices.
const maxWaiting = 1024

// hubSub is one subscription at the hub.
type hubSub struct {
	m       *member
	sid     uint64
	subject string
	queue   string
	// filter: the subscription's pattern overlaps subjects it may not receive (denied, or other
	// clients' inboxes), checked per message.
	filter bool
	entry  *subjects.Subscription[*hubSub]
	missed atomic.Uint64 // messages it could not take (slow consumer), not yet noticed to it
}

const inboxPrefix = "_INBOX."

// drain handles every message the client sent that is ready, on the session's reader goroutine
// (OnArrival) or on the Serve loop once at the start.
func (m *member) drain() {
	m.drainMu.Lock()
	defer m.drainMu.Unlock()
	defer m.flush.Flush() // (first: drainMu still held, as the Flusher is drain's own)
	for {
		if m.hub.paused.Load() {
			return // Continue drains again
		}
		if m.hasWaiting.Load() && m.backlogged() {
			return
		}
		d, ok, _ := m.sess.TryRecv()
		if !ok {
			return
		}
		if err := m.handle(d); err != nil {
			_ = d.Refuse(err) // a refusal is for good: the same request would be refused again
		} else {
			_ = d.Confirm()
		}
	}
}

// refuse is the error a client's request is refused with: its text is the reason the client
// gets, led by the words of the sentinel it maps to.
type refuse struct {
	sentinel error
	detail   string
}

func (r refuse) Error() string { return refusal(r.sentinel, r.detail) }

// handle carries out one message from the client. A non-nil error refuses it.
func (m *member) handle(d *oneway.Delivery) error {
	op := wire.Op(d.Data)
	if m.refused {
		return refuse{ErrPermission, "the connection was refused"}
	}
	if !m.connected && op != wire.OpConnect {
		return errors.New("connect first")
	}
	switch op {
	case wire.OpConnect:
		m.flush.Flush() // Authenticate may take its time: what was routed before goes now
		return m.connect(d.Data)
	case wire.OpSub:
		s, err := wire.DecodeSub(d.Data)
		if err != nil {
			return err
		}
		return m.subscribe(s)
	case wire.OpUnsub:
		sid, err := wire.DecodeUnsub(d.Data)
		if err != nil {
			return err
		}
		return m.unsubscribe(sid)
	case wire.OpPub:
		p, err := wire.DecodePub(d.Data, m.names.intern)
		if err != nil {
			return err
		}
		return m.hub.route(m, p, &m.flush)
	}
	return ftslerr.Errorf("%w: op %d", wire.ErrMalformed, op)
}

func (m *member) connect(b []byte) error {
	h := m.hub
	if m.connected {
		return errors.New("already connected")
	}
	c, err := wire.DecodeConnect(b)
	if err != nil {
		return err
	}
	if c.Version != wire.Version {
		m.refused = true
		return fmt.Errorf("protocol version %d; this hub speaks %d", c.Version, wire.Version)
	}
	inbox := c.Inbox
	if !strings.HasPrefix(inbox, inboxPrefix) || strings.ContainsAny(inbox[len(inboxPrefix):], ".*>") ||
		subjects.ValidatePublish(inbox, h.cfg.MaxSubjectLength) != nil || !h.claimInbox(m, inbox) {
		m.refused = true
		return refuse{ErrPermission, "an inbox of " + inboxPrefix + "<token>, not in use, is required"}
	}
	h.mu.Lock()
	closing := h.closing
	h.mu.Unlock()
	if closing {
		m.refused = true
		return ErrClosed
	}
	info := ConnectInfo{Name: c.Name, Credential: Credential{Token: c.Token, User: c.User, Password: c.Password},
		Addr: m.sess.RemoteAddr()}
	if st, ok := m.sess.ConnectionState(); ok {
		info.TLS = &st
	}
	perms, err := h.authenticate(info)
	m.perms = perms
	if err == nil {
		m.rules, err = compile(perms, h.cfg.MaxSubjectLength)
	}
	if err != nil {
		m.refused = true
		h.event(events.PermissionDenied, m.id, "", err)
		return refuse{ErrPermission, err.Error()}
	}
	m.identity = m.rules.identity
	if m.identity == "" {
		m.identity = c.User
	}
	if m.identity == "" {
		m.identity = c.Name
	}
	m.inbox = inbox
	m.noEcho = c.Flags&wire.ConnectNoEcho != 0
	m.connected = true
	return nil
}

func (m *member) subscribe(s wire.Sub) error {
	h := m.hub
	if err := subjects.ValidateSubscribe(s.Subject, h.cfg.MaxSubjectLength); err != nil {
		return refuse{ErrInvalidSubject, err.Error()}
	}
	if s.Queue != "" {
		if err := subjects.ValidateQueue(s.Queue, h.cfg.MaxSubjectLength); err != nil {
			return refuse{ErrInvalidSubject, err.Error()}
		}
	}
	own := s.Subject == m.inbox || strings.HasPrefix(s.Subject, m.inbox+".")
	if !own && m.rules.sub != nil && !m.rules.sub.CanSubscribe(s.Subject) {
		h.event(events.PermissionDenied, m.id, s.Subject, ErrPermission)
		return refuse{ErrPermission, "subscribe to " + s.Subject}
	}
	sub := &hubSub{m: m, sid: s.SID, subject: s.Subject, queue: s.Queue}
	sub.filter = !own && (subjects.Overlaps(s.Subject, inboxPrefix+">") ||
		(m.rules.sub != nil && m.rules.sub.NeedsDeliveryCheck(s.Subject)))
	sub.entry = subjects.NewSubscription(s.Subject, s.Queue, sub)
	m.mu.Lock()
	switch {
	case m.gone:
		m.mu.Unlock()
		return ErrSessionClosed
	case m.subs[s.SID] != nil:
		m.mu.Unlock()
		return fmt.Errorf("subscription %d exists", s.SID)
	case len(m.subs) >= h.cfg.MaxSubscriptions:
		m.mu.Unlock()
		return refuse{ErrLimit, fmt.Sprintf("%d subscriptions", h.cfg.MaxSubscriptions)}
	}
	if m.subs == nil { // made here: a client that only publishes needs none
		m.subs = make(map[uint64]*hubSub)
	}
	m.subs[s.SID] = sub
	m.mu.Unlock()
	if err := h.index.Insert(sub.entry); err != nil {
		m.mu.Lock()
		delete(m.subs, s.SID)
		m.mu.Unlock()
		return refuse{ErrInvalidSubject, err.Error()}
	}
	h.event(events.Subscribed, m.id, s.Subject, nil)
	return nil
}

func (m *member) unsubscribe(sid uint64) error {
	m.mu.Lock()
	sub := m.subs[sid]
	delete(m.subs, sid)
	m.mu.Unlock()
	if sub == nil {
		return fmt.Errorf("no subscription %d", sid)
	}
	_ = m.hub.index.Remove(sub.entry)
	m.hub.event(events.Unsubscribed, m.id, sub.subject, nil)
	return nil
}

// echo reports whether sub is one of m's own subscriptions that m's publishes must not reach
// (it asked for no echo).
func (m *member) echo(sub *hubSub) bool { return m.noEcho && sub.m == m }

// deliverable reports whether sub may receive a message on subject: its client's permissions
// deny none of it, and it is no other client's inbox.
func (sub *hubSub) deliverable(subject string) bool {
	if !sub.filter {
		return true
	}
	m := sub.m
	if strings.HasPrefix(subject, inboxPrefix) && subject != m.inbox && !strings.HasPrefix(subject, m.inbox+".") {
		return false
	}
	return m.rules.sub == nil || m.rules.sub.Deliverable(subject)
}

// closed runs once the member's session ended: its subscriptions go, and (through their tickets)
// its pending shares of publishes fail.
func (m *member) closed(err error) {
	h := m.hub
	if h.moved.Load() {
		h.forget(m) // its state went with the export: nothing here is its to end
		return
	}
	m.mu.Lock()
	m.gone = true
	subs := m.subs
	m.subs = nil
	m.waiting = nil
	m.mu.Unlock()
	for _, sub := range subs {
		_ = h.index.Remove(sub.entry)
		h.event(events.Unsubscribed, m.id, sub.subject, err)
	}
	if errors.Is(err, ErrSessionLost) {
		h.event(events.SubscriberLost, m.id, "", err)
	}
	h.forget(m)
}

// send sends b to the client, with no acknowledgement asked: an outcome or a notice. If the
// session is full it waits its turn with the housekeeper, in order.
func (m *member) send(b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone || m.hub.moved.Load() {
		return
	}
	if len(m.waiting) == 0 {
		if err := m.trySend(b); !errors.Is(err, ErrBufferFull) {
			return // sent, or the session ended and nobody is left to tell
		}
	}
	m.waiting = append(m.waiting, b)
	m.hasWaiting.Store(true)
	m.hub.kickHousekeeper()
}

// backlogged reports, and records, that the member's waiting outcomes reached maxWaiting.
func (m *member) backlogged() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.waiting) < maxWaiting {
		return false
	}
	m.throttled.Store(true)
	return true
}

// flushWaiting sends what waits, as far as the session takes it; it reports whether all went.
func (m *member) flushWaiting() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hub.paused.Load() {
		return true // what waits stays, for Export to take or Continue to send
	}
	for len(m.waiting) > 0 {
		if err := m.trySend(m.waiting[0]); errors.Is(err, ErrBufferFull) {
			return false
		}
		m.waiting[0] = nil
		m.waiting = m.waiting[1:]
	}
	m.waiting = nil
	m.hasWaiting.Store(false)
	for _, sub := range m.subs {
		if n := sub.missed.Swap(0); n > 0 {
			b := wire.AppendNotice(nil, wire.Notice{Kind: wire.NoticeSlow, SID: sub.sid,
				Text: fmt.Sprintf("%d messages missed", n)})
			if err := m.trySend(b); errors.Is(err, ErrBufferFull) {
				sub.missed.Add(n)
				m.hasWaiting.Store(true)
				return false
			}
		}
	}
	return true
}

// trySend sends an outcome or notice, not waiting for room. b is kept by reference: it must
// not change afterwards.
func (m *member) trySend(b []byte) error { return m.sess.PostShared(nil, b) }

// noteMissed records that sub could not take a message; the client hears of it when room opens.
func (m *member) noteMissed(sub *hubSub) {
	sub.missed.Add(1)
	m.hasWaiting.Store(true)
	m.hub.kickHousekeeper()
}

// recordPublish and forgetPublish keep the member's publishes whose outcome is to come.
func (m *member) recordPublish(ps *pubState) {
	m.pubsMu.Lock()
	ps.next = m.pubs
	if m.pubs != nil {
		m.pubs.prev = ps
	}
	m.pubs = ps
	m.pubsMu.Unlock()
}

func (m *member) forgetPublish(ps *pubState) {
	m.pubsMu.Lock()
	if ps.prev != nil {
		ps.prev.next = ps.next
	} else if m.pubs == ps {
		m.pubs = ps.next
	}
	if ps.next != nil {
		ps.next.prev = ps.prev
	}
	ps.prev, ps.next = nil, nil
	m.pubsMu.Unlock()
}
