package main

import (
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ftsl-go/ftsl/internal/testkit"
)

// benchSize is the file the benchmarks move: 256 MiB.
const benchSize = 256 << 20

var (
	benchFileOnce sync.Once
	benchFileDir  string
	benchFileErr  error
)

// benchFile writes, once per test binary, a file of benchSize random bytes, and returns its path.
func benchFile(b *testing.B) string {
	benchFileOnce.Do(func() {
		benchFileDir, benchFileErr = sharedDir("filetransfer-bench-")
		if benchFileErr == nil {
			benchFileErr = writeRandomFile(filepath.Join(benchFileDir, "big.bin"), benchSize, 1)
		}
	})
	if benchFileErr != nil {
		b.Fatal(benchFileErr)
	}
	return filepath.Join(benchFileDir, "big.bin")
}

// sharedDirs are directories made once for the whole test binary (the benchmarks' file),
// removed by TestMain.
var (
	sharedMu   sync.Mutex
	sharedDirs []string
)

// sharedDir makes a directory that lasts until every test and benchmark has run.
func sharedDir(pattern string) (string, error) {
	dir, err := os.MkdirTemp("", pattern)
	if err == nil {
		sharedMu.Lock()
		sharedDirs = append(sharedDirs, dir)
		sharedMu.Unlock()
	}
	return dir, err
}

func TestMain(m *testing.M) {
	code := testkit.Main(m)
	for _, dir := range sharedDirs {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// writeRandomFile writes size pseudo-random bytes drawn from seed to path.
func writeRandomFile(path string, size int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	if _, err := io.CopyN(f, rand.NewChaCha8(s), size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
