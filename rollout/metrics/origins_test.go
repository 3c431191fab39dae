package metrics

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-dev/sluice/rollout/analysis"
)

// TestLoadReportsOrigins checks that a sample split by origin adds up to the sample, counts each origin since
// the canary began, and keeps legacy load apart from an authenticated identity's.
func TestLoadReportsOrigins(t *testing.T) {
	frontend := canaryKey
	frontend.Revision, frontend.Origin = "r2", "token:web/frontend"
	old := frontend
	old.Origin, old.Legacy = "legacy:shop", true
	f := &fakeTotals{}
	lr, err := NewLoadReports(f.get, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for s := 0; s <= 10; s++ {
		f.m = map[Key]Totals{
			frontend:  {Requests: uint64(10 * s), Errors: uint64(s)},
			old:       {Requests: uint64(100 * s), Errors: uint64(50 * s)},
			stableKey: {Requests: uint64(1000 * s)},
		}
		if err := lr.Record(t0.Add(time.Duration(s) * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	q := query("canary", time.Second)
	q.Revision, q.Since = "r2", t0.Add(4*time.Second)
	got, err := lr.Origins(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	want := []analysis.OriginSample{
		{Identity: "legacy:shop", Legacy: true, Requests: 600, Errors: 300},
		{Identity: "token:web/frontend", Requests: 60, Errors: 6},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("origins since the canary began (-want +got):\n%s", diff)
	}
	all, err := lr.Sample(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if all.Requests != 660 || all.Errors != 306 {
		t.Fatalf("sample = %+v, want the origins' sum 660 requests, 306 errors", all)
	}
	q.Revision = "r9"
	if _, err := lr.Origins(context.Background(), q); !errors.Is(err, ErrNoData) {
		t.Fatalf("origins of a revision never reported: error = %v, want ErrNoData", err)
	}
}
