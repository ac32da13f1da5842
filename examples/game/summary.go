package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// tally is the game's outcome as the server and the players saw it, side by side.
type tally struct {
	players        int
	ticks          uint32
	scores         uint64
	inputsSent     uint64 // by the players
	inputsReceived uint64 // by the server
	// Important events: sent by the server, their tickets ended processed or failed; lost (the
	// server sent it, the player never had it) and duplicated (a player had it twice).
	sent, processed, failed, lost, duplicated uint64
	problems                                  []string
}

// compare adds up the server's report and the players'. A player is known to both by its
// session ID.
func compare(r report, bots []botReport) tally {
	t := tally{players: len(bots), ticks: r.ticks}
	byID := make(map[uint64]*player, len(r.players))
	for i := range r.players {
		p := &r.players[i]
		byID[p.id] = p
		t.scores += uint64(p.score)
		t.inputsReceived += p.inputs
		t.sent += p.sent
		t.processed += p.processed
		t.failed += p.failed
	}
	problem := func(format string, args ...any) { t.problems = append(t.problems, fmt.Sprintf(format, args...)) }
	for _, b := range bots {
		t.inputsSent += b.inputs
		t.duplicated += b.events.duplicated
		p := byID[b.id]
		if p == nil {
			problem("%s: the server does not know session %d", b.name, b.id)
			continue
		}
		switch got := b.events.distinct(); {
		case got < p.sent:
			t.lost += p.sent - got
			problem("%s: %d events lost (sent %d, received %d)", b.name, p.sent-got, p.sent, got)
		case got > p.sent:
			problem("%s: received %d events, the server sent %d", b.name, got, p.sent)
		}
		if b.events.duplicated > 0 {
			problem("%s: %d events duplicated", b.name, b.events.duplicated)
		}
		if b.bad > 0 {
			problem("%s: %d bad messages from the server", b.name, b.bad)
		}
		if len(b.resumes) < len(r.migrations) {
			problem("%s: resumed %d times for %d migrations", b.name, len(b.resumes), len(r.migrations))
		}
		if b.err != nil {
			problem("%s: session ended: %v", b.name, b.err)
		}
	}
	if t.processed+t.failed != t.sent {
		problem("%d event tickets of %d did not end", t.sent-t.processed-t.failed, t.sent)
	}
	if t.failed > 0 {
		problem("%d event tickets failed", t.failed)
	}
	if t.inputsSent != t.inputsReceived {
		problem("inputs: %d sent, %d received", t.inputsSent, t.inputsReceived)
	}
	return t
}

// ok reports a game with nothing lost, nothing duplicated, every player resumed after every
// migration, and every event confirmed processed.
func (t tally) ok() bool { return len(t.problems) == 0 }

// writeDemoSummary prints the demo's summary and returns whether the game was ok.
func writeDemoSummary(w io.Writer, r report, bots []botReport) bool {
	t := compare(r, bots)
	fmt.Fprintf(w, "players %d, ticks %d, inputs sent %d, received %d, scores %d\n",
		t.players, t.ticks, t.inputsSent, t.inputsReceived, t.scores)
	fmt.Fprintf(w, "important events: sent %d, processed %d, lost %d, duplicated %d\n",
		t.sent, t.processed, t.lost, t.duplicated)
	for _, m := range r.migrations {
		fmt.Fprintln(w, m)
	}
	if len(r.migrations) > 0 {
		var sb strings.Builder
		for i, b := range bots {
			if i > 0 {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "%s %s", b.name, durations(b.resumes))
		}
		fmt.Fprintf(w, "resume times (ms): %s\n", sb.String())
	}
	for _, p := range t.problems {
		fmt.Fprintln(w, "problem:", p)
	}
	if t.ok() {
		fmt.Fprintln(w, "ok")
	} else {
		fmt.Fprintln(w, "FAILED")
	}
	return t.ok()
}

func (m migration) String() string {
	return fmt.Sprintf("migration: %s -> %s, pause %s ms, snapshot %.1f KiB", m.from, m.to, ms(m.pause), float64(m.size)/1024)
}

// writeServerSummary prints what the server knows of the game.
func writeServerSummary(w io.Writer, r report) {
	fmt.Fprintf(w, "game over at %s: ticks %d, players %d, migrations %d\n", r.addr, r.ticks, len(r.players), len(r.migrations))
	for _, p := range r.players {
		fmt.Fprintf(w, "player %s: events sent %d, processed %d, failed %d, inputs received %d, score %d\n",
			p.name, p.sent, p.processed, p.failed, p.inputs, p.score)
	}
}

// writePlayerSummary prints what one player knows of its game. Lost events show as missing
// only if a later one came; the server's count of events sent tells the rest.
func writePlayerSummary(w io.Writer, b botReport) {
	fmt.Fprintf(w, "player %s: events %d, missing %d, duplicated %d, inputs sent %d, resumes %d (ms: %s)\n",
		b.name, b.events.distinct(), b.events.missing(), b.events.duplicated, b.inputs, len(b.resumes), durations(b.resumes))
}

func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = ms(d)
	}
	return strings.Join(s, "/")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
