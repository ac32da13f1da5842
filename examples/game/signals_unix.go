//go:build unix

package main

import (
	"os"
	"syscall"
)

// serverSignals returns the signals that move the server (SIGUSR1), that save it (SIGUSR2, and
// SIGTERM when there is a file to save to), and that end the game (SIGINT, and SIGTERM when
// there is no file).
func serverSignals(canSave bool) (move, save, end []os.Signal) {
	move, save, end = []os.Signal{syscall.SIGUSR1}, []os.Signal{syscall.SIGUSR2}, []os.Signal{os.Interrupt}
	if canSave {
		save = append(save, syscall.SIGTERM)
	} else {
		end = append(end, syscall.SIGTERM)
	}
	return move, save, end
}
