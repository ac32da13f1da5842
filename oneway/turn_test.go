package oneway

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSendTurn: one holder at a time; a blocked taker gets the turn when it is given back, before
// a non-blocking taker that comes later; a blocked taker whose context ends leaves the queue.
func TestSendTurn(t *testing.T) {
	var tn sendTurn
	tn.init()
	if !tn.tryTake() || tn.tryTake() {
		t.Fatal("a free turn is taken once, and only once")
	}
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error)
	go func() { gaveUp <- tn.take(ctx) }()
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("a take whose context ended: %v", err)
	}
	got := make(chan error)
	go func() { got <- tn.take(context.Background()) }()
	for tn.waiting.Load() == 0 { // (no event says a goroutine blocked: poll the count it raises)
		time.Sleep(time.Millisecond)
	}
	tn.give()
	if tn.tryTake() { // (the waiter either waits still, or holds the turn)
		t.Fatal("a non-blocking taker went before a waiting one")
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if tn.tryTake() {
		t.Fatal("the turn was taken twice")
	}
	tn.give()
	if !tn.tryTake() {
		t.Fatal("the turn was not given back")
	}
}
