//go:build !race

package main

// raceEnabled: the tests build the program with the race detector too.
const raceEnabled = false
