package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ftsl-go/ftsl/core"
	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub"
)

// memberConfig says where a member joins and whom it tells what happens. The callbacks run on
// the client's goroutines and must return quickly; each kind comes in order.
type memberConfig struct {
	Hub, Name, Room string
	// Session tunes the member's session; its Dial is the member's own.
	Session core.Config

	// OnLine hears every line another member says, in each sender's order, exactly once. The
	// message is confirmed (and its sender's tick turns to processed) when OnLine returns.
	OnLine func(chatLine)
	// OnPresence hears another member (instance, called name) join, answer a join (here), or
	// leave; sameName says someone else present is called so too.
	OnPresence func(kind, name, instance string, sameName bool)
	// OnReconnect hears each time the session resumed on a new connection (the client's
	// SessionResumed event): n counts the connections, the first included.
	OnReconnect func(n int64)
	// OnMark hears each change of a line's mark: sent (from Say's goroutine), then delivered,
	// processed or failed (from the member's outbox goroutine).
	OnMark func(l *sentLine)
}

// member is one user in one room: a pubsub client subscribed to the room's subject, where lines
// are said, and its presence subject, where members say who is here.
//
// A member subscribes to the subject it publishes on, but connects with pubsub.Config.NoEcho:
// the hub sends it none of its own lines and presence news, and leaves it out of its lines'
// outcomes. "Processed by every member" means every other member, and a member alone in its
// room sees its lines processed by 0 of 0.
type member struct {
	cfg      memberConfig
	c        *pubsub.Client
	instance string
	subject  string
	presence string
	resumes  atomic.Int64
	out      *outbox

	sayMu sync.Mutex // Say's: numbers lines in the order they are published
	seq   uint64

	mu      sync.Mutex
	others  map[string]string // instance -> name of the other members present
	changed chan struct{}     // closed (and replaced) whenever others changes
}

// join connects to the hub, subscribes to the room and says it arrived. It returns once the hub
// has the subscriptions, so every line said from then on reaches the new member.
func join(ctx context.Context, cfg memberConfig) (*member, error) {
	var id [instanceLen / 2]byte
	_, _ = rand.Read(id[:])
	m := &member{
		cfg:      cfg,
		instance: hex.EncodeToString(id[:]),
		subject:  "chat." + cfg.Room,
		presence: "chat." + cfg.Room + ".presence",
		others:   make(map[string]string),
		changed:  make(chan struct{}),
	}
	m.out = newOutbox(m.mark)
	var err error
	m.c, err = pubsub.Dial(ctx, cfg.Hub, pubsub.Config{Name: cfg.Name, NoEcho: true, Session: oneway.Config{Core: cfg.Session}})
	if err != nil {
		m.out.stop()
		return nil, fmt.Errorf("joining the hub at %s: %w", cfg.Hub, err)
	}
	m.c.OnEvent(m.onEvent)
	if _, err = m.c.Subscribe(m.subject, m.onChat); err == nil {
		_, err = m.c.Subscribe(m.presence, m.onPresence)
	}
	if err == nil {
		_, err = m.c.Publish(ctx, m.presence, encodePresence(presenceJoin, m.instance), pubsub.AckNone)
	}
	if err != nil {
		m.c.Abort()
		m.out.stop()
		return nil, fmt.Errorf("joining room %s: %w", cfg.Room, err)
	}
	return m, nil
}

// onEvent counts the session's resumptions: each is a new connection after the first.
func (m *member) onEvent(e events.Event) {
	if e.Kind != events.SessionResumed {
		return
	}
	if n := m.resumes.Add(1); m.cfg.OnReconnect != nil {
		m.cfg.OnReconnect(n + 1)
	}
}

// Reconnects is how many times the member's session connected again after its first connection.
func (m *member) Reconnects() int64 { return m.resumes.Load() }

