package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{"536870912\n": 536870912, "max\n": 0, "9223372036854771712\n": 0, "": 0, "-1": 0, "12ab": 0} {
		got, ok := parseMemoryLimit(in)
		if got != want || ok != (want > 0) {
			t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

func TestContainerMemoryLimitTakesTheFirstFiniteLimit(t *testing.T) {
	dir := t.TempDir()
	v2, v1 := filepath.Join(dir, "memory.max"), filepath.Join(dir, "memory.limit_in_bytes")
	if err := os.WriteFile(v2, []byte("max\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(v1, []byte("268435456\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	limit, file, ok := containerMemoryLimit([]string{filepath.Join(dir, "absent"), v2, v1})
	if !ok || limit != 268435456 || file != v1 {
		t.Fatalf("got %d from %q (%v), want 268435456 from %s", limit, file, ok, v1)
	}
	if _, _, ok := containerMemoryLimit([]string{v2}); ok {
		t.Fatal(`"max" read as a limit`)
	}
}
