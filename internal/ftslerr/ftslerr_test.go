package ftslerr

import (
	"context"
	"errors"
	"testing"
)

func TestErrorf(t *testing.T) {
	errInvalid := errors.New("ftsl: invalid state")
	inner := Errorf("ftsl: core state: %w: nil", errInvalid)
	outer := Errorf("ftsl: snapshot: section %q: %w", "core", inner)
	if got, want := outer.Error(), `ftsl: snapshot: section "core": core state: invalid state: nil`; got != want {
		t.Errorf("text %q, want %q", got, want)
	}
	if !errors.Is(outer, errInvalid) {
		t.Error("the wrapped sentinel is not found through two wraps")
	}
	both := Errorf("ftsl: pause: %w (%w)", errInvalid, context.Canceled)
	if !errors.Is(both, errInvalid) || !errors.Is(both, context.Canceled) {
		t.Errorf("%v does not match both errors it wraps", both)
	}
	if got, want := both.Error(), "ftsl: pause: invalid state (context canceled)"; got != want {
		t.Errorf("text %q, want %q", got, want)
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "",
		"ftsl: a":                         "ftsl: a",
		"ftsl: a: ftsl: b: ftsl: c":       "ftsl: a: b: c",
		"dial: ftsl: busy":                "dial: busy",
		"ftsl: reason mentions ftsl: too": "ftsl: reason mentions ftsl: too",
	} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
}
