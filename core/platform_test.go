package core

import (
	"math"
	"math/bits"
	"testing"
)

// Where int has 32 bits (GOARCH=386 or arm; .ci/run runs the core tests as 386 binaries), sizes
// that a peer advertises as u32 and bounds a user may set as large ints must not overflow.

// TestPeerMaxMessageAboveMaxInt32: a peer may advertise a maximum message above 2^31 (a window of
// 4 GiB - 1 holds one); this side's own, smaller limit must still apply, not a negative one.
func TestPeerMaxMessageAboveMaxInt32(t *testing.T) {
	const mm = 0xFFE00000 // about the largest message a window of 2^32-1 holds
	h, err := parseHello(wireHelloBytes(1, 1, mm, math.MaxUint32, 15000, 4<<20))
	if err != nil {
		t.Fatalf("a window of 2^32-1 holds a message of %d bytes: %v", uint32(mm), err)
	}
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(&cfg, true)
	s.setPeer(1, h)
	if s.peer.maxMessage != cfg.MaxMessageSize {
		t.Fatalf("peer offers %d, this side allows %d: limit %d", uint32(mm), cfg.MaxMessageSize, s.peer.maxMessage)
	}
}

// TestSendBufferClamped: SendBufferBytes: math.MaxInt is a valid way to say "no bound", and the
// sent buffer's ring, which grows to its bound rounded up to a power of two, must still fit an int.
func TestSendBufferClamped(t *testing.T) {
	cfg, err := Config{SendBufferBytes: math.MaxInt}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c := 1 << bits.Len(uint(cfg.SendBufferBytes-1)); c <= 0 || c < cfg.SendBufferBytes {
		t.Fatalf("SendBufferBytes %d: the ring would round it up to %d", cfg.SendBufferBytes, c)
	}
	if err := cfg.offer().check(); err != nil {
		t.Fatalf("offer of SendBufferBytes %d: %v", cfg.SendBufferBytes, err)
	}
	def, err := Config{}.withDefaults()
	if err != nil || def.SendBufferBytes != DefaultSendBufferBytes || def.offer().sendBuffer != DefaultSendBufferBytes {
		t.Fatalf("default SendBufferBytes %d, offered %d: %v", def.SendBufferBytes, def.offer().sendBuffer, err)
	}
}
