package pubsub

import (
	"cmp"
	"context"
	"net"
	"slices"
	"strings"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub/internal/subjects"
	"github.com/ftsl-go/ftsl/pubsub/internal/wire"
	"github.com/ftsl-go/ftsl/snapshot"
)

// This file moves a hub, with every client's session, subscription and publish in flight, to
// another process (PAPER III-C): Pause freezes it, Export takes its state, NewHubFrom rebuilds
// it where the clients resume. The oneway layer moves the sessions and their tickets; the hub
// adds what it keeps above them: who the clients are, what they subscribed to, and which
// subscriber tickets each publish still waits for.

// ErrMoved is returned by the calls of a hub whose state Export took.
var ErrMoved = ftslerr.Errorf("ftsl: pubsub hub moved: %w", core.ErrSessionMoved)

// HubState is a paused hub's state, as Export takes it and NewHubFrom rebuilds it. It holds
// every session's resume token: keep it as secret as the hub's memory.
type HubState struct {
	Listener  oneway.ListenerState // the clients' sessions and their tickets
	Members   []MemberState        // one per client, by session ID
	Publishes []PublishState       // those whose outcome was still to come
	// The queue-group round-robin counter and the Stats totals, so they go on.
	RoundRobin                   uint64
	Published, Sent, SlowDropped uint64
}

// MemberState is one client, as the hub knows it.
type MemberState struct {
	Session            uint64 // its session's ID
	Connected, Refused bool   // CONNECT was accepted; or refused, and so is everything after it
	Identity, Inbox    string
	// Permissions are what Authenticate returned; nil for none (or no Authenticate).
	Permissions   *Permissions
	Subscriptions []SubscriptionState // by SID
	// Waiting holds the outcomes and notices that found the session full, in order, encoded
	// as they go to the client.
	Waiting   [][]byte
	Throttled bool // Waiting reached its bound: the hub takes no more of its messages until it drains
	NoEcho    bool // its publishes do not go to its own subscriptions (Config.NoEcho)
}

// SubscriptionState is one subscription.
type SubscriptionState struct {
	SID            uint64
	Subject, Queue string
	Missed         uint64 // messages it could not take, not yet noticed to it
}

// PublishState is a publish whose outcome was to come: what it was, what the shares that ended
// made of it, and the shares still followed.
type PublishState struct {
	Publisher      uint64 // the publisher's session
	PubID          uint64
	Level          oneway.AckLevel // AckDelivered or AckProcessed
	Subject, Reply string
	Payload        []byte // for a queue group's share to go to another member if it fails
	// Report: it asked for PROGRESS (ReportDelivered); Reported: PROGRESS went.
	Report, Reported bool
	// The outcome so far.
	Matched, Delivered, Processed uint64
	Failures                      []FailureState
	Handed                        uint64 // shares delivered, for PROGRESS
	Shares                        []ShareState
}

// FailureState is a share that failed.
type FailureState struct{ Subscriber, Reason string }

// ShareState is a share of a publish not ended: a message in a subscriber's session, followed by
// its ticket there.
type ShareState struct {
	Subscriber uint64 // the subscriber's session
	SID        uint64 // its subscription (which may have ended since)
	Ticket     uint64 // the ticket's ID (message ID) in the subscriber's session
	Group      string // the queue group it went to, if any
	Tried      []uint64
	Had        bool // the subscriber was handed it (for PROGRESS)
}

// Pause freezes the hub for a move: every listener it serves is paused (core.Listener.Pause:
// the connections are cut, as by a network failure, and the clients try to resume), and the hub
// handles nothing its clients sent until Continue or, after Export, elsewhere. In-process
// clients (Connect) are cut too.
func (h *Hub) Pause(ctx context.Context) error {
	h.mu.Lock()
	switch {
	case h.moved.Load():
		h.mu.Unlock()
		return ErrMoved
	case h.closing:
		h.mu.Unlock()
		return ErrClosed
	}
	h.paused.Store(true)
	listeners := slices.Clone(h.listeners)
	h.mu.Unlock()
	for _, ln := range listeners {
		if err := ln.Pause(ctx); err != nil {
			return ftslerr.Errorf("ftsl: pubsub pause: %w", err)
		}
	}
	// Every session reader is gone; a drain or flush begun before the flag was set ends here.
	for _, m := range h.memberList() {
		m.drainMu.Lock()
		m.drainMu.Unlock() //nolint:staticcheck // the wait is the point
		m.mu.Lock()
		m.mu.Unlock() //nolint:staticcheck // (flushWaiting)
	}
	return nil
}