// Say publishes a line at AckProcessed, asking to hear when every member has it, and returns it
// once it is buffered: the session delivers it across broken connections from then on. It
// blocks while maxOutstanding lines wait for their outcomes, until ctx ends.
func (m *member) Say(ctx context.Context, text string) (*sentLine, error) {
	if len(text) > maxText {
		return nil, fmt.Errorf("a line of %d bytes; the limit is %d", len(text), maxText)
	}
	if err := m.out.reserve(ctx); err != nil {
		return nil, err
	}
	m.sayMu.Lock()
	m.seq++
	l := &sentLine{Seq: m.seq, Text: text}
	tk, err := m.c.Publish(ctx, m.subject, encodeChat(m.instance, l.Seq, text), pubsub.AckProcessed, pubsub.ReportDelivered())
	if err != nil {
		m.seq-- // nothing went out under this number
		m.sayMu.Unlock()
		m.out.release()
		return nil, err
	}
	l.tk = tk
	m.sayMu.Unlock()
	l.setMark(markSent, pubsub.Outcome{}, nil)
	m.mark(l)
	m.out.follow(l)
	return l, nil
}

// Said is how many lines the member said.
func (m *member) Said() uint64 {
	m.sayMu.Lock()
	defer m.sayMu.Unlock()
	return m.seq
}

func (m *member) mark(l *sentLine) {
	if m.cfg.OnMark != nil {
		m.cfg.OnMark(l)
	}
}

// onChat is the room subscription's handler: it runs one line at a time, in order.
func (m *member) onChat(_ context.Context, msg *pubsub.Msg) error {
	instance, seq, text, err := decodeChat(msg.Data)
	if err != nil {
		return err // the sender hears it in its outcome
	}
	if m.cfg.OnLine != nil {
		m.cfg.OnLine(chatLine{From: msg.Publisher, Instance: instance, Seq: seq, Text: text})
	}
	return nil
}

// onPresence keeps the list of who is here and answers joins. Entries of members whose session
// was lost without a word stay: the hub tells subscribers nothing of other clients.
func (m *member) onPresence(ctx context.Context, msg *pubsub.Msg) error {
	kind, instance, err := decodePresence(msg.Data)
	if err != nil {
		return err
	}
	m.mu.Lock()
	_, known := m.others[instance]
	if kind == presenceLeave {
		delete(m.others, instance)
	} else {
		m.others[instance] = msg.Publisher
	}
	sameName := msg.Publisher == m.cfg.Name
	for id, name := range m.others {
		sameName = sameName || id != instance && name == msg.Publisher
	}
	changed := known != (kind != presenceLeave)
	if changed {
		close(m.changed)
		m.changed = make(chan struct{})
	}
	m.mu.Unlock()
	if kind == presenceJoin {
		// At AckNone: the answer needs no outcome, and a newcomer that left already would
		// fail it for nothing.
		if _, err := m.c.Publish(ctx, m.presence, encodePresence(presenceHere, m.instance), pubsub.AckNone); err != nil &&
			!errors.Is(err, pubsub.ErrClosed) && ctx.Err() == nil {
			return err
		}
	}
	if m.cfg.OnPresence != nil && changed {
		m.cfg.OnPresence(kind, msg.Publisher, instance, sameName)
	}
	return nil
}

// Others returns the names of the other members present, and a channel closed when that changes.
func (m *member) Others() ([]string, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.others))
	for _, n := range m.others {
		names = append(names, n)
	}
	return names, m.changed
}

// WaitOthers waits until at least n other members are present, or ctx ends.
func (m *member) WaitOthers(ctx context.Context, n int) error {
	for {
		names, changed := m.Others()
		if len(names) >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%d other member(s) present, waiting for %d: %w", len(names), n, ctx.Err())
		}
	}
}

// Flush waits until every line said has its outcome, or ctx ends; then it returns the lines
// still waiting (none if all ended).
func (m *member) Flush(ctx context.Context) []*sentLine { return m.out.flush(ctx) }

// Leave says goodbye to the room and closes the client: everything it took is handled and every
// line said has its outcome first (or ctx ends and the session is aborted).
func (m *member) Leave(ctx context.Context) error {
	if tk, err := m.c.Publish(ctx, m.presence, encodePresence(presenceLeave, m.instance), pubsub.AckNone); err == nil {
		_, _ = tk.Wait(ctx) // the hub has it: the others will hear, even after we are gone
	}
	err := m.c.Close(ctx)
	m.out.stop()
	return err
}

// Abort ends the member at once.
func (m *member) Abort() {
	m.c.Abort()
	m.out.stop()
}

// Done is closed once the member's client ended.
func (m *member) Done() <-chan struct{} { return m.c.Done() }

// Err says why the client ended, if it did on its own.
func (m *member) Err() error { return m.c.Err() }
