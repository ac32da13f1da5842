package pubsub

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub/internal/subjects"
	"github.com/ftsl-go/ftsl/pubsub/internal/wire"
)

// minSharedPayload is the payload size from which the hub copies a payload once and lets every
// subscriber's session keep it by reference; below it each session copies it, which is cheaper.
const minSharedPayload = 1 << 10

// maxMsgOverhead bounds a MSG's bytes besides its strings: the op, the sid, three lengths.
const maxMsgOverhead = 1 + binary.MaxVarintLen64 + 3*binary.MaxVarintLen32

// route sends publish p from member pub to every subscription whose pattern matches its
// subject, once to each plain subscription and once to each queue group. A publisher that asked
// for no echo has its own subscriptions left out, as if they did not match. With AckDelivered or
// AckProcessed it follows every share and tells the publisher the outcome. It runs on the
// publisher's session reader, so a publisher's messages go out in the order it sent them. The
// subscribers' writers are woken by fl's Flush, which the caller owns and must call.
func (h *Hub) route(pub *member, p wire.Pub, fl *oneway.Flusher) error {
	if err := subjects.ValidatePublish(p.Subject, h.cfg.MaxSubjectLength); err != nil {
		return refuse{ErrInvalidSubject, err.Error()}
	}
	report := p.Level&wire.ReportDelivered != 0
	if lv := p.Level &^ wire.ReportDelivered; lv > uint8(oneway.AckProcessed) {
		return errors.New("bad ack level")
	}
	if h.shut.Load() { // its subscribers' sessions are closing: it could reach none
		return refuse{ErrClosed, ""}
	}
	// A subscriber's MSG carries the publisher's identity where the PUB had its ID and level: a
	// message too big for the hub's sessions then is refused now, not lost at every subscriber.
	if n := len(p.Payload) + len(p.Subject) + len(p.Reply) + len(pub.identity) + maxMsgOverhead; n > h.cfg.Session.Core.MaxMessageSize {
		return refuse{ErrLimit, fmt.Sprintf("%d bytes as subscribers get it; the limit is %d", n, h.cfg.Session.Core.MaxMessageSize)}
	}
	reply := strings.HasPrefix(p.Subject, inboxPrefix) // answers to requests go through
	if !reply && pub.rules.pub != nil && !pub.rules.pub.CanPublish(p.Subject) {
		h.event(events.PermissionDenied, pub.id, p.Subject, ErrPermission)
		return refuse{ErrPermission, "publish to " + p.Subject}
	}
	res := h.index.Match(p.Subject)
	payload := p.Payload
	if len(payload) >= minSharedPayload {
		// The payload lives in the publisher's received buffer, given back once this publish is
		// confirmed: copy it once, and every subscriber's session keeps that copy by reference.
		payload = bytes.Clone(payload)
	}
	level := oneway.AckLevel(p.Level &^ wire.ReportDelivered)
	var ps *pubState
	if level != oneway.AckNone {
		ps = &pubState{pub: pub, pubID: p.PubID, level: level, subject: p.Subject, remaining: 1}
		if n := len(res.Plain) + len(res.Groups); n <= len(ps.one) {
			ps.shares = ps.one[:0]
		} else {
			ps.shares = make([]*share, 0, n)
		}
		if report && level == oneway.AckProcessed {
			ps.report, ps.undelivered = true, 1
		}
		h.outcomes.Add(1)
		pub.recordPublish(ps)
	}
	r := router{h: h, pub: pub, ps: ps, subject: p.Subject, reply: p.Reply, payload: payload, level: level,
		hdr: pub.hdr[:0], fl: fl}
	defer func() { pub.hdr = r.hdr }()
	for _, e := range res.Plain {
		if sub := e.Value; sub.deliverable(p.Subject) && !pub.echo(sub) {
			r.deliver(sub, nil)
		}
	}
	for _, g := range res.Groups {
		if sub := h.pick(g, p.Subject, pub, nil); sub != nil {
			r.deliver(sub, &groupShare{name: g.Name})
		}
	}
	// Counted before the outcome can go: a publisher that has it finds it in Stats.
	h.counts.published.Add(1)
	r.addCounts()
	if ps != nil {
		ps.handed(false) // the share routing itself held: progress and the outcome may be complete
		ps.shareDone()
	}
	return nil
}

// pick chooses a member of queue group g for a message on subject from pub, round robin,
// skipping members that cannot take it, those in tried, and pub itself if it asked for no echo.
func (h *Hub) pick(g subjects.Group[*hubSub], subject string, pub *member, tried []*member) *hubSub {
	e := g.Pick(h.rr.Add(1), func(e *subjects.Subscription[*hubSub]) bool {
		if pub.echo(e.Value) {
			return false
		}
		for _, m := range tried {
			if e.Value.m == m {
				return false
			}
		}
		return e.Value.deliverable(subject)
	})
	if e == nil {
		return nil
	}
	return e.Value
}

