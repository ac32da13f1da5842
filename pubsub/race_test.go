//go:build race

package pubsub

const raceEnabled = true
