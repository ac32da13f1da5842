package naming

import (
	"context"
	"errors"
	"net"
	"testing"
)

func TestSRVResolver(t *testing.T) {
	recs := []*net.SRV{
		{Target: "backup.example.com.", Port: 4000, Priority: 20, Weight: 100},
		{Target: "a.example.com.", Port: 4001, Priority: 10, Weight: 10},
		{Target: "b.example.com.", Port: 4002, Priority: 10, Weight: 30},
		{Target: "zero.example.com.", Port: 4003, Priority: 10, Weight: 0},
		nil,
		{Target: "noport.example.com.", Port: 0, Priority: 1, Weight: 100},
		{Target: ".", Port: 4004, Priority: 1, Weight: 100},
	}
	var asked []string
	lookup := func(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
		asked = append(asked, service+"/"+proto+"/"+name)
		return name, recs, nil
	}
	// Weights 10 and 30 split [0, 40): draws below 10 pick a, the rest b; zero never.
	for _, tc := range []struct {
		draw int
		want string
	}{{0, "a.example.com:4001"}, {9, "a.example.com:4001"}, {10, "b.example.com:4002"}, {39, "b.example.com:4002"}} {
		r := &SRVResolver{Service: "ftsl", Proto: "tcp", LookupSRV: lookup, intN: func(n int) int {
			if n != 40 {
				t.Fatalf("draw among %d, want the weights' sum 40", n)
			}
			return tc.draw
		}}
		if got, err := r.Resolve(context.Background(), "example.com"); err != nil || got != tc.want {
			t.Errorf("draw %d: %q %v, want %q", tc.draw, got, err, tc.want)
		}
	}
	if asked[0] != "ftsl/tcp/example.com" {
		t.Errorf("asked %q", asked[0])
	}

	// All of the lowest priority at weight 0: uniform among them.
	recs = []*net.SRV{{Target: "x.", Port: 1, Priority: 5}, {Target: "y.", Port: 2, Priority: 5}, {Target: "z.", Port: 3, Priority: 6, Weight: 9}}
	r := &SRVResolver{LookupSRV: lookup, intN: func(n int) int { return n - 1 }}
	if got, err := r.Resolve(context.Background(), "_ftsl._tcp.example.com"); err != nil || got != "y:2" {
		t.Errorf("weight 0 group: %q %v", got, err)
	}
	// With the real random draw, only the two of priority 5 come out.
	r.intN = nil
	for range 50 {
		if got, err := r.Resolve(context.Background(), "_ftsl._tcp.example.com"); err != nil || got == "z:3" {
			t.Fatalf("random draw: %q %v", got, err)
		}
	}

	// Nothing usable: ErrNotFound. A lookup failure is wrapped.
	recs = []*net.SRV{{Target: ".", Port: 1}, {Target: "a.", Port: 0}}
	if _, err := r.Resolve(context.Background(), "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("no usable record: %v", err)
	}
	recs = nil
	if _, err := r.Resolve(context.Background(), "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("no record: %v", err)
	}
	dnsErr := &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}
	r.LookupSRV = func(context.Context, string, string, string) (string, []*net.SRV, error) { return "", nil, dnsErr }
	if _, err := r.Resolve(context.Background(), "x"); !errors.Is(err, dnsErr) {
		t.Errorf("lookup failure: %v", err)
	}
}
