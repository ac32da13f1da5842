// Package ftslerr builds the library's wrapped errors so that their text carries the "ftsl: "
// prefix once, however many of the library's errors are wrapped inside one another:
// "ftsl: snapshot: section "core": core state: invalid state: nil", not
// "ftsl: snapshot: section "core": ftsl: core state: ftsl: invalid state: nil".
package ftslerr

import (
	"fmt"
	"strings"
)

const prefix = "ftsl: "

// Errorf is fmt.Errorf (with %w wrapping as usual) whose text keeps only the leading "ftsl: ":
// the prefixes of the errors it wraps are dropped where they follow a ": ".
func Errorf(format string, args ...any) error {
	return &wrapped{fmt.Errorf(format, args...)}
}

type wrapped struct{ err error }

func (w *wrapped) Error() string { return Clean(w.err.Error()) }

func (w *wrapped) Unwrap() error { return w.err }

// Clean returns s with the "ftsl: " that follow a ": " removed, and a single one in front if s
// had one.
func Clean(s string) string {
	rest, had := strings.CutPrefix(s, prefix)
	rest = strings.ReplaceAll(rest, ": "+prefix, ": ")
	if had {
		return prefix + rest
	}
	return rest
}
