package pubsub

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/ftsl-go/ftsl/events"
	"github.com/ftsl-go/ftsl/internal/ftslerr"
	"github.com/ftsl-go/ftsl/oneway"
	"github.com/ftsl-go/ftsl/pubsub/internal/subjects"
	"github.com/ftsl-go/ftsl/pubsub/internal/wire"
)

// Msg is one message a subscription received.
type Msg struct {
	Subject   string // the subject it was published on
	Reply     string // where an answer goes (Respond), if the publisher asked for one
	Publisher string // the publisher's identity
	// Data is the message. It stays valid until the message is confirmed, or rejected for the
	// last time; copy it to keep it longer.
	Data        []byte
	Redelivered bool // an earlier attempt at this message failed
	Attempt     int  // 1, then 2, 3... up to the session's MaxAttempts

	d *oneway.Delivery
	c *Client
}

// Confirm reports the message processed: the publisher's outcome counts it. A handler's nil
// return does this.
func (m *Msg) Confirm() error { return m.d.Confirm() }

// Reject reports that this attempt failed: the message comes again, until the session's
// MaxAttempts; then the publisher's outcome lists the failure with reason. A handler's error
// return does this.
func (m *Msg) Reject(reason error) error { return m.d.Reject(reason) }

// Respond publishes data to the message's reply subject, the answer a Request waits for.
func (m *Msg) Respond(ctx context.Context, data []byte) error {
	if m.Reply == "" {
		return errors.New("ftsl: the message asked for no answer")
	}
	_, err := m.c.publish(ctx, m.Reply, "", data, AckNone, publishOptions{})
	return err
}

// SubOption configures a subscription.
type SubOption func(*subOptions)

type subOptions struct{ queue string }

// Queue makes the subscription a member of queue group name: each message on the subject goes
// to one member of the group only, and to another member if that one fails it for good or its
// session is lost.
func Queue(name string) SubOption { return func(o *subOptions) { o.queue = name } }

// Subscription is a client's interest in a subject pattern.
type Subscription struct {
	c       *Client
	sid     uint64
	subject string
	queue   string
	handler func(context.Context, *Msg) error
	ch      chan<- *Msg // SubscribeChan's
	inbox   *msgQueue   // waiting for the handler
	ctx     context.Context
	cancel  context.CancelFunc

	mu   sync.Mutex
	done bool
	err  error
}

// Subject is the pattern the subscription listens to.
func (s *Subscription) Subject() string { return s.subject }

// Err says why the subscription ended: nil while it lives and after Unsubscribe, the session's
// error if it was lost.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Subscribe calls handler for every message published on a subject that pattern matches, one
// message at a time, in order, on a goroutine of the subscription's own. A handler that returns
// nil confirms the message; one that returns an error or panics fails that attempt (the panic is
// recovered and logged) and the message comes again, up to the session's MaxAttempts. The context
// the handler gets ends when the subscription does. Subscribe returns once the hub has the
// subscription, or its refusal (ErrPermission, ErrInvalidSubject, ErrLimit), within
// Config.Timeout.
func (c *Client) Subscribe(pattern string, handler func(ctx context.Context, m *Msg) error, opts ...SubOption) (*Subscription, error) {
	if handler == nil {
		return nil, errors.New("ftsl: Subscribe needs a handler")
	}
	return c.subscribe(pattern, handler, nil, opts)
}

// SubscribeChan sends every message published on a subject that pattern matches to ch, in order;
// the application calls Confirm or Reject on each. While ch is full, the client takes no more
// messages from the hub. ch is never closed by the client.
func (c *Client) SubscribeChan(pattern string, ch chan<- *Msg, opts ...SubOption) (*Subscription, error) {
	if ch == nil {
		return nil, errors.New("ftsl: SubscribeChan needs a channel")
	}
	return c.subscribe(pattern, nil, ch, opts)
}

