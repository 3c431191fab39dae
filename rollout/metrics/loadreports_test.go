package metrics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeTotals is a settable totals function; the test advances it together with the time passed to Record.
type fakeTotals struct{ m map[Key]Totals }

func (f *fakeTotals) get() map[Key]Totals { return f.m }

var (
	canaryKey = Key{Namespace: "shop", Service: "checkout", Track: "canary"}
	stableKey = Key{Namespace: "shop", Service: "checkout", Track: "stable"}
	t0        = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func query(track string, window time.Duration) Query {
	return Query{Namespace: "shop", Service: "checkout", Track: track, Window: window}
}

func TestLoadReportsWindows(t *testing.T) {
	// The canary's cumulative totals grow by 10 requests and 1 error a second; the stable's by 100 and 0.
	f := &fakeTotals{}
	lr, err := NewLoadReports(f.get, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for s := 0; s <= 30; s++ {
		f.m = map[Key]Totals{
			canaryKey: {Requests: uint64(10 * s), Errors: uint64(s)},
			stableKey: {Requests: uint64(100 * s)},
		}
		if err := lr.Record(t0.Add(time.Duration(s) * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	cases := map[string]struct {
		q    Query
		want Sample
	}{
		"canary 10s": {q: query("canary", 10*time.Second), want: Sample{Requests: 100, Errors: 10, Window: 10 * time.Second}},
		"stable 5s":  {q: query("stable", 5*time.Second), want: Sample{Requests: 500, Window: 5 * time.Second}},
		"window longer than history is cut to it": {
			q: query("canary", 10*time.Minute), want: Sample{Requests: 300, Errors: 30, Window: 30 * time.Second},
		},
		"window between snapshots takes the older base": {
			q: query("canary", 2500*time.Millisecond), want: Sample{Requests: 30, Errors: 3, Window: 3 * time.Second},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := lr.Sample(context.Background(), tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("sample (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadReportsResetAndRetention(t *testing.T) {
	f := &fakeTotals{}
	lr, err := NewLoadReports(f.get, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Totals per second: 0, 10, 20, then the producer restarts: 5, 15.
	for i, req := range []uint64{0, 10, 20, 5, 15} {
		f.m = map[Key]Totals{canaryKey: {Requests: req, Errors: req / 5}}
		if err := lr.Record(t0.Add(time.Duration(i) * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := lr.Sample(context.Background(), query("canary", 4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// 10 + 10 before the reset, 5 counted from zero after it, then 10.
	want := Sample{Requests: 35, Errors: 7, Window: 4 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sample across a reset (-want +got):\n%s", diff)
	}

	// Ten seconds later only the snapshots within the 5 s retention (plus one base) remain.
	for i := 5; i < 15; i++ {
		f.m = map[Key]Totals{canaryKey: {Requests: 15 + uint64(i-4)*10}}
		if err := lr.Record(t0.Add(time.Duration(i) * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	got, err = lr.Sample(context.Background(), query("canary", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got.Window != 5*time.Second || got.Requests != 50 {
		t.Errorf("after retention: got %+v, want 50 requests over 5s", got)
	}
}

func TestLoadReportsNoDataAndErrors(t *testing.T) {
	f := &fakeTotals{m: map[Key]Totals{stableKey: {Requests: 1}}}
	lr, err := NewLoadReports(f.get, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := lr.Sample(ctx, query("stable", 10*time.Second)); !errors.Is(err, ErrNoData) {
		t.Errorf("before two snapshots: got %v, want ErrNoData", err)
	}
	for i := range 2 {
		if err := lr.Record(t0.Add(time.Duration(i) * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := lr.Sample(ctx, query("canary", 10*time.Second)); !errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), "shop/checkout track canary") {
		t.Errorf("unknown track: got %v, want ErrNoData naming the track", err)
	}
	if got := Observe(ctx, lr, query("canary", 10*time.Second)); got.Present || got.SourceFailed || got.Problem == "" {
		t.Errorf("Observe of an unknown track = %+v, want absent, not failed, with a problem", got)
	}
	if err := lr.Record(t0); err == nil {
		t.Error("Record with a time before the newest snapshot: got nil error")
	}
	if _, err := lr.Sample(ctx, Query{Namespace: "shop", Service: `x"}`, Track: "canary", Window: time.Second}); err == nil || !strings.Contains(err.Error(), "service") {
		t.Errorf("bad service name: got %v, want an error naming the field", err)
	}
	if _, err := lr.Sample(ctx, query("stable", 0)); err == nil || !strings.Contains(err.Error(), "window") {
		t.Errorf("zero window: got %v, want an error naming the window", err)
	}
	if _, err := NewLoadReports(nil, time.Minute); err == nil {
		t.Error("nil totals: got nil error")
	}
	if _, err := NewLoadReports(f.get, 0); err == nil {
		t.Error("zero retention: got nil error")
	}
}

func TestLoadReportsInconsistentTotals(t *testing.T) {
	f := &fakeTotals{m: map[Key]Totals{canaryKey: {Requests: 10, Errors: 0}}}
	lr, err := NewLoadReports(f.get, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := lr.Record(t0); err != nil {
		t.Fatal(err)
	}
	f.m = map[Key]Totals{canaryKey: {Requests: 11, Errors: 5}}
	if err := lr.Record(t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := lr.Sample(context.Background(), query("canary", time.Second)); err == nil || !strings.Contains(err.Error(), "exceed") {
		t.Errorf("5 errors in 1 request: got %v, want an inconsistency error", err)
	}
}

// TestLoadReportsRevisionsNeverMix replays the fix-forward story: revision r2
// fails half its requests and is rolled back; r3 starts at 20 s while clients
// are still reporting r2's late requests. r3's sample since its start holds only
// r3's requests, however late r2's arrive and however long r3 runs (the
// history is one minute; r3 is judged for two).
func TestLoadReportsRevisionsNeverMix(t *testing.T) {
	r2 := Key{Namespace: "shop", Service: "checkout", Track: "canary", Revision: "r2"}
	r3 := Key{Namespace: "shop", Service: "checkout", Track: "canary", Revision: "r3"}
	f := &fakeTotals{}
	lr, err := NewLoadReports(f.get, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	start := t0.Add(20 * time.Second)
	q := Query{Namespace: "shop", Service: "checkout", Track: "canary", Revision: "r3", Window: time.Second, Since: start}
	for s := 0; s <= 150; s++ {
		now := t0.Add(time.Duration(s) * time.Second)
		m := map[Key]Totals{}
		// r2 serves until 20 s; its last reports arrive until 25 s.
		n2 := uint64(min(s, 25))
		m[r2] = Totals{Requests: 10 * n2, Errors: 5 * n2}
		if s > 20 {
			n3 := uint64(s - 20)
			m[r3] = Totals{Requests: 10 * n3}
		}
		f.m = m
		if err := lr.Record(now); err != nil {
			t.Fatal(err)
		}
		if s <= 21 {
			continue
		}
		got, err := lr.Sample(context.Background(), q)
		if err != nil {
			t.Fatalf("at %ds: %v", s, err)
		}
		want := Sample{Requests: uint64(10 * (s - 20)), Window: now.Sub(start)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("at %ds: r3 since its start (-want +got):\n%s", s, diff)
		}
	}
	// Without a revision the track's window sums every revision.
	got, err := lr.Sample(context.Background(), Query{Namespace: "shop", Service: "checkout", Track: "canary", Window: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got.Requests != 100 || got.Errors != 0 {
		t.Fatalf("canary track over 10s = %+v, want 100 requests, 0 errors", got)
	}
}

// TestLoadReportsSinceBeforeHistory covers a replica that started after the
// canary did (a new leader): a revision with no counts in its oldest snapshot
// is counted whole; one that had counts is counted from the oldest snapshot
// and the sample says its span is shorter.
func TestLoadReportsSinceBeforeHistory(t *testing.T) {
	fresh := Key{Namespace: "shop", Service: "checkout", Track: "canary", Revision: "r5"}
	old := Key{Namespace: "shop", Service: "checkout", Track: "stable", Revision: "r1"}
	f := &fakeTotals{m: map[Key]Totals{old: {Requests: 1000}}}
	lr, err := NewLoadReports(f.get, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := lr.Record(t0); err != nil {
		t.Fatal(err)
	}
	f.m = map[Key]Totals{old: {Requests: 1100}, fresh: {Requests: 40, Errors: 1}}
	if err := lr.Record(t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	since := t0.Add(-time.Hour)
	got, err := lr.Sample(context.Background(), Query{Namespace: "shop", Service: "checkout", Track: "canary", Revision: "r5", Window: time.Hour, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Sample{Requests: 40, Errors: 1, Window: time.Hour + time.Second}); got != want {
		t.Fatalf("fresh revision = %+v, want %+v", got, want)
	}
	got, err = lr.Sample(context.Background(), Query{Namespace: "shop", Service: "checkout", Track: "stable", Window: time.Hour, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Sample{Requests: 100, Window: time.Second}); got != want {
		t.Fatalf("revision older than the history = %+v, want %+v", got, want)
	}
}
