// Package cmdlog makes the logger of the module's commands (ftsl-hub, ftsl-naming) from their
// -log and -log-format flags, the same way for each.
package cmdlog

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// New returns a logger writing to w at level (trace, debug, info, warn, error or disabled) in
// format: json, console (for people), or auto (console on a terminal, json otherwise).
func New(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("-log %q: want trace, debug, info, warn, error or disabled", level)
	}
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "console"
			}
		}
	}
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}
