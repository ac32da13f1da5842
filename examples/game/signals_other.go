//go:build !unix

package main

import "os"

// serverSignals returns the signals that move, save and end the server: where there is no
// SIGUSR1 nor SIGUSR2, only the end, on SIGINT.
func serverSignals(bool) (move, save, end []os.Signal) { return nil, nil, []os.Signal{os.Interrupt} }
