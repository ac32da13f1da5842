package events_test

import (
	"testing"

	"github.com/ftsl-go/ftsl/events"
)

// BenchmarkPublish measures an event's way from Publish to a callback. In the trickle case, every
// event finds the dispatcher idle: it starts the goroutine, and the queue is given back when it
// ends; the pooled first ring keeps that from allocating.
func BenchmarkPublish(b *testing.B) {
	for _, bc := range []struct {
		name  string
		burst int
	}{
		{"trickle", 1},
		{"burst of 64", 64},
		{"burst of 512", 512},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := events.New(events.Config{})
			defer d.Close()
			last := make(chan struct{}, 1)
			d.OnEvent(func(e events.Event) {
				if e.Message == uint64(bc.burst) {
					last <- struct{}{}
				}
			})
			b.ReportAllocs()
			for b.Loop() {
				for i := 1; i <= bc.burst; i++ {
					d.Publish(msg(uint64(i)))
				}
				<-last
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*bc.burst), "ns/event")
			if d.Dropped() != 0 {
				b.Fatalf("Dropped() = %d", d.Dropped())
			}
		})
	}
}
