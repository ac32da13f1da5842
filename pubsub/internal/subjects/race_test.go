//go:build race

package subjects

const raceEnabled = true
