package testkit

import (
	"context"
	"testing"
	"time"
)

// Interval is how long a poll waits between two looks.
const Interval = 100 * time.Millisecond

// lookTimeout bounds one look of Poll.
const lookTimeout = 10 * time.Second

// Poll calls cond until it returns nil or the timeout passes, then fails t
// with what and cond's last error. Each look gets a context of its own (10
// s), so the error reported is the condition's, not the expiry of the
// overall timeout; a look may thus end after the timeout.
func Poll(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), lookTimeout)
		err := cond(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		case <-tick.C:
		}
	}
}

// Eventually is Poll where every look shares one context that ends with the
// timeout: no look outlasts it.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for {
		err := cond(ctx)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		case <-tick.C:
		}
	}
}
