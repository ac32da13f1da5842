// Package testkit holds what the tests of several FTSL packages share: a context bound to the
// test, a goroutine-leak check, the message sizes and contents of the chaos tests, and the
// building and running of a command as a child process (Build, Start).
package testkit

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// Ctx is a context that ends with the test, with a generous bound so a hung test fails with a
// message rather than at the global timeout.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// CheckGoroutines fails t if the number of goroutines does not come back to base. Call it once
// the sessions under test have ended (their Done channels closed); the runtime may take a moment
// to reap the last goroutines, which is no event one can wait on, hence the polling.
func CheckGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutines: %d, want <= %d\n%s", n, base, buf[:runtime.Stack(buf, true)])
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ChaosMessages is how many messages each side of a chaos test sends: 50,000 (5,000 with
// -short); FTSL_CHAOS_MESSAGES overrides it.
func ChaosMessages() int {
	if v, err := strconv.Atoi(os.Getenv("FTSL_CHAOS_MESSAGES")); err == nil && v > 0 {
		return v
	}
	if testing.Short() {
		return 5000
	}
	return 50000
}

// LogUniformSize draws a message size from 1 B to max, uniform in its logarithm: most messages
// are small, every size class is exercised, and the total stays within a test's budget.
func LogUniformSize(r *rand.Rand, max int) int {
	return int(math.Exp(r.Float64() * math.Log(float64(max))))
}

// Fill fills b with bytes derived from (seed, i), so a receiver can check a message without a
// copy of it.
func Fill(b []byte, seed, i uint64) {
	r := rand.New(rand.NewPCG(seed, i))
	for k := 0; k < len(b); k += 8 {
		v := r.Uint64()
		for j := k; j < min(k+8, len(b)); j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
}
