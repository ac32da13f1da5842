package oneway

import (
	"context"
	"testing"
)

// BenchmarkSend measures one-way throughput of 128-byte messages at each acknowledgement level,
// from the first Send until the last ticket ended: the receiver confirms every message that asks.
// Compare AckProcessed with AckNone within one run: acknowledgements are cumulative and ride on
// other traffic, so asking to hear about processing should cost little.
func BenchmarkSend(b *testing.B) {
	for _, level := range []AckLevel{AckNone, AckDelivered, AckProcessed} {
		b.Run(level.String(), func(b *testing.B) { benchSend(b, level) })
	}
}

func benchSend(b *testing.B, level AckLevel) {
	ln, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	ctx := context.Background()
	c, err := Dial(ctx, ln.Addr().String(), Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { c.Abort(); <-c.Done() }()
	s, err := ln.Accept(ctx)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			d, err := s.Recv(ctx)
			if err != nil {
				return
			}
			_ = d.Confirm()
		}
	}()
	msg := make([]byte, 128)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	var last *Ticket
	for i := 0; i < b.N; i++ {
		if last, err = c.Send(ctx, msg, level); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := last.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
}
