package subjects

import (
	"fmt"
	"strconv"
	"testing"
)

// benchIndex fills an index with n subscriptions: per ten, seven distinct literals
// bench.<i>.evt, one member of queue group "workers" on one of bench.0.evt..bench.999.evt, one
// bench.<i>.* and one bench.<i>.>; plus bench.*.evt and bench.> on top. A subject bench.<k>.evt
// matches a literal or wildcard of its own, the queue group and the two on top.
func benchIndex(b *testing.B, n int, cfg Config) *Index[int] {
	ix, err := New[int](cfg)
	if err != nil {
		b.Fatal(err)
	}
	add := func(pattern, queue string, v int) {
		if err := ix.Insert(NewSubscription(pattern, queue, v)); err != nil {
			b.Fatal(err)
		}
	}
	for i := range n {
		switch i % 10 {
		case 7:
			add(fmt.Sprintf("bench.%d.evt", i%1000), "workers", i)
		case 8:
			add(fmt.Sprintf("bench.%d.*", i), "", i)
		case 9:
			add(fmt.Sprintf("bench.%d.>", i), "", i)
		default:
			add(fmt.Sprintf("bench.%d.evt", i), "", i)
		}
	}
	add("bench.*.evt", "", -1)
	add("bench.>", "", -2)
	return ix
}

// benchSubjects are k subjects bench.<j>.evt spread over the first n.
func benchSubjects(n, k int) []string {
	s := make([]string, k)
	for j := range s {
		s[j] = fmt.Sprintf("bench.%d.evt", j*max(n/k, 1))
	}
	return s
}

var sink int

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 1000, 100_000} {
		// Hits: 256 subjects, all cached after the first round.
		b.Run("hit/subs="+strconv.Itoa(n), func(b *testing.B) {
			ix := benchIndex(b, n, Config{})
			subjects := benchSubjects(n, 256)
			for _, s := range subjects {
				ix.Match(s)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				sink += len(ix.Match(subjects[i&255]).Plain)
			}
		})
		// Misses without a cache: the trie walk and building the result.
		b.Run("miss-nocache/subs="+strconv.Itoa(n), func(b *testing.B) {
			ix := benchIndex(b, n, Config{CacheSize: -1})
			subjects := benchSubjects(n, 256)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				sink += len(ix.Match(subjects[i&255]).Plain)
			}
		})
		// Misses with the cache on, over 8 times more subjects than it holds: the walk, the
		// result, an eviction and a store each time.
		b.Run("miss-evicting/subs="+strconv.Itoa(n), func(b *testing.B) {
			ix := benchIndex(b, n, Config{})
			subjects := make([]string, 8*DefaultCacheSize)
			for j := range subjects {
				subjects[j] = fmt.Sprintf("bench.%d.evt", j)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				sink += len(ix.Match(subjects[i%len(subjects)]).Plain)
			}
		})
	}
}

func BenchmarkMatchBytesHit(b *testing.B) {
	ix := benchIndex(b, 1000, Config{})
	subjects := benchSubjects(1000, 256)
	bs := make([][]byte, len(subjects))
	for j, s := range subjects {
		bs[j] = []byte(s)
		ix.Match(s)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		sink += len(ix.MatchBytes(bs[i&255]).Plain)
	}
}

// BenchmarkMatchParallel: cache hits from every core at once, and the same with one goroutine
// inserting and removing a literal subscription on a subject nobody matches all along.
func BenchmarkMatchParallel(b *testing.B) {
	for _, churn := range []bool{false, true} {
		b.Run(fmt.Sprintf("hit/churn=%v", churn), func(b *testing.B) {
			ix := benchIndex(b, 1000, Config{})
			subjects := benchSubjects(1000, 256)
			for _, s := range subjects {
				ix.Match(s)
			}
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				if !churn {
					return
				}
				s := NewSubscription("other.subject", "", 0)
				for {
					select {
					case <-stop:
						return
					default:
					}
					_ = ix.Insert(s)
					_ = ix.Remove(s)
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i, n := 0, 0
				for pb.Next() {
					n += len(ix.Match(subjects[i&255]).Plain)
					i++
				}
				_ = n
			})
			b.StopTimer()
			close(stop)
			<-done
		})
	}
}

// BenchmarkInsertRemove inserts one subscription and removes it again, in an index of n.
func BenchmarkInsertRemove(b *testing.B) {
	for _, n := range []int{10, 1000, 100_000} {
		for _, pattern := range []string{"bench.new.evt", "bench.*.new", "bench.5.evt"} {
			b.Run(fmt.Sprintf("%s/subs=%d", pattern, n), func(b *testing.B) {
				ix := benchIndex(b, n, Config{})
				s := NewSubscription(pattern, "", 0)
				b.ReportAllocs()
				for b.Loop() {
					if err := ix.Insert(s); err != nil {
						b.Fatal(err)
					}
					if err := ix.Remove(s); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkInsertRemoveMany inserts n subscriptions (millionSubs) into an empty index and
// removes them all; ns/sub, the cost of one insert plus one remove, should not grow with n.
func BenchmarkInsertRemoveMany(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run("subs="+strconv.Itoa(n), func(b *testing.B) {
			subs := millionSubs(n)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				ix, _ := New[string](Config{})
				for _, s := range subs {
					if err := ix.Insert(s); err != nil {
						b.Fatal(err)
					}
				}
				for _, s := range subs {
					if err := ix.Remove(s); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/sub")
		})
	}
}

func BenchmarkValidatePublish(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if ValidatePublish("orders.eu-west.created.v2", 0) != nil {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkRules(b *testing.B) {
	r := mustRules(b, []string{"orders.*.created", "orders.>", "public.>", "inbox.alice.>"}, []string{"orders.secret.>", "admin.>"})
	b.Run("CanPublish", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !r.CanPublish("orders.eu.created") {
				b.Fatal("refused")
			}
		}
	})
	b.Run("Deliverable", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !r.Deliverable("orders.eu.created") {
				b.Fatal("refused")
			}
		}
	})
	b.Run("CanSubscribe", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !r.CanSubscribe("orders.*.created") {
				b.Fatal("refused")
			}
		}
	})
}

func BenchmarkPickRandom(b *testing.B) {
	members := make([]*Subscription[int], 16)
	for i := range members {
		members[i] = NewSubscription("x", "q", i)
	}
	g := Group[int]{Name: "q", Members: members}
	failed := members[3]
	b.ReportAllocs()
	for b.Loop() {
		if g.PickRandom(func(s *Subscription[int]) bool { return s != failed }) == nil {
			b.Fatal("nil")
		}
	}
}
