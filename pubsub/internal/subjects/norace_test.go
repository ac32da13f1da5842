//go:build !race

package subjects

const raceEnabled = false