// router sends one publish to its subscriptions.
type router struct {
	h       *Hub
	pub     *member
	ps      *pubState // nil at AckNone: nothing is followed
	subject string
	reply   string
	payload []byte
	level   oneway.AckLevel
	hdr     []byte // scratch for each subscriber's header, copied by its session at once
	// fl, if not nil, takes the wake-ups of the subscribers' writers (see oneway.Flusher): only
	// the routing goroutine that owns it may use it, and it must be flushed before a wait.
	fl      *oneway.Flusher
	sent    uint64 // copies handed to sessions, and dropped as too slow, in this routing
	dropped uint64
}

// groupShare follows a queue group's share: the members tried, so a failure goes to another.
type groupShare struct {
	name  string
	tried []*member
}

// addCounts adds the copies this routing sent and dropped to the hub's totals.
func (r *router) addCounts() {
	if r.sent > 0 {
		r.h.counts.sent.Add(r.sent)
	}
	if r.dropped > 0 {
		r.h.counts.slowDropped.Add(r.dropped)
	}
	r.sent, r.dropped = 0, 0
}

// deliver sends the message to sub, following its share if the publish asks for an outcome.
func (r *router) deliver(sub *hubSub, g *groupShare) {
	m := sub.m
	if r.ps != nil {
		r.ps.matched(g == nil || len(g.tried) == 0)
	}
	// The header is the subscriber's own (its subscription ID); the payload is shared.
	r.hdr = wire.AppendMsgHeader(r.hdr[:0], sub.sid, r.subject, r.reply, r.pub.identity)
	hdr := r.hdr
	var tk *oneway.Ticket
	var err error
	if r.ps == nil {
		err = m.sess.PostSharedDeferred(r.fl, hdr, r.payload) // nothing follows this share: no ticket to pay for
	} else {
		tk, err = m.sess.TrySendSharedDeferred(r.fl, hdr, r.payload, r.level)
	}
	if errors.Is(err, ErrBufferFull) && r.h.cfg.SlowConsumers == SlowBlock {
		if r.fl != nil {
			// The writers that would make room, this subscriber's among them, may be waiting for
			// their wake-up in fl: waiting before it is flushed could wait for ever.
			r.fl.Flush()
		}
		ctx, cancel := context.WithTimeout(r.h.ctx, r.h.cfg.MaxBlock)
		tk, err = m.sess.SendShared(ctx, hdr, r.payload, r.level)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			err = ErrBufferFull
		}
	}
	if err != nil {
		if errors.Is(err, ErrBufferFull) {
			err = ErrSlowConsumer
			r.dropped++
			r.h.event(events.SlowConsumer, m.id, r.subject, err)
			m.noteMissed(sub)
		} else {
			err = sessionError(err)
		}
		r.shareEnded(sub, g, oneway.StatusFailed, err)
		if r.ps != nil {
			r.ps.handed(false) // (after shareEnded: a queue group's share may go on elsewhere)
		}
		return
	}
	r.sent++
	if r.ps != nil {
		sh := &share{r: *r, sub: sub, g: g, mid: tk.ID()}
		sh.r.hdr = nil // (the scratch stays the publisher's)
		sh.r.fl = nil  // (so does the Flusher: a queue group's share goes on from another goroutine)
		sh.r.sent, sh.r.dropped = 0, 0
		r.ps.add(sh)
		sh.follow(tk)
	}
}

// share is one subscriber's copy of a publish that asked for an outcome, followed through its
// ticket until it ends. The publish keeps its shares (pubState.shares) so that an export can
// name them: the subscriber and its ticket.
type share struct {
	r   router // the routing, for a queue group's share to go on elsewhere
	sub *hubSub
	g   *groupShare
	mid uint64 // the ticket's, in sub's session
	// Guarded by the publish's mu. had: the subscriber was handed it (ReportDelivered).
	had   bool
	ended bool
}

// follow has the share's ticket report to it. Both functions run on the subscriber's session,
// one after the other; neither runs once the hub moved (the ticket then failed only because its
// session went on in another process, with the share).
func (sh *share) follow(tk *oneway.Ticket) {
	if sh.r.ps.report {
		tk.OnDelivered(sh.delivered)
	}
	tk.OnEnd(sh.end)
}

func (sh *share) delivered(*oneway.Ticket) {
	ps := sh.r.ps
	if sh.r.h.moved.Load() {
		return
	}
	ps.mu.Lock()
	sh.had = true
	ps.mu.Unlock()
	ps.handed(true)
}