// Continue undoes Pause, or starts serving a hub made by NewHubFrom.
func (h *Hub) Continue() error {
	h.mu.Lock()
	if h.moved.Load() {
		h.mu.Unlock()
		return ErrMoved
	}
	listeners := slices.Clone(h.listeners)
	h.mu.Unlock()
	for _, ln := range listeners {
		if err := ln.Continue(); err != nil {
			return ftslerr.Errorf("ftsl: pubsub continue: %w", err)
		}
	}
	if !h.paused.Swap(false) {
		return nil
	}
	for _, m := range h.memberList() {
		m.drain() // what arrived while paused waits in the sessions
	}
	h.kickHousekeeper()
	return nil
}

func (h *Hub) memberList() []*member {
	h.mu.Lock()
	defer h.mu.Unlock()
	ms := make([]*member, 0, len(h.members))
	for m := range h.members {
		ms = append(ms, m)
	}
	return ms
}

// Export takes the paused hub's state, for NewHubFrom to rebuild in another process (or this
// one, on another address). The hub must serve exactly one listener (Serve); its clients'
// sessions end here with ErrSessionMoved and go on where the state is imported. In-process
// clients (Connect) cannot move: their sessions are aborted when the hub is closed. After
// Export the hub only closes (Close); its other calls fail with ErrMoved.
func (h *Hub) Export() (HubState, error) {
	h.mu.Lock()
	var serving []*oneway.Listener
	for _, ln := range h.listeners {
		if ln != h.inproc {
			serving = append(serving, ln)
		}
	}
	switch {
	case h.moved.Load():
		h.mu.Unlock()
		return HubState{}, ErrMoved
	case h.closing:
		h.mu.Unlock()
		return HubState{}, ErrClosed
	case !h.paused.Load():
		h.mu.Unlock()
		return HubState{}, ftslerr.Errorf("ftsl: pubsub export: %w", core.ErrNotPaused)
	case len(serving) != 1:
		h.mu.Unlock()
		return HubState{}, ftslerr.Errorf("ftsl: pubsub export: the hub serves %d listeners; it exports exactly one", len(serving))
	}
	ln := serving[0]
	var members []*member
	for m := range h.members {
		if m.ln == ln {
			members = append(members, m)
		}
	}
	// From here the ticket callbacks and session ends that the export causes change nothing.
	h.moved.Store(true)
	h.mu.Unlock()
	slices.SortFunc(members, func(a, b *member) int { return cmp.Compare(a.id, b.id) })

	st := HubState{RoundRobin: h.rr.Load(), Published: h.counts.published.Load(), Sent: h.counts.sent.Load(),
		SlowDropped: h.counts.slowDropped.Load(), Members: make([]MemberState, 0, len(members))}
	for _, m := range members {
		st.Members = append(st.Members, m.export())
	}
	for _, m := range members {
		st.Publishes = append(st.Publishes, m.exportPublishes()...)
	}
	ost, err := ln.Export()
	if err != nil {
		h.moved.Store(false)
		return HubState{}, ftslerr.Errorf("ftsl: pubsub export: %w", err)
	}
	st.Listener = ost
	return st, nil
}

// export takes the member's state. The hub is paused: nothing changes it meanwhile.
func (m *member) export() MemberState {
	ms := MemberState{Session: m.id, Connected: m.connected, Refused: m.refused, Identity: m.identity,
		Inbox: m.inbox, Permissions: m.perms, Throttled: m.throttled.Load(), NoEcho: m.noEcho}
	m.mu.Lock()
	for _, sub := range m.subs {
		ms.Subscriptions = append(ms.Subscriptions, SubscriptionState{SID: sub.sid, Subject: sub.subject,
			Queue: sub.queue, Missed: sub.missed.Load()})
	}
	ms.Waiting = slices.Clone(m.waiting)
	m.mu.Unlock()
	slices.SortFunc(ms.Subscriptions, func(a, b SubscriptionState) int { return cmp.Compare(a.SID, b.SID) })
	return ms
}