func (c *Client) subscribe(pattern string, handler func(context.Context, *Msg) error, ch chan<- *Msg, opts []SubOption) (*Subscription, error) {
	var o subOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := subjects.ValidateSubscribe(pattern, c.cfg.MaxSubjectLength); err != nil {
		return nil, err
	}
	if o.queue != "" {
		if err := subjects.ValidateQueue(o.queue, c.cfg.MaxSubjectLength); err != nil {
			return nil, err
		}
	}
	s := &Subscription{c: c, subject: pattern, queue: o.queue, handler: handler, ch: ch}
	if handler != nil {
		s.inbox = newMsgQueue(c.cfg.MaxPending)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	c.mu.Lock()
	if c.closing || c.err != nil {
		err := c.endedErr()
		c.mu.Unlock()
		return nil, err
	}
	c.nextSID++
	s.sid = c.nextSID
	c.subs[s.sid] = s // before the hub has it: its first message may come right after
	c.mu.Unlock()
	if err := c.ask(wire.AppendSub(nil, wire.Sub{SID: s.sid, Subject: pattern, Queue: o.queue})); err != nil {
		c.mu.Lock()
		delete(c.subs, s.sid)
		c.mu.Unlock()
		s.cancel()
		if errors.Is(err, ErrPermission) {
			c.event(events.PermissionDenied, pattern, err)
		}
		return nil, err
	}
	if handler != nil {
		c.wg.Add(1)
		go s.run()
	}
	c.event(events.Subscribed, pattern, nil)
	return s, nil
}

// ask sends a request the hub answers by confirming or refusing it, and waits for the answer.
func (c *Client) ask(req []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	tk, err := c.sess.Send(ctx, req, oneway.AckProcessed)
	if err == nil {
		_, err = tk.Wait(ctx)
	}
	return ticketError(err)
}

// Unsubscribe ends the subscription: once the hub has taken it off, no more messages come.
// Messages already taken and not yet handled are rejected (ErrUnsubscribed). It returns once the
// hub answered, within Config.Timeout.
func (s *Subscription) Unsubscribe() error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	err := s.c.ask(wire.AppendUnsub(nil, s.sid))
	s.c.mu.Lock()
	delete(s.c.subs, s.sid)
	s.c.mu.Unlock()
	s.end(nil)
	s.c.event(events.Unsubscribed, s.subject, nil)
	return err
}

// offer hands m to the subscription (the dispatcher's call), waiting while it is full.
func (s *Subscription) offer(m *Msg) {
	if s.ch == nil {
		if !s.inbox.put(m) {
			_ = m.Reject(ErrUnsubscribed)
		}
		return
	}
	if s.ctx.Err() != nil { // a select with both ready would choose at random
		_ = m.Reject(ErrUnsubscribed)
		return
	}
	select {
	case s.ch <- m:
	case <-s.ctx.Done():
		_ = m.Reject(ErrUnsubscribed)
	}
}

// sessionEnded ends the subscription with its session (the dispatcher's call, after its last
// offer). Unless the session was lost, the messages already taken still go to the handler: the
// hub counted them delivered, and Client.Close promises them handled.
func (s *Subscription) sessionEnded(err error) {
	if s.handler == nil || errors.Is(err, ErrSessionLost) {
		s.end(err)
		return
	}
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return
	}
	s.done, s.err = true, err
	s.mu.Unlock()
	s.inbox.finish() // run hands over what is left, then ends the context
}

// end ends the subscription, with why (nil for Unsubscribe): the messages waiting for its
// handler are rejected, and no more reach it.
func (s *Subscription) end(err error) {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return
	}
	s.done, s.err = true, err
	s.mu.Unlock()
	s.cancel()
	if s.inbox != nil {
		for _, m := range s.inbox.close() {
			_ = m.Reject(ErrUnsubscribed)
		}
	}
}

// run is the handler's goroutine.
func (s *Subscription) run() {
	defer s.c.wg.Done()
	for {
		m, ok := s.inbox.take()
		if !ok {
			s.cancel() // (after finish: everything taken was handled)
			return
		}
		if s.ctx.Err() != nil { // taken as the subscription ended
			_ = m.Reject(ErrUnsubscribed)
			continue
		}
		if err := s.call(m); err != nil {
			_ = m.Reject(err)
		} else {
			_ = m.Confirm()
		}
	}
}

func (s *Subscription) call(m *Msg) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = ftslerr.Errorf("%w: %v", oneway.ErrHandlerPanic, r)
			s.c.log.Error().Str("subject", m.Subject).Str("panic", fmt.Sprint(r)).Bytes("stack", debug.Stack()).
				Msg("pubsub handler panicked; attempt failed")
		}
	}()
	return s.handler(s.ctx, m)
}
