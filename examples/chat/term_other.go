//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package main

import (
	"errors"
	"os"
)

var errNoRawMode = errors.New("chat: no raw terminal mode on this system")

// makeRaw fails here: chat then reads whole lines, as from a script.
func makeRaw(*os.File) (func(), error) { return nil, errNoRawMode }

func termSize(*os.File) (int, int, error) { return 0, 0, errNoRawMode }
