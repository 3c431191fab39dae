package cachedir

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestDirHonoursEnvironment(t *testing.T) {
	t.Setenv("SLUICE_CACHE_DIR", "/somewhere/else")
	if d, err := Dir(); err != nil || d != "/somewhere/else" {
		t.Fatalf("Dir() = %q, %v; want /somewhere/else", d, err)
	}
}

// A second holder waits (and is told so) until the first releases the lock,
// and gives up when its context ends.
func TestLockExcludes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "build.lock")
	ctx := context.Background()
	unlock, err := Lock(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	waited := 0
	if _, err := Lock(short, path, func() { waited++ }); err == nil {
		t.Fatal("second Lock succeeded while the first was held")
	}
	if waited != 1 {
		t.Errorf("onWait called %d times, want 1", waited)
	}
	unlock()
	again, err := Lock(ctx, path, nil)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	again()
}
