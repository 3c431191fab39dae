package testkit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the goroutine, as testing's does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls f with a recorder in a goroutine of its own and returns what
// it failed with ("" if it returned).
func run(t *testing.T, f func(tb testing.TB)) string {
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.msg
}

func TestPollAndEventually(t *testing.T) {
	for name, poll := range map[string]func(testing.TB, time.Duration, string, func(context.Context) error){
		"Poll": Poll, "Eventually": Eventually,
	} {
		t.Run(name+" returns once the condition holds", func(t *testing.T) {
			looks := 0
			msg := run(t, func(tb testing.TB) {
				poll(tb, time.Minute, "third look", func(context.Context) error {
					if looks++; looks < 3 {
						return errors.New("not yet")
					}
					return nil
				})
			})
			if msg != "" || looks != 3 {
				t.Errorf("failed with %q after %d looks, want success at the third", msg, looks)
			}
		})
		t.Run(name+" fails with the last error", func(t *testing.T) {
			looks := 0
			msg := run(t, func(tb testing.TB) {
				poll(tb, 300*time.Millisecond, "never", func(context.Context) error {
					looks++
					return fmt.Errorf("look %d", looks)
				})
			})
			if want := fmt.Sprintf("never: not within 300ms: look %d", looks); msg != want || looks < 2 {
				t.Errorf("failed with %q after %d looks, want %q", msg, looks, want)
			}
		})
	}
}

// TestLookDeadlines checks that Eventually's looks share the timeout's
// deadline and that each of Poll's looks has a deadline of its own.
func TestLookDeadlines(t *testing.T) {
	for name, c := range map[string]struct {
		poll   func(testing.TB, time.Duration, string, func(context.Context) error)
		shared bool
	}{"Poll": {Poll, false}, "Eventually": {Eventually, true}} {
		var deadlines []time.Time
		run(t, func(tb testing.TB) {
			c.poll(tb, 300*time.Millisecond, "never", func(ctx context.Context) error {
				dl, ok := ctx.Deadline()
				if !ok {
					t.Errorf("%s: a look without a deadline", name)
				}
				deadlines = append(deadlines, dl)
				return errors.New("not yet")
			})
		})
		if len(deadlines) < 2 {
			t.Fatalf("%s: %d looks", name, len(deadlines))
		}
		if shared := deadlines[0].Equal(deadlines[len(deadlines)-1]); shared != c.shared {
			t.Errorf("%s: first and last looks' deadlines %v and %v, want shared=%v", name, deadlines[0], deadlines[len(deadlines)-1], c.shared)
		}
	}
}