// exportPublishes takes the member's publishes whose outcome is still to come.
func (m *member) exportPublishes() []PublishState {
	m.pubsMu.Lock()
	var pss []*pubState
	for ps := m.pubs; ps != nil; ps = ps.next {
		pss = append(pss, ps)
	}
	m.pubsMu.Unlock()
	out := make([]PublishState, 0, len(pss))
	for _, ps := range pss {
		ps.mu.Lock()
		if ps.finished {
			ps.mu.Unlock()
			continue
		}
		p := PublishState{Publisher: m.id, PubID: ps.pubID, Level: ps.level, Subject: ps.subject,
			Report: ps.report, Reported: ps.reported, Matched: ps.out.Matched, Delivered: ps.out.Delivered,
			Processed: ps.out.Processed, Handed: ps.delivered}
		for _, f := range ps.out.Failures {
			p.Failures = append(p.Failures, FailureState(f))
		}
		for _, sh := range ps.shares {
			if sh.ended {
				continue
			}
			p.Reply, p.Payload = sh.r.reply, sh.r.payload
			s := ShareState{Subscriber: sh.sub.m.id, SID: sh.sub.sid, Ticket: sh.mid, Had: sh.had}
			if sh.g != nil {
				s.Group = sh.g.name
				for _, t := range sh.g.tried {
					s.Tried = append(s.Tried, t.id)
				}
			}
			p.Shares = append(p.Shares, s)
		}
		ps.mu.Unlock()
		p.Payload = slices.Clone(p.Payload) // it may be the publisher's received buffer's
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b PublishState) int { return cmp.Compare(a.PubID, b.PubID) })
	return out
}

// NewHubFrom rebuilds the hub of st (taken by Export, maybe in another process) serving ln,
// with cfg. The hub starts paused, as if Pause had returned: Continue serves, and the clients
// resume. A state that is corrupt or does not fit together is refused with an error matching
// core.ErrInvalidState, and nothing is imported; ln is then left open.
func NewHubFrom(ln net.Listener, cfg HubConfig, st HubState) (*Hub, error) {
	h, err := NewHub(cfg)
	if err != nil {
		return nil, err
	}
	plan, err := h.checkState(&st)
	if err != nil {
		_ = h.Close(context.Background())
		return nil, err
	}
	ol, sessions, err := oneway.NewListenerFrom(ln, h.cfg.Session, st.Listener)
	if err != nil {
		_ = h.Close(context.Background())
		return nil, err
	}
	// The in-process listener pauses too, so that the hub is paused as a whole.
	if err := h.inproc.Pause(context.Background()); err != nil {
		_ = ol.Close()
		_ = h.Close(context.Background())
		return nil, err
	}
	h.paused.Store(true)
	h.rr.Store(st.RoundRobin)
	h.counts.published.Store(st.Published)
	h.counts.sent.Store(st.Sent)
	h.counts.slowDropped.Store(st.SlowDropped)
	bySession := make(map[uint64]*member, len(sessions))
	for _, s := range sessions {
		ms := plan.members[s.ID()]
		m := &member{hub: h, sess: s, id: s.ID(), ln: ol}
		if ms != nil {
			m.restore(ms, plan.rules[s.ID()])
		}
		bySession[m.id] = m
	}
	h.mu.Lock()
	for _, m := range bySession {
		h.members[m] = struct{}{}
		if m.inbox != "" {
			h.inboxes[m.inbox] = m
		}
	}
	h.listeners = append(h.listeners, ol)
	h.addr = ol.Addr()
	h.serving.Add(1)
	h.mu.Unlock()
	byTicket := make(map[*member]map[uint64]*oneway.Ticket)
	for i := range st.Publishes {
		h.restorePublish(&st.Publishes[i], bySession, byTicket)
	}
	for _, m := range bySession {
		m.sess.OnClose(m.closed)
		m.sess.OnArrival(m.drain) // (drain does nothing while paused; Continue drains)
	}
	go func() {
		defer h.serving.Done()
		_ = h.serve(h.ctx, ol)
	}()
	return h, nil
}

// importPlan is what checkState worked out: the members by session, and their compiled rules.
type importPlan struct {
	members map[uint64]*MemberState
	rules   map[uint64]*rules
}

func invalidHub(format string, args ...any) error {
	return ftslerr.Errorf("ftsl: pubsub import: %w: "+format, append([]any{core.ErrInvalidState}, args...)...)
}

