package pubsub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub/internal/subjects"
	"github.com/ftsl-go/ftsl/pubsub/internal/wire"
)

// Client is one connection to a hub: it publishes, subscribes, and makes requests. It rides
// through broken connections by itself (its session resumes), subscriptions included. All methods
// are safe for concurrent use.
type Client struct {
	cfg   Config
	log   zerolog.Logger
	sess  *oneway.Session
	ev    *events.Dispatcher
	inbox string
	done  chan struct{} // closed once the client's goroutines have returned
	wg    sync.WaitGroup

	mu       sync.Mutex
	subs     map[uint64]*Subscription
	nextSID  uint64
	nextPub  uint64
	pending  map[uint64]*Ticket // publishes waiting for their OUTCOME
	requests map[string]chan *Msg
	inboxSub *Subscription
	nextReq  uint64
	closing  bool
	drained  chan struct{}                      // closed once closing and no publish waits for its outcome
	ended    chan struct{}                      // closed by sessionEnded: every ticket of the session has ended
	err      error                              // why the client ended
	names    interner                           // subjects and names seen (the dispatcher's)
	hdrPool  sync.Pool                          // *[]byte scratch for PUB headers
	onMsgErr func(sub *Subscription, err error) // for tests
}

// Dial connects to the hub at addr and presents cfg's name and credential. It returns once the
// hub accepted the client, or its refusal (an error matching ErrPermission), or the failure to
// reach it.
func Dial(ctx context.Context, addr string, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	sess, err := oneway.Dial(ctx, addr, cfg.Session)
	if err != nil {
		return nil, err
	}
	var id [12]byte
	_, _ = rand.Read(id[:])
	c := &Client{
		cfg:      cfg,
		log:      cfg.Logger,
		sess:     sess,
		ev:       events.New(cfg.Events),
		inbox:    inboxPrefix + hex.EncodeToString(id[:]),
		done:     make(chan struct{}),
		subs:     make(map[uint64]*Subscription),
		pending:  make(map[uint64]*Ticket),
		requests: make(map[string]chan *Msg),
		drained:  make(chan struct{}),
		ended:    make(chan struct{}),
	}
	cn := wire.Connect{Version: wire.Version, Name: cfg.Name, Token: cfg.Credential.Token,
		User: cfg.Credential.User, Password: cfg.Credential.Password, Inbox: c.inbox}
	if cfg.NoEcho {
		cn.Flags |= wire.ConnectNoEcho
	}
	connect := wire.AppendConnect(nil, cn)
	tk, err := sess.Send(ctx, connect, oneway.AckProcessed)
	if err == nil {
		_, err = tk.Wait(ctx)
	}
	if err != nil {
		sess.Abort()
		<-sess.Done()
		return nil, ftslerr.Errorf("ftsl: pubsub connect to %s: %w", addr, ticketError(err))
	}
	sess.OnClose(c.sessionEnded)
	sess.OnConnectionChange(c.connectionChanged)
	c.wg.Add(1)
	go c.dispatch()
	go func() {
		c.wg.Wait()
		<-sess.Done()
		c.ev.Close()
		<-c.ev.Done()
		close(c.done)
	}()
	return c, nil
}

// Events returns the channel of the client's events: its subscriptions made and ended, slow
// consumer notices from the hub, refusals, its connection dying and the session resuming
// (SessionReconnecting, SessionResumed), and the session's end. It is bounded.
func (c *Client) Events() <-chan events.Event { return c.ev.Channel() }

// connectionChanged tells the client's events that its connection died and the session is
// resuming (SessionReconnecting), or that it resumed (SessionResumed): a chat's "reconnecting...".
func (c *Client) connectionChanged(connected bool, err error) {
	if connected {
		c.event(events.SessionResumed, "", nil)
	} else {
		c.event(events.SessionReconnecting, "", err)
	}
}

// OnEvent registers a callback for the client's events.
func (c *Client) OnEvent(f func(events.Event)) { c.ev.OnEvent(f) }

func (c *Client) event(kind events.Kind, subject string, err error) {
	if c.ev.Subscribed() {
		c.ev.Publish(events.Event{Kind: kind, Session: c.sess.ID(), Subject: subject, Err: err, Time: time.Now()})
	}
}

