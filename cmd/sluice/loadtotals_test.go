package main

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluice-dev/sluice/rollout/analysis"
	"github.com/sluice-dev/sluice/rollout/metrics"
	"github.com/sluice-dev/sluice/xds/lrs"
)

// TestLoadTotalsKeepOrigins checks that what the analysis reads keeps each
// reporter's class: legacy load arrives as legacy, and is not evidence.
func TestLoadTotalsKeepOrigins(t *testing.T) {
	agg := lrs.NewAggregator()
	canary := lrs.Key{Namespace: "shop", Service: "checkout", Track: "canary", Revision: "r2"}
	frontend := lrs.Origin{Class: lrs.ClassAuthenticated, Identity: "token:web/frontend"}
	old := lrs.Origin{Class: lrs.ClassLegacy, Identity: "legacy:shop"}
	lr, err := metrics.NewLoadReports(loadTotals(agg, "self-1"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := lr.Record(t0); err != nil {
		t.Fatal(err)
	}
	agg.Merge("replica-b", map[lrs.Key]lrs.ByOrigin{canary: {frontend: {Requests: 10, Errors: 1}, old: {Requests: 500}}})
	if err := lr.Record(t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	origins, err := lr.Origins(context.Background(), metrics.Query{Namespace: "shop", Service: "checkout", Track: "canary",
		Revision: "r2", Window: time.Second, Since: t0})
	if err != nil {
		t.Fatal(err)
	}
	want := []analysis.OriginSample{
		{Identity: "legacy:shop", Legacy: true, Requests: 500},
		{Identity: "token:web/frontend", Requests: 10, Errors: 1},
	}
	if diff := cmp.Diff(want, origins); diff != "" {
		t.Fatalf("origins (-want +got):\n%s", diff)
	}
	if ev := analysis.PromotionEvidence(origins).Evidence; ev.Requests != 10 || ev.Errors != 1 {
		t.Fatalf("evidence %+v, want only the authenticated caller's 10 requests", ev)
	}
}
