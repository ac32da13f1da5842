//go:build unix

package main

import (
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"

	"github.com/ftsl-go/ftsl/internal/testkit"
	"github.com/ftsl-go/ftsl/naming"
)

// TestServeAndPlay runs the server and two players in their own processes, moves the server
// with SIGUSR1, saves it with SIGUSR2 and takes it up with -restore in another process, then
// ends the game, and checks that each player got exactly the events the server sent it and the
// server every input the player sent.
func TestServeAndPlay(t *testing.T) {
	ns, err := naming.NewServer(naming.ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(ns)
	defer hs.Close()
	defer ns.Close()
	snap := filepath.Join(t.TempDir(), "game.snap")

	srv := startChild(t, "-serve", "-naming", hs.URL, "-snapshot", snap)
	srv.Line(t, regexp.MustCompile(`^serving "game" at 127\.0\.0\.1:\d+$`))
	players := map[string]*testkit.Proc{}
	for _, name := range []string{"alice", "bob"} {
		p := startChild(t, "-play", "-naming", hs.URL, "-name", name)
		p.Line(t, regexp.MustCompile(`^joined "game" as `+name))
		srv.Line(t, regexp.MustCompile(`^`+name+` joined`))
		players[name] = p
	}
	// Play until every player has seen an event, so some are in flight around the moves.
	for _, p := range players {
		p.Line(t, regexp.MustCompile(`^event \d+: `))
	}

	srv.Signal(t, syscall.SIGUSR1)
	srv.Line(t, regexp.MustCompile(`^migration: 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+`))
	resumed := map[string]int{}
	for name, p := range players {
		resumed[name], _ = p.LineFrom(t, 0, regexp.MustCompile(`^resumed in `), nil)
	}

	srv.Signal(t, syscall.SIGUSR2)
	srv.Line(t, regexp.MustCompile(`^saved the game to `))
	if code := srv.Wait(t); code != 0 {
		t.Fatalf("the server saving the game exited %d", code)
	}
	srv2 := startChild(t, "-serve", "-naming", hs.URL, "-restore", snap)
	srv2.Line(t, regexp.MustCompile(`^serving "game" at `))
	for name, p := range players {
		i, _ := p.LineFrom(t, resumed[name]+1, regexp.MustCompile(`^resumed in `), nil)
		p.LineFrom(t, i, regexp.MustCompile(`^event \d+: `), nil) // the game goes on
	}

	srv2.Signal(t, syscall.SIGINT)
	if code := srv2.Wait(t); code != 0 {
		t.Fatalf("the restored server exited %d", code)
	}
	for name, p := range players {
		if code := p.Wait(t); code != 0 {
			t.Fatalf("%s exited %d", name, code)
		}
		got := p.Line(t, regexp.MustCompile(`^player `+name+`: events (\d+), missing (\d+), duplicated (\d+), inputs sent (\d+), resumes (\d+)`))
		sent := srv2.Line(t, regexp.MustCompile(`^player `+name+`: events sent (\d+), processed (\d+), failed (\d+), inputs received (\d+)`))
		if got[1] != sent[1] || sent[1] != sent[2] || got[2] != "0" || got[3] != "0" || sent[3] != "0" {
			t.Errorf("%s: the server sent %s events (%s processed, %s failed); the player got %s, %s missing, %s duplicated",
				name, sent[1], sent[2], sent[3], got[1], got[2], got[3])
		}
		if got[4] != sent[4] {
			t.Errorf("%s: sent %s inputs, the server received %s", name, got[4], sent[4])
		}
		if n, _ := strconv.Atoi(got[5]); n != 2 {
			t.Errorf("%s: resumed %d times, want 2 (a move, a restore)", name, n)
		}
	}
}