func (sh *share) end(tk *oneway.Ticket) {
	if sh.r.h.moved.Load() {
		return
	}
	sh.finish(tk.Status(), tk.Err())
}

func (sh *share) finish(st oneway.Status, err error) {
	ps := sh.r.ps
	ps.mu.Lock()
	sh.ended = true
	had := sh.had
	ps.mu.Unlock()
	sh.r.shareEnded(sh.sub, sh.g, st, err)
	if ps.report && !had {
		ps.handed(false) // it never will be
	}
}

// shareEnded records what became of the share of sub: a failed queue-group share goes to another
// member if one is left.
func (r *router) shareEnded(sub *hubSub, g *groupShare, st oneway.Status, err error) {
	ps := r.ps
	if ps == nil {
		return
	}
	if st == oneway.StatusFailed && g != nil {
		g.tried = append(g.tried, sub.m)
		for _, gr := range r.h.index.Match(r.subject).Groups {
			if gr.Name == g.name {
				if next := r.h.pick(gr, r.subject, r.pub, g.tried); next != nil {
					r.deliver(next, g) // the share goes on, counted as the same match
					r.addCounts()
					ps.shareDone() // (deliver counted the new attempt; this one is over)
					return
				}
			}
		}
	}
	ps.ended(sub, st, err)
}

// pubState follows one publish that asked for an outcome, until every matched share ended.
type pubState struct {
	pub     *member
	pubID   uint64
	level   oneway.AckLevel
	subject string

	mu        sync.Mutex
	remaining int // shares not ended, and 1 while routing goes on
	out       wire.Outcome
	finished  bool     // the outcome is sent
	shares    []*share // those followed; ended ones stay, marked, until the publish ends
	one       [1]*share
	// The publisher's list of publishes in flight (member.pubs), guarded by its pubsMu.
	prev, next *pubState

	// With report (ReportDelivered): shares neither delivered nor ended, 1 while routing goes
	// on; the shares delivered; and whether PROGRESS went.
	report      bool
	undelivered int
	delivered   uint64
	reported    bool
}

// add records a share sent and followed.
func (ps *pubState) add(sh *share) {
	ps.mu.Lock()
	ps.shares = append(ps.shares, sh)
	ps.mu.Unlock()
}

// matched counts a share begun; first is false for a queue group's share going to another member.
func (ps *pubState) matched(first bool) {
	ps.mu.Lock()
	if first {
		ps.out.Matched++
	}
	ps.remaining++
	if ps.report {
		ps.undelivered++
	}
	ps.mu.Unlock()
}

// handed counts a share delivered (had), or over without delivery; once none is left, and the
// outcome is still to come, the publisher hears PROGRESS.
func (ps *pubState) handed(had bool) {
	if !ps.report {
		return
	}
	ps.mu.Lock()
	ps.undelivered--
	if had {
		ps.delivered++
	}
	send := ps.undelivered == 0 && !ps.reported && !ps.finished
	if send {
		ps.reported = true
	}
	pr := wire.Progress{PubID: ps.pubID, Matched: ps.out.Matched, Delivered: ps.delivered}
	ps.mu.Unlock()
	if send {
		// It may still reach the publisher after the OUTCOME, which wins: the client then drops it.
		ps.pub.send(wire.AppendProgress(nil, pr))
	}
}

// ended records a share's end, by its ticket's status.
func (ps *pubState) ended(sub *hubSub, st oneway.Status, err error) {
	ps.mu.Lock()
	switch st {
	case oneway.StatusDelivered:
		ps.out.Delivered++
	case oneway.StatusProcessed:
		ps.out.Delivered++
		ps.out.Processed++
	default:
		var rej *oneway.RejectedError
		reason := ""
		if errors.As(err, &rej) {
			ps.out.Delivered++ // its application had it, and failed it
			reason = rej.Reason
		} else if err != nil {
			reason = strings.TrimPrefix(sessionError(err).Error(), "ftsl: ")
		}
		ps.out.Failures = append(ps.out.Failures, wire.Failure{Subscriber: sub.m.identity, Reason: reason})
	}
	ps.mu.Unlock()
	ps.shareDone()
}

// shareDone counts one share (or the routing) done; the last one sends the outcome.
func (ps *pubState) shareDone() {
	ps.mu.Lock()
	ps.remaining--
	done := ps.remaining == 0
	ps.finished = done
	if done {
		ps.shares = nil
	}
	ps.mu.Unlock()
	if done {
		ps.out.PubID = ps.pubID
		ps.pub.forgetPublish(ps)
		ps.pub.send(wire.AppendOutcome(nil, ps.out))
		ps.pub.hub.outcomes.Done()
	}
}
