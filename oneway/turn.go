package oneway

import (
	"context"
	"sync/atomic"
)

// sendTurn lets one sender at a time through (Session.sendTicket). Taking a free turn is one
// atomic operation: a pubsub hub takes it for every subscriber of every message, where a
// channel's lock and unlock on each side cost more than the send itself. Blocked senders wait on
// a channel and go before non-blocking ones that come later.
type sendTurn struct {
	held    atomic.Bool
	waiting atomic.Int32  // senders in take, blocked or about to be
	wake    chan struct{} // one token: the turn was given back while some waited
}

func (t *sendTurn) init() { t.wake = make(chan struct{}, 1) }

// tryTake takes the turn if it is free and nobody waits for it.
func (t *sendTurn) tryTake() bool {
	return t.waiting.Load() == 0 && t.held.CompareAndSwap(false, true)
}

// take waits for the turn until ctx ends.
func (t *sendTurn) take(ctx context.Context) error {
	if t.tryTake() {
		return nil
	}
	t.waiting.Add(1)
	defer t.waiting.Add(-1)
	for {
		// waiting was raised before this attempt: a give after a failed attempt sees it and
		// leaves a token.
		if t.held.CompareAndSwap(false, true) {
			return nil
		}
		select {
		case <-t.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// give hands the turn back, waking a waiting sender if there is one.
func (t *sendTurn) give() {
	t.held.Store(false)
	if t.waiting.Load() > 0 {
		select {
		case t.wake <- struct{}{}:
		default: // a token is there already: it wakes one of them, who takes the turn
		}
	}
}