// Done is closed once the client ended and its goroutines returned.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the client ended; nil while it lives and after Close.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Publish sends data on subject, asking for acknowledgement level, and returns its ticket once
// the message is buffered; data may be reused at once. It blocks only while the session's buffer
// is full, until ctx ends. An invalid subject is refused at once; a publish the hub refuses (not
// permitted) fails its ticket.
func (c *Client) Publish(ctx context.Context, subject string, data []byte, level AckLevel, opts ...PublishOption) (*Ticket, error) {
	var o publishOptions
	for _, opt := range opts {
		opt(&o)
	}
	return c.publish(ctx, subject, "", data, level, o)
}

// PublishOption configures one publish.
type PublishOption func(*publishOptions)

type publishOptions struct{ reportDelivered bool }

// ReportDelivered asks, for a publish at AckProcessed, to hear when every matched subscriber was
// handed the message, before they all processed it: Ticket.Delivered is closed then and Status
// says StatusDelivered (a messenger's second tick). It costs the hub one message more per
// publish; without it Delivered is closed only when the ticket ends.
func ReportDelivered() PublishOption { return func(o *publishOptions) { o.reportDelivered = true } }

func (c *Client) publish(ctx context.Context, subject, reply string, data []byte, level AckLevel, o publishOptions) (*Ticket, error) {
	if err := subjects.ValidatePublish(subject, c.cfg.MaxSubjectLength); err != nil {
		return nil, err
	}
	if level > AckProcessed {
		return nil, ftslerr.Errorf("ftsl: invalid ack level %d", level)
	}
	c.mu.Lock()
	if c.closing || c.err != nil {
		err := c.endedErr()
		c.mu.Unlock()
		return nil, err
	}
	c.nextPub++
	t := &Ticket{id: c.nextPub, level: level}
	if level != AckNone {
		c.pending[t.id] = t
	}
	c.mu.Unlock()

	bp, _ := c.hdrPool.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	lv := uint8(level)
	if o.reportDelivered && level == AckProcessed {
		lv |= wire.ReportDelivered
	}
	*bp = wire.AppendPubHeader((*bp)[:0], t.id, lv, subject, reply)
	otk, err := c.sess.SendParts(ctx, *bp, data, oneway.AckProcessed)
	c.hdrPool.Put(bp)
	if err != nil {
		c.mu.Lock()
		c.takePendingLocked(t.id)
		c.mu.Unlock()
		return nil, err
	}
	// The hub confirms the PUB once it routed it, or refuses it with a reason.
	otk.OnEnd(func(otk *oneway.Ticket) {
		switch {
		case otk.Status() == oneway.StatusFailed:
			c.mu.Lock()
			c.takePendingLocked(t.id)
			c.mu.Unlock()
			err := ticketError(otk.Err())
			if errors.Is(err, ErrPermission) {
				c.event(events.PermissionDenied, subject, err)
			}
			t.end(Outcome{}, err)
		case level == AckNone:
			t.end(Outcome{}, nil)
		}
	})
	return t, nil
}

// dispatch takes every message the hub sends and hands it on: a subscription's message to its
// handler or channel, an outcome to its ticket.
func (c *Client) dispatch() {
	defer c.wg.Done()
	for {
		// A message and its delivery in one allocation: most of what arrives is MSG.
		r := new(arrival)
		d := &r.d
		err := c.sess.RecvInto(context.Background(), d)
		if err != nil {
			c.failPending(err)
			c.closeSubscriptions()
			return
		}
		switch wire.Op(d.Data) {
		case wire.OpMsg:
			c.message(d, &r.m)
		case wire.OpOutcome:
			o, err := wire.DecodeOutcome(d.Data)
			_ = d.Confirm()
			if err != nil {
				c.log.Warn().Err(err).Msg("pubsub: bad outcome from the hub")
				continue
			}
			c.mu.Lock()
			t := c.takePendingLocked(o.PubID)
			c.mu.Unlock()
			if t != nil {
				t.end(outcomeOf(o))
			}
		case wire.OpProgress:
			pr, err := wire.DecodeProgress(d.Data)
			_ = d.Confirm()
			if err != nil {
				c.log.Warn().Err(err).Msg("pubsub: bad progress from the hub")
				continue
			}
			c.mu.Lock()
			t := c.pending[pr.PubID]
			c.mu.Unlock()
			if t != nil { // (none if the OUTCOME overtook it)
				t.reachDelivered()
			}
		case wire.OpNotice:
			n, err := wire.DecodeNotice(d.Data)
			_ = d.Confirm()
			if err == nil && n.Kind == wire.NoticeSlow {
				c.mu.Lock()
				sub := c.subs[n.SID]
				c.mu.Unlock()
				if sub != nil {
					c.event(events.SlowConsumer, sub.subject, ftslerr.Errorf("%w: %s", ErrSlowConsumer, n.Text))
				}
			}
		default:
			_ = d.Reject(ftslerr.Errorf("%w: op %d", wire.ErrMalformed, wire.Op(d.Data)))
		}
	}
}

