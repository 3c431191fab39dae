package metrics

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCountersPerSource checks that Counters splits a track's counts by source, each with its reading when the
// span began and now, summed over the source's origins, and that the sum of the spans is what Sample gives.
func TestCountersPerSource(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	key := func(source, origin string) Key {
		return Key{Namespace: "shop", Service: "checkout", Track: "canary", Revision: "r2", Origin: origin, Source: source}
	}
	totals := map[Key]Totals{key("a-1", "token:web/frontend"): {Requests: 50, Errors: 1}}
	lr, err := NewLoadReports(func() map[Key]Totals { return totals }, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := lr.Record(t0); err != nil {
		t.Fatal(err)
	}
	totals = map[Key]Totals{
		key("a-1", "token:web/frontend"): {Requests: 80, Errors: 2},
		key("a-1", "token:web/admin"):    {Requests: 10},
		key("b-1", "token:web/frontend"): {Requests: 30, Errors: 3},
	}
	if err := lr.Record(t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	q := Query{Namespace: "shop", Service: "checkout", Track: "canary", Revision: "r2", Window: time.Second, Since: t0}
	got, err := lr.Counters(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Counter{
		"a-1": {Base: Totals{Requests: 50, Errors: 1}, Now: Totals{Requests: 90, Errors: 2}},
		"b-1": {Now: Totals{Requests: 30, Errors: 3}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("counters (-want +got):\n%s", diff)
	}
	s, err := lr.Sample(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if s.Requests != 40+30 || s.Errors != 1+3 {
		t.Errorf("sample %+v, want the counters' spans summed: 70 requests, 4 errors", s)
	}
	if _, err := lr.Counters(context.Background(), Query{Namespace: "shop", Service: "checkout", Track: "stable",
		Window: time.Second, Since: t0}); !errors.Is(err, ErrNoData) {
		t.Errorf("counters of a track without reports: %v, want ErrNoData", err)
	}
	q.Since = time.Time{}
	if _, err := lr.Counters(context.Background(), q); err == nil {
		t.Errorf("counters without the span's start: no error")
	}
}
