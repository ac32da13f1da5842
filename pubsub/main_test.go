package pubsub

import (
	"fmt"
	"os"
	"testing"
)

// childMains are the parts a test runs in a child process (the test binary run again): the
// environment variable that selects one, and its main, given the variable's value.
var childMains = map[string]func(spec string) error{}

func TestMain(m *testing.M) {
	for env, run := range childMains {
		if spec := os.Getenv(env); spec != "" {
			if err := run(spec); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}
