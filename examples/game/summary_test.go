package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestEventRecord(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		seqs                       []uint64
		distinct, dup, missing, up uint64
	}{
		{"in order", []uint64{1, 2, 3, 4, 5}, 5, 0, 0, 5},
		{"a repeat", []uint64{1, 2, 3, 2}, 3, 1, 0, 3},
		{"out of order", []uint64{1, 3, 4, 2}, 4, 0, 0, 4},
		{"a gap", []uint64{1, 2, 5}, 3, 0, 2, 2},
		{"a repeat beyond a gap", []uint64{1, 5, 5}, 2, 1, 3, 1},
		{"nothing", nil, 0, 0, 0, 0},
	} {
		var r eventRecord
		for _, s := range tc.seqs {
			r.add(s)
		}
		if r.distinct() != tc.distinct || r.duplicated != tc.dup || r.missing() != tc.missing || r.upTo != tc.up ||
			r.received != uint64(len(tc.seqs)) {
			t.Errorf("%s: distinct %d, duplicated %d, missing %d, up to %d, received %d; want %d, %d, %d, %d, %d",
				tc.name, r.distinct(), r.duplicated, r.missing(), r.upTo, r.received, tc.distinct, tc.dup, tc.missing, tc.up, len(tc.seqs))
		}
	}
}

// TestEventRecordBounded: seqs out of order beyond the bound are counted, not kept.
func TestEventRecordBounded(t *testing.T) {
	var r eventRecord
	for s := uint64(2); s < maxAbove+12; s++ {
		r.add(s)
	}
	if len(r.above) != maxAbove || r.untracked != 10 || r.distinct() != maxAbove+10 {
		t.Fatalf("%d kept, %d untracked, %d distinct", len(r.above), r.untracked, r.distinct())
	}
}

func gameReports(migrations int) (report, []botReport) {
	r := report{ticks: 90}
	for range migrations {
		r.migrations = append(r.migrations, migration{from: "127.0.0.1:1", to: "127.0.0.1:2", pause: 3 * time.Millisecond, size: 2048})
	}
	var bots []botReport
	for i, name := range []string{"p1", "p2"} {
		id := uint64(i + 1)
		r.players = append(r.players, player{id: id, name: name, sent: 3, processed: 3, inputs: 100, score: uint32(i)})
		b := botReport{name: name, id: id, inputs: 100}
		for s := uint64(1); s <= 3; s++ {
			b.events.add(s)
		}
		for range migrations {
			b.resumes = append(b.resumes, 2*time.Millisecond)
		}
		bots = append(bots, b)
	}
	return r, bots
}

// TestSummary: the summary passes a clean game and fails each kind of trouble, naming it.
func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		name    string
		break_  func(r *report, bots []botReport)
		problem string // "" for a clean game
		lost    uint64
	}{
		{"clean", func(*report, []botReport) {}, "", 0},
		{"lost", func(r *report, _ []botReport) { r.players[0].sent, r.players[0].processed = 4, 4 }, "p1: 1 events lost", 1},
		{"duplicated", func(_ *report, b []botReport) { b[1].events.add(2) }, "p2: 1 events duplicated", 0},
		{"not resumed", func(_ *report, b []botReport) { b[0].resumes = nil }, "p1: resumed 0 times for 1 migrations", 0},
		{"ticket not ended", func(r *report, _ []botReport) { r.players[1].processed = 2 }, "1 event tickets of 6 did not end", 0},
		{"ticket failed", func(r *report, _ []botReport) { r.players[1].processed, r.players[1].failed = 2, 1 }, "1 event tickets failed", 0},
		{"input lost", func(r *report, _ []botReport) { r.players[1].inputs = 99 }, "inputs: 200 sent, 199 received", 0},
		{"unknown session", func(_ *report, b []botReport) { b[0].id = 9 }, "p1: the server does not know session 9", 0},
		{"more than sent", func(_ *report, b []botReport) { b[0].events.add(4) }, "p1: received 4 events, the server sent 3", 0},
	} {
		r, bots := gameReports(1)
		tc.break_(&r, bots)
		var out bytes.Buffer
		ok := writeDemoSummary(&out, r, bots)
		s := out.String()
		if ok != (tc.problem == "") || !strings.HasSuffix(s, map[bool]string{true: "ok\n", false: "FAILED\n"}[ok]) {
			t.Errorf("%s: ok %v:\n%s", tc.name, ok, s)
		}
		if tc.problem != "" && !strings.Contains(s, "problem: "+tc.problem) {
			t.Errorf("%s: no problem %q in:\n%s", tc.name, tc.problem, s)
		}
		if tally := compare(r, bots); tally.lost != tc.lost {
			t.Errorf("%s: lost %d, want %d", tc.name, tally.lost, tc.lost)
		}
	}
}

// TestSummaryFormat pins the demo summary's lines that users' scripts read.
func TestSummaryFormat(t *testing.T) {
	r, bots := gameReports(1)
	var out bytes.Buffer
	writeDemoSummary(&out, r, bots)
	want := `players 2, ticks 90, inputs sent 200, received 200, scores 1
important events: sent 6, processed 6, lost 0, duplicated 0
migration: 127.0.0.1:1 -> 127.0.0.1:2, pause 3.0 ms, snapshot 2.0 KiB
resume times (ms): p1 2.0, p2 2.0
ok
`
	if out.String() != want {
		t.Errorf("summary:\n%s\nwant:\n%s", out.String(), want)
	}
}
