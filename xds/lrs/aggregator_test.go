package lrs

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

var (
	stable = Key{Namespace: "shop", Service: "checkout", Track: "stable"}
	canary = Key{Namespace: "shop", Service: "checkout", Track: "canary"}
)

func TestAggregatorInFlightPerStream(t *testing.T) {
	a := NewAggregator()
	a.add(1, anyone, stable, Totals{Requests: 10, Errors: 1, Issued: 11, InFlight: 3})
	a.add(2, anyone, stable, Totals{Requests: 5, Issued: 5, InFlight: 2})
	a.add(1, anyone, stable, Totals{Requests: 1, Issued: 1, InFlight: 1})
	want := map[Key]Totals{stable: {Requests: 16, Errors: 1, Issued: 17, InFlight: 3}}
	if diff := cmp.Diff(want, a.Totals()); diff != "" {
		t.Fatalf("totals (-want +got):\n%s", diff)
	}
	a.resetInFlight(2)
	a.dropStream(1)
	want[stable] = Totals{Requests: 16, Errors: 1, Issued: 17}
	if diff := cmp.Diff(want, a.Totals()); diff != "" {
		t.Fatalf("after streams went quiet (-want +got):\n%s", diff)
	}
}

func TestAggregatorSince(t *testing.T) {
	a := NewAggregator()
	a.add(1, anyone, stable, Totals{Requests: 100, Errors: 1})
	m := a.Mark()
	a.add(1, anyone, canary, Totals{Requests: 10, Errors: 5, InFlight: 2})
	a.add(1, anyone, stable, Totals{Requests: 50})
	got := a.Since(m)
	want := map[Key]Totals{
		stable: {Requests: 50},
		canary: {Requests: 10, Errors: 5, InFlight: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("since mark (-want +got):\n%s", diff)
	}
	if r := got[canary].ErrorRate(); r != 0.5 {
		t.Fatalf("canary error rate over the window = %v, want 0.5", r)
	}
}

func TestTotalsSubNeverNegative(t *testing.T) {
	got := Totals{Requests: 3, Errors: 1}.Sub(Totals{Requests: 10, Errors: 4})
	if want := (Totals{Requests: 3, Errors: 1}); got != want {
		t.Fatalf("Sub after a restart = %+v, want %+v", got, want)
	}
}

// TestMergeIdempotentAndOrderFree checks that merging any sequence of
// cumulative snapshots of a source, in any order and with repeats, yields the
// same counters as merging the newest one once.
func TestMergeIdempotentAndOrderFree(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 8).Draw(t, "snapshots")
		snaps := make([]map[Key]Totals, n)
		cur := Totals{}
		for i := range snaps {
			inc := rapid.Uint64Range(0, 1000).Draw(t, "requests")
			errs := rapid.Uint64Range(0, inc).Draw(t, "errors")
			cur = Totals{Requests: cur.Requests + inc, Errors: cur.Errors + errs, Issued: cur.Issued + inc}
			snaps[i] = map[Key]Totals{canary: cur}
		}
		order := rapid.SliceOfN(rapid.IntRange(0, n-1), 1, 20).Draw(t, "order")
		a := NewAggregator()
		a.Merge("replica-b", unidentified(snaps[n-1]))
		for _, i := range order {
			a.Merge("replica-b", unidentified(snaps[i]))
		}
		got := a.Totals()[canary]
		got.InFlight = 0
		if got != cur {
			t.Fatalf("merged %+v, want %+v", got, cur)
		}
	})
}

func TestTotalsCombineLocalAndSources(t *testing.T) {
	a := NewAggregator()
	a.add(1, anyone, canary, Totals{Requests: 4, Errors: 1, InFlight: 1})
	a.Merge("b", unidentified(map[Key]Totals{canary: {Requests: 6, Errors: 1, InFlight: 2}}))
	a.Merge("c", unidentified(map[Key]Totals{stable: {Requests: 9}}))
	want := map[Key]Totals{canary: {Requests: 10, Errors: 2, InFlight: 3}, stable: {Requests: 9}}
	if diff := cmp.Diff(want, a.Totals()); diff != "" {
		t.Fatalf("totals (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[Key]Totals{canary: {Requests: 4, Errors: 1, InFlight: 1}}, a.Local()); diff != "" {
		t.Fatalf("local (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b", "c"}, a.Sources()); diff != "" {
		t.Fatalf("sources (-want +got):\n%s", diff)
	}
}

func TestStaleSourceInFlightIgnored(t *testing.T) {
	a := NewAggregator()
	now := time.Unix(1000, 0)
	a.now = func() time.Time { return now }
	a.Merge("dead-replica", unidentified(map[Key]Totals{canary: {Requests: 7, Errors: 1, InFlight: 3}}))
	if got := a.Totals()[canary]; got.InFlight != 3 {
		t.Fatalf("fresh source in-flight = %d, want 3", got.InFlight)
	}
	now = now.Add(SourceStaleAfter + time.Second)
	if got, want := a.Totals()[canary], (Totals{Requests: 7, Errors: 1}); got != want {
		t.Fatalf("stale source totals = %+v, want counters kept and in-flight dropped: %+v", got, want)
	}
}

// anyone is the origin of load in tests that do not tell reporters apart.
var anyone = Origin{Class: ClassUnidentified}

// unidentified returns totals as merged from reporters without identity.
func unidentified(in map[Key]Totals) map[Key]ByOrigin {
	out := make(map[Key]ByOrigin, len(in))
	for k, t := range in {
		out[k] = ByOrigin{anyone: t}
	}
	return out
}

// TestBySourceKeepsEachIncarnationApart checks that BySource gives this replica's counters under its own name and
// each merged source's under its name, without in-flight counts, so that each is a grow-only counter of its own.
func TestBySourceKeepsEachIncarnationApart(t *testing.T) {
	a := NewAggregator()
	a.add(1, anyone, canary, Totals{Requests: 10, Errors: 1, InFlight: 4})
	a.Merge("b-1", map[Key]ByOrigin{canary: {anyone: {Requests: 7, Errors: 2, InFlight: 1}}})
	a.Merge("b-1", map[Key]ByOrigin{canary: {anyone: {Requests: 5}}}) // an older forward arriving late
	got := a.BySource("a-1")
	want := map[string]map[Key]ByOrigin{
		"a-1": {canary: {anyone: {Requests: 10, Errors: 1}}},
		"b-1": {canary: {anyone: {Requests: 7, Errors: 2}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("by source (-want +got):\n%s", diff)
	}
}
