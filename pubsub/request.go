package pubsub

import (
	"bytes"
	"context"
	"strconv"
	"strings"
)

// Request publishes data on subject and waits for the first answer a subscriber gives with
// Msg.Respond, until ctx ends. It returns ErrNoResponders at once if no subscription matched.
// The answer comes through the client's inbox (a subscription to _INBOX.<id>.*, made on the
// first request); its Data is the client's own to keep.
func (c *Client) Request(ctx context.Context, subject string, data []byte) (*Msg, error) {
	if err := c.ensureInbox(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nextReq++
	token := strconv.FormatUint(c.nextReq, 36)
	answer := make(chan *Msg, 1)
	c.requests[token] = answer
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.requests, token)
		c.mu.Unlock()
	}()
	// AckDelivered: the outcome says at once whether anyone matched.
	t, err := c.publish(ctx, subject, c.inbox+"."+token, data, AckDelivered, publishOptions{})
	if err != nil {
		return nil, err
	}
	done := t.Done()
	for {
		select {
		case m := <-answer:
			return m, nil
		case <-done:
			out, err := t.Wait(ctx)
			if out.Matched == 0 {
				if err == nil {
					err = ErrNoResponders
				}
				return nil, err
			}
			done = nil // delivered: now the answer only
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ensureInbox subscribes to the client's inbox on first use.
func (c *Client) ensureInbox() error {
	c.mu.Lock()
	has := c.inboxSub != nil
	c.mu.Unlock()
	if has {
		return nil
	}
	sub, err := c.Subscribe(c.inbox+".*", c.answer)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.inboxSub != nil { // another request won the race
		c.mu.Unlock()
		return sub.Unsubscribe()
	}
	c.inboxSub = sub
	c.mu.Unlock()
	return nil
}

// answer takes an answer to a request from the inbox.
func (c *Client) answer(_ context.Context, m *Msg) error {
	token := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	c.mu.Lock()
	ch := c.requests[token]
	c.mu.Unlock()
	if ch != nil {
		cp := *m
		cp.Data = bytes.Clone(m.Data) // the answer outlives its delivery
		cp.d = nil
		select {
		case ch <- &cp:
		default: // a second answer: the first one won
		}
	}
	return nil
}
