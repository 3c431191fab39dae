package metrics

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/rollout/analysis"
)

// The load-report source feeds the analysis the way the rollout controller wires them: a recent window and a
// cumulative one per track, observed and evaluated once a second.
func TestLoadReportsFeedAnalysis(t *testing.T) {
	f := &fakeTotals{}
	lr, err := NewLoadReports(f.get, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := analysis.Defaults()
	var state analysis.State
	stepStart := t0
	for s := 0; s <= 10; s++ {
		// From the start the canary fails every request: 10 req/s, all errors; stable 90 req/s, none.
		f.m = map[Key]Totals{
			canaryKey: {Requests: uint64(10 * s), Errors: uint64(10 * s)},
			stableKey: {Requests: uint64(90 * s)},
		}
		now := t0.Add(time.Duration(s) * time.Second)
		if err := lr.Record(now); err != nil {
			t.Fatal(err)
		}
		observe := func(track string, window time.Duration) analysis.TrackSample {
			return Observe(ctx, lr, query(track, window))
		}
		in := analysis.Input{
			Recent:     analysis.Tracks{Stable: observe("stable", 10*time.Second), Canary: observe("canary", 10*time.Second)},
			Cumulative: analysis.Tracks{Stable: observe("stable", now.Sub(stepStart)+time.Second), Canary: observe("canary", now.Sub(stepStart)+time.Second)},
		}
		out, next, err := analysis.Evaluate(state, in, cfg, now)
		if err != nil {
			t.Fatal(err)
		}
		state = next
		if s == 0 {
			if out.Action != analysis.Hold || !strings.Contains(out.Reason, "fewer than two snapshots") {
				t.Errorf("first second: %s (%s), want Hold for lack of data", out.Action, out.Reason)
			}
			continue
		}
		if out.Action == analysis.Rollback {
			if s > 2 {
				t.Errorf("rolled back after %ds, want within 2s of all-error traffic", s)
			}
			return
		}
	}
	t.Fatal("a canary failing every request was never rolled back")
}

func TestLoadReportsRun(t *testing.T) {
	var mu sync.Mutex
	n := uint64(0)
	lr, err := NewLoadReports(func() map[Key]Totals {
		mu.Lock()
		defer mu.Unlock()
		n += 10
		return map[Key]Totals{canaryKey: {Requests: n}}
	}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lr.Run(ctx, 5*time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		s, err := lr.Sample(ctx, query("canary", time.Minute))
		if err == nil && s.Requests >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run recorded nothing usable within 10s: %+v, %v", s, err)
		}
		<-tick.C
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	if err := lr.Run(context.Background(), 0); err == nil {
		t.Error("Run with interval 0: got nil error")
	}
}

// FuzzQueryValidate checks that a Query that validates cannot break out of a PromQL label matcher.
func FuzzQueryValidate(f *testing.F) {
	f.Add("shop", "checkout", "canary")
	f.Add("shop", `x"}or vector(1)`, "canary")
	f.Add("", "a", "b")
	f.Fuzz(func(t *testing.T, ns, svc, track string) {
		q := Query{Namespace: ns, Service: svc, Track: track, Window: 10 * time.Second}
		if q.Validate() != nil {
			return
		}
		for _, v := range []string{ns, svc, track} {
			if strings.ContainsAny(v, "\"\\{}()[]\n ,=~!") {
				t.Fatalf("validated value %q could escape a label matcher", v)
			}
		}
	})
}
