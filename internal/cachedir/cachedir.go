// Package cachedir locates Sluice's cache of tools built from source (the
// local cluster's binaries, helm) and serialises concurrent builds into it
// between processes.
package cachedir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Dir is $SLUICE_CACHE_DIR if set, else <user cache dir>/sluice.
func Dir() (string, error) {
	if d := os.Getenv("SLUICE_CACHE_DIR"); d != "" {
		return d, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the user cache directory (set SLUICE_CACHE_DIR): %w", err)
	}
	return filepath.Join(base, "sluice"), nil
}

// Lock takes an exclusive lock on the file at path (created if missing),
// polling until it is free or ctx ends; onWait, when not nil, is called once
// if another process holds it. The returned func releases the lock; so does
// the death of the process.
func Lock(ctx context.Context, path string, onWait func()) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	waited := false
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing the file releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !waited && onWait != nil {
			onWait()
		}
		waited = true
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}