// checkState checks st above what the oneway and core layers check: that it fits together, so
// that building the hub from it cannot fail halfway.
func (h *Hub) checkState(st *HubState) (importPlan, error) {
	maxLen := h.cfg.MaxSubjectLength
	accepted := make(map[uint64]*oneway.SessionState, len(st.Listener.Sessions))
	for i := range st.Listener.Core.Sessions {
		if i < len(st.Listener.Sessions) && st.Listener.Core.Sessions[i].Accepted {
			accepted[st.Listener.Core.Sessions[i].ID] = &st.Listener.Sessions[i]
		}
	}
	plan := importPlan{members: make(map[uint64]*MemberState, len(st.Members)), rules: make(map[uint64]*rules, len(st.Members))}
	inboxes := make(map[string]bool, len(st.Members))
	for i := range st.Members {
		ms := &st.Members[i]
		if accepted[ms.Session] == nil {
			return plan, invalidHub("member %d has no accepted session", ms.Session)
		}
		if plan.members[ms.Session] != nil {
			return plan, invalidHub("member %d twice", ms.Session)
		}
		plan.members[ms.Session] = ms
		r, err := compile(ms.Permissions, maxLen)
		if err != nil {
			return plan, invalidHub("member %d: %v", ms.Session, err)
		}
		plan.rules[ms.Session] = r
		if ms.Connected {
			if ms.Inbox == "" || inboxes[ms.Inbox] || subjects.ValidatePublish(ms.Inbox, maxLen) != nil {
				return plan, invalidHub("member %d: inbox %q", ms.Session, ms.Inbox)
			}
			inboxes[ms.Inbox] = true
		}
		if len(ms.Subscriptions) > h.cfg.MaxSubscriptions {
			return plan, invalidHub("member %d: %d subscriptions", ms.Session, len(ms.Subscriptions))
		}
		if len(ms.Waiting) > maxWaiting {
			return plan, invalidHub("member %d: %d waiting outcomes", ms.Session, len(ms.Waiting))
		}
		last := uint64(0)
		for j, sub := range ms.Subscriptions {
			if j > 0 && sub.SID <= last {
				return plan, invalidHub("member %d: subscription %d out of order", ms.Session, sub.SID)
			}
			last = sub.SID
			if !ms.Connected || subjects.ValidateSubscribe(sub.Subject, maxLen) != nil ||
				(sub.Queue != "" && subjects.ValidateQueue(sub.Queue, maxLen) != nil) {
				return plan, invalidHub("member %d: subscription %d to %q", ms.Session, sub.SID, sub.Subject)
			}
		}
	}
	for i := range st.Publishes {
		p := &st.Publishes[i]
		if plan.members[p.Publisher] == nil {
			return plan, invalidHub("publish %d of %d: no such member", p.PubID, p.Publisher)
		}
		if p.Level != oneway.AckDelivered && p.Level != oneway.AckProcessed {
			return plan, invalidHub("publish %d of %d: level %d", p.PubID, p.Publisher, p.Level)
		}
		if uint64(len(p.Shares))+uint64(len(p.Failures)) > p.Matched || p.Handed > p.Matched ||
			p.Delivered > p.Matched || p.Processed > p.Delivered {
			return plan, invalidHub("publish %d of %d: counts", p.PubID, p.Publisher)
		}
		for _, s := range p.Shares {
			os := accepted[s.Subscriber]
			if plan.members[s.Subscriber] == nil || os == nil {
				return plan, invalidHub("publish %d of %d: share to %d: no such member", p.PubID, p.Publisher, s.Subscriber)
			}
			if !slices.ContainsFunc(os.Tickets, func(t oneway.TicketState) bool { return t.ID == s.Ticket && t.Level == p.Level }) {
				return plan, invalidHub("publish %d of %d: share to %d: no ticket %d at its level", p.PubID, p.Publisher, s.Subscriber, s.Ticket)
			}
		}
	}
	return plan, nil
}

// restore gives a member just made over its imported session the state it had.
func (m *member) restore(ms *MemberState, r *rules) {
	h := m.hub
	m.connected, m.refused = ms.Connected, ms.Refused
	m.identity, m.inbox, m.perms, m.rules = ms.Identity, ms.Inbox, ms.Permissions, r
	m.noEcho = ms.NoEcho
	m.waiting = slices.Clone(ms.Waiting)
	m.hasWaiting.Store(len(m.waiting) > 0)
	m.throttled.Store(ms.Throttled)
	for _, ss := range ms.Subscriptions {
		own := ss.Subject == m.inbox || strings.HasPrefix(ss.Subject, m.inbox+".")
		sub := &hubSub{m: m, sid: ss.SID, subject: ss.Subject, queue: ss.Queue}
		sub.filter = !own && (subjects.Overlaps(ss.Subject, inboxPrefix+">") ||
			(m.rules.sub != nil && m.rules.sub.NeedsDeliveryCheck(ss.Subject)))
		sub.missed.Store(ss.Missed)
		if ss.Missed > 0 {
			m.hasWaiting.Store(true)
		}
		sub.entry = subjects.NewSubscription(ss.Subject, ss.Queue, sub)
		if err := h.index.Insert(sub.entry); err != nil {
			// (checkState validated the pattern; a duplicate SID cannot pass its order check)
			h.log.Error().Err(err).Uint64("session", m.id).Msg("pubsub import: subscription not restored")
			continue
		}
		if m.subs == nil {
			m.subs = make(map[uint64]*hubSub)
		}
		m.subs[ss.SID] = sub
	}
}