// arrival is what the dispatcher receives: a delivery, and the message made of it if it is a MSG.
type arrival struct {
	m Msg
	d oneway.Delivery
}

// message hands one MSG to its subscription.
func (c *Client) message(d *oneway.Delivery, m *Msg) {
	w, err := wire.DecodeMsg(d.Data, c.names.intern)
	if err != nil {
		_ = d.Reject(err)
		return
	}
	c.mu.Lock()
	sub := c.subs[w.SID]
	c.mu.Unlock()
	if sub == nil {
		_ = d.Reject(ErrUnsubscribed)
		return
	}
	*m = Msg{Subject: w.Subject, Reply: w.Reply, Publisher: w.Publisher, Data: w.Payload,
		Redelivered: d.Redelivered, Attempt: d.Attempt, d: d, c: c}
	sub.offer(m)
}

// sessionEnded runs once the session ended (closed or lost).
func (c *Client) sessionEnded(err error) {
	c.mu.Lock()
	closing := c.closing
	if !closing && c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	close(c.ended)
	// The publishes still waiting for their outcome end once the dispatcher has taken every
	// message the session received (failPending): the outcomes may be among them.
	kind := events.SessionClosed
	if errors.Is(err, ErrSessionLost) {
		kind = events.SessionLost
	}
	if !closing {
		c.event(kind, "", err)
	}
}

// failPending ends the publishes whose outcome never came: the session ended (err) and every
// message it received was taken. It waits for the session's own end first (sessionEnded, which
// oneway calls after every ticket ended): a publish the hub never took then ends with the
// session's error, not as one whose outcome went missing.
func (c *Client) failPending(err error) {
	<-c.ended
	c.mu.Lock()
	pending := c.pending
	c.pending = map[uint64]*Ticket{}
	c.checkDrainedLocked()
	c.mu.Unlock()
	for _, t := range pending {
		t.end(Outcome{}, ftslerr.Errorf("%w: %w", err, errNoOutcome))
	}
}

// takePendingLocked removes and returns the publish waiting for its outcome under id, if any.
func (c *Client) takePendingLocked(id uint64) *Ticket {
	t := c.pending[id]
	delete(c.pending, id)
	c.checkDrainedLocked()
	return t
}

func (c *Client) checkDrainedLocked() {
	if c.closing && len(c.pending) == 0 {
		select {
		case <-c.drained:
		default:
			close(c.drained)
		}
	}
}

func (c *Client) endedErr() error {
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

// closeSubscriptions ends every subscription: the session is over.
func (c *Client) closeSubscriptions() {
	c.mu.Lock()
	subs := c.subs
	c.subs = map[uint64]*Subscription{}
	err := c.endedErr()
	c.mu.Unlock()
	for _, sub := range subs {
		sub.sessionEnded(err)
	}
}

// Close ends the client gracefully: it stops new publishes, waits until every publish so far has
// its outcome and every message taken is handled (its handler returned, or Confirm or Reject was
// called), then closes the session. If ctx ends first, the session is aborted and ctx's error
// returned. Safe to call twice.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	c.closing = true
	c.checkDrainedLocked()
	c.mu.Unlock()
	select {
	case <-c.drained:
	case <-ctx.Done():
		c.sess.Abort()
		return ctx.Err()
	}
	err := c.sess.Close(ctx)
	select {
	case <-c.done:
	case <-ctx.Done():
		c.sess.Abort()
		return ctx.Err()
	}
	return err
}

// Abort ends the client at once: pending tickets fail, subscriptions end.
func (c *Client) Abort() {
	c.mu.Lock()
	c.closing = true
	subs := make([]*Subscription, 0, len(c.subs))
	for _, sub := range c.subs {
		subs = append(subs, sub)
	}
	c.mu.Unlock()
	for _, sub := range subs {
		sub.end(ErrClosed) // now: what they hold is rejected, not handled as after Close
	}
	c.sess.Abort()
}
