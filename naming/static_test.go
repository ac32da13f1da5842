package naming

import (
	"context"
	"errors"
	"testing"
)

func TestStaticResolver(t *testing.T) {
	bg := context.Background()
	if _, err := NewStaticResolver(map[string]string{"a": "nowhere"}); !errors.Is(err, ErrInvalidAddr) {
		t.Errorf("NewStaticResolver with a bad address: %v", err)
	}
	src := map[string]string{"a": "127.0.0.1:1"}
	s, err := NewStaticResolver(src)
	if err != nil {
		t.Fatal(err)
	}
	src["a"] = "127.0.0.1:9" // the resolver holds a copy
	if addr, err := s.Resolve(bg, "a"); err != nil || addr != "127.0.0.1:1" {
		t.Fatalf("Resolve: %q %v", addr, err)
	}
	ch := s.Changed("a")
	if isClosed(ch) {
		t.Fatal("Changed closed before any change")
	}
	if err := s.Set("a", "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	if isClosed(ch) {
		t.Error("Set to the same address closed Changed")
	}
	if err := s.Set("a", "bad"); !errors.Is(err, ErrInvalidAddr) {
		t.Errorf("Set of a bad address: %v", err)
	}
	if err := s.Set("a", "127.0.0.1:2"); err != nil {
		t.Fatal(err)
	}
	if !isClosed(ch) {
		t.Fatal("Set to a new address did not close Changed")
	}
	if !isClosed(s.Changed("a")) {
		t.Error("Changed before Resolve saw the move: not closed")
	}
	if addr, err := s.Resolve(bg, "a"); err != nil || addr != "127.0.0.1:2" {
		t.Fatalf("Resolve after Set: %q %v", addr, err)
	}
	ch = s.Changed("a")
	if isClosed(ch) {
		t.Error("Changed after Resolve: closed")
	}
	s.Delete("a")
	if !isClosed(ch) {
		t.Error("Delete did not close Changed")
	}
	if _, err := s.Resolve(bg, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve after Delete: %v", err)
	}

	// A name asked about before it is set: Set wakes the waiter.
	if _, err := s.Resolve(bg, "b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve of a name never set: %v", err)
	}
	ch = s.Changed("b")
	if isClosed(ch) {
		t.Error("Changed of a name never set: closed")
	}
	s.Delete("b") // nothing to delete: no change
	if isClosed(ch) {
		t.Error("Delete of a name never set closed Changed")
	}
	if err := s.Set("b", "[::1]:3"); err != nil {
		t.Fatal(err)
	}
	if !isClosed(ch) {
		t.Error("Set of a name waited for did not close Changed")
	}
}