// restorePublish follows again the shares of a publish in flight, through the imported tickets.
func (h *Hub) restorePublish(p *PublishState, members map[uint64]*member, byTicket map[*member]map[uint64]*oneway.Ticket) {
	pub := members[p.Publisher]
	ps := &pubState{pub: pub, pubID: p.PubID, level: p.Level, subject: p.Subject, report: p.Report,
		reported: p.Reported, delivered: p.Handed}
	ps.out.Matched, ps.out.Delivered, ps.out.Processed = p.Matched, p.Delivered, p.Processed
	for _, f := range p.Failures {
		ps.out.Failures = append(ps.out.Failures, wire.Failure(f))
	}
	r := router{h: h, pub: pub, ps: ps, subject: p.Subject, reply: p.Reply, payload: p.Payload, level: p.Level}
	type follow struct {
		sh *share
		tk *oneway.Ticket
	}
	var follows []follow
	for _, s := range p.Shares {
		m := members[s.Subscriber]
		sub := m.subs[s.SID]
		if sub == nil {
			sub = &hubSub{m: m, sid: s.SID} // unsubscribed since: the share still ends
		}
		sh := &share{r: r, sub: sub, mid: s.Ticket, had: s.Had}
		if s.Group != "" {
			sh.g = &groupShare{name: s.Group}
			for _, id := range s.Tried {
				if t := members[id]; t != nil {
					sh.g.tried = append(sh.g.tried, t)
				}
			}
		}
		tickets := byTicket[m]
		if tickets == nil {
			tickets = make(map[uint64]*oneway.Ticket)
			for _, t := range m.sess.Tickets() {
				tickets[t.ID()] = t
			}
			byTicket[m] = tickets
		}
		tk := tickets[s.Ticket]
		ps.shares = append(ps.shares, sh)
		ps.remaining++
		if ps.report && !s.Had {
			ps.undelivered++
		}
		follows = append(follows, follow{sh, tk})
	}
	h.outcomes.Add(1)
	pub.recordPublish(ps)
	ps.remaining++ // held while the shares are followed again, as routing holds it
	if ps.report {
		ps.undelivered++
	}
	for _, f := range follows {
		if f.tk == nil {
			// Its ticket ended on import (the acknowledgement had come and was not yet applied
			// when the state was taken): how is not known, so it counts as lost.
			f.sh.finish(oneway.StatusFailed, ErrSessionLost)
			continue
		}
		f.sh.follow(f.tk)
	}
	ps.handed(false)
	ps.shareDone()
}

// SectionPubsub is the snapshot section of the hub's own state (HubState.MarshalLayer).
const SectionPubsub = "pubsub"

// SaveTo puts the hub's state into a snapshot: the sessions under "core" and "oneway"
// (snapshot.PutOneway), the hub's own part under "pubsub". It makes HubState a snapshot.Saver,
// so snapshot.Freeze and snapshot.Migrate take a *Hub.
func (st *HubState) SaveTo(s *snapshot.Snapshot) error {
	if err := snapshot.PutOneway(s, &st.Listener); err != nil {
		return err
	}
	return s.Put(SectionPubsub, st)
}

// HubStateFrom reads a hub's state back from a snapshot SaveTo wrote.
func HubStateFrom(s *snapshot.Snapshot) (HubState, error) {
	ost, err := snapshot.Oneway(s)
	if err != nil {
		return HubState{}, err
	}
	var st HubState
	if err := s.Get(SectionPubsub, &st); err != nil {
		return HubState{}, err
	}
	st.Listener = ost
	return st, nil
}

// RestoreHub rebuilds a hub from a snapshot (HubStateFrom, then NewHubFrom) serving ln, paused:
// Continue serves. On error ln is left open.
func RestoreHub(ln net.Listener, cfg HubConfig, s *snapshot.Snapshot) (*Hub, error) {
	st, err := HubStateFrom(s)
	if err != nil {
		return nil, err
	}
	return NewHubFrom(ln, cfg, st)
}
