//go:build race

package testkit

// raceEnabled: the test binary has the race detector, so Build gives the programs it too.
const raceEnabled = true
