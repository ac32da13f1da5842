package pubsub

import (
	"context"
	"testing"
)

// TestStatsCountBeforeOutcome: once a publish's outcome reached its publisher, the hub's Stats
// count that publish and the copies it sent (they are added before the outcome can go).
func TestStatsCountBeforeOutcome(t *testing.T) {
	h := testHub(t, HubConfig{})
	ctx := testCtx(t)
	pub := dial(t, h, Config{Name: "pub"})
	sub := dial(t, h, Config{Name: "sub"})
	if _, err := sub.Subscribe("counted", func(context.Context, *Msg) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 300; i++ {
		subject := "counted"
		if i%2 == 0 {
			subject = "nobody" // no share: the outcome goes as routing ends
		}
		tk, err := pub.Publish(ctx, subject, []byte("x"), AckDelivered)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tk.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		st := h.Stats()
		if st.Published < i || st.Sent < (i+1)/2 {
			t.Fatalf("after publish %d's outcome: Stats say %d published, %d sent", i, st.Published, st.Sent)
		}
	}
}
