package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// What travels on the room's subjects. Both payloads are text, so a member can be written in
// any language with a pubsub client, and both carry the sender's instance: a random ID per
// process, which tells two users who picked the same name apart.
//
//	chat.<room>           "<instance> <seq> <text>"   seq counts from 1 per instance
//	chat.<room>.presence  "join <instance>" | "here <instance>" | "leave <instance>"

// instanceLen is the length of an instance ID: 16 hex digits (64 random bits).
const instanceLen = 16

// maxName bounds names and rooms: short enough to read, and well inside the hub's subject limit.
const maxName = 32

// maxText bounds a line of chat, in bytes. A longer line is refused (not cut: a cut line would
// read as something its author did not write).
const maxText = 16 << 10

var errBadPayload = errors.New("chat: malformed message")

// chatLine is one line of chat as a member got it.
type chatLine struct {
	From     string // the publisher's identity, as the hub vouches for it
	Instance string
	Seq      uint64
	Text     string
}

func encodeChat(instance string, seq uint64, text string) []byte {
	b := make([]byte, 0, instanceLen+len(text)+22)
	b = append(b, instance...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ' ')
	return append(b, text...)
}

func decodeChat(data []byte) (instance string, seq uint64, text string, err error) {
	s := string(data)
	instance, rest, ok := strings.Cut(s, " ")
	if !ok || !validInstance(instance) {
		return "", 0, "", errBadPayload
	}
	num, text, ok := strings.Cut(rest, " ")
	if !ok {
		return "", 0, "", errBadPayload
	}
	seq, err = strconv.ParseUint(num, 10, 64)
	if err != nil || seq == 0 {
		return "", 0, "", errBadPayload
	}
	return instance, seq, text, nil
}

// Presence kinds.
const (
	presenceJoin  = "join"  // I arrived: who is here?
	presenceHere  = "here"  // the answer to a join
	presenceLeave = "leave" // I am leaving
)

func encodePresence(kind, instance string) []byte { return []byte(kind + " " + instance) }

func decodePresence(data []byte) (kind, instance string, err error) {
	kind, instance, ok := strings.Cut(string(data), " ")
	if !ok || !validInstance(instance) {
		return "", "", errBadPayload
	}
	switch kind {
	case presenceJoin, presenceHere, presenceLeave:
		return kind, instance, nil
	}
	return "", "", errBadPayload
}

func validInstance(s string) bool {
	if len(s) != instanceLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// checkName says what is wrong with a user or room name, if anything. what is the flag's name.
// A room becomes one subject token (chat.<room>): no dots, spaces or wildcards.
func checkName(what, s string) error {
	if s == "" || len(s) > maxName {
		return fmt.Errorf("-%s %q: want 1 to %d characters", what, s, maxName)
	}
	for _, r := range s {
		if !isNameRune(r) {
			return fmt.Errorf("-%s %q: %q is not allowed; use letters, digits, '-' and '_'", what, s, r)
		}
	}
	return nil
}

func isNameRune(r rune) bool {
	return r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
}

// printable makes text from another member safe to print: another member's bytes must not move
// the cursor, change colours, or reorder the line (bidirectional overrides). Control and
// bidirectional-override characters become U+FFFD, invalid UTF-8 too; a tab becomes a space.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '\t':
			b.WriteByte(' ')
		case unsafeRune(r):
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	switch {
	case unicode.IsControl(r):
		return true
	case r == '\u061c', r == '\u200e', r == '\u200f', r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069':
		return true // bidirectional marks and overrides (a zero-width joiner is fine: emoji use it)
	case r == '\u2028', r == '\u2029':
		return true // line and paragraph separators
	}
	return false
}
