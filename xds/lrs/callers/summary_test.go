package callers

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/xds/lrs"
)

func TestNamespace(t *testing.T) {
	cases := map[string]struct {
		origin lrs.Origin
		want   string
	}{
		"token":        {lrs.Origin{Class: lrs.ClassAuthenticated, Identity: "token:web/frontend"}, "web"},
		"certificate":  {lrs.Origin{Class: lrs.ClassAuthenticated, Identity: "certificate:web/frontend"}, "web"},
		"legacy":       {lrs.Origin{Class: lrs.ClassLegacy, Identity: "legacy:old"}, "old"},
		"folded":       {lrs.Origin{Class: lrs.ClassAuthenticated, Identity: lrs.OtherIdentities}, v1alpha1.CallersOther},
		"unidentified": {lrs.Origin{Class: lrs.ClassUnidentified}, v1alpha1.CallersUnidentified},
		"no method":    {lrs.Origin{Class: lrs.ClassAuthenticated, Identity: "web/frontend"}, v1alpha1.CallersOther},
		"empty ns":     {lrs.Origin{Class: lrs.ClassAuthenticated, Identity: "token:/x"}, v1alpha1.CallersOther},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := Namespace(c.origin); got != c.want {
				t.Errorf("Namespace(%+v) = %q, want %q", c.origin, got, c.want)
			}
		})
	}
}

// TestCanaryPartIsTheCanaryRevisionsOwn: callers are grouped by namespace
// over every track; the canary part counts only the named revision.
func TestCanaryPartIsTheCanaryRevisionsOwn(t *testing.T) {
	web1 := lrs.Origin{Class: lrs.ClassAuthenticated, Identity: "token:web/a"}
	web2 := lrs.Origin{Class: lrs.ClassAuthenticated, Identity: "token:web/b"}
	ops := lrs.Origin{Class: lrs.ClassLegacy, Identity: "legacy:ops"}
	idx := Build(map[lrs.Key]lrs.ByOrigin{
		{Namespace: "shop", Service: "checkout", Track: "stable", Revision: "r1"}: {web1: {Requests: 100, Errors: 1}, ops: {Requests: 10}},
		{Namespace: "shop", Service: "checkout", Track: "canary", Revision: "r2"}: {web1: {Requests: 7, Errors: 2}, web2: {Requests: 3}},
		{Namespace: "shop", Service: "checkout", Track: "canary", Revision: "r0"}: {ops: {Requests: 50, Errors: 50}},
		{Namespace: "shop", Service: "cart", Track: "stable"}:                     {web1: {Requests: 999}},
	})
	got := idx.Loads(Service{"shop", "checkout"}, "r2")
	want := map[string]Load{
		"web": {Requests: 110, Errors: 3, CanaryRequests: 10, CanaryErrors: 2},
		"ops": {Legacy: true, Requests: 60, Errors: 50},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Loads = %+v, want %+v", got, want)
	}
}

// TestStatusIsBounded: however many namespaces call, the status lists at
// most MaxCallers, the biggest first, the rest summed into CallersOther,
// and stays a few kilobytes.
func TestStatusIsBounded(t *testing.T) {
	loads, prev := map[string]Load{}, map[string]Load{}
	var sum uint64
	for i := range 1000 {
		ns := fmt.Sprintf("team-%03d-%s", i, "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz")
		loads[ns] = Load{Requests: uint64(i + 1), Errors: 1, CanaryRequests: 1}
		prev[ns] = Load{Requests: uint64(i)}
		sum += uint64(i + 1)
	}
	t0 := time.Unix(1_800_000_000, 0)
	st := Status(loads, prev, t0, t0.Add(10*time.Second), t0.Add(20*time.Second))
	if len(st.Callers) != v1alpha1.MaxCallers {
		t.Fatalf("%d callers, want %d", len(st.Callers), v1alpha1.MaxCallers)
	}
	if st.Callers[0].Requests != 1000 || st.Callers[1].Requests != 999 {
		t.Errorf("not biggest first: %d, %d", st.Callers[0].Requests, st.Callers[1].Requests)
	}
	var total, recent int64
	for _, c := range st.Callers {
		total += c.Requests
		recent += c.RecentRequests
	}
	last := st.Callers[len(st.Callers)-1]
	if last.Namespace != v1alpha1.CallersOther || total != int64(sum) || recent != 1000 {
		t.Errorf("last %q, total %d (want %d), recent %d (want 1000)", last.Namespace, total, sum, recent)
	}
	if st.Window.Duration != 10*time.Second {
		t.Errorf("window %v, want 10s", st.Window.Duration)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 4<<10 {
		t.Errorf("callers status is %d bytes, want at most 4 KiB", len(b))
	}
	t.Logf("1000 calling namespaces: %d bytes of status", len(b))
}

// TestSameIgnoresTheWindow: a write that changes only the recent counts or
// the time is not worth making.
func TestSameIgnoresTheWindow(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	a := Status(map[string]Load{"web": {Requests: 5}}, map[string]Load{"web": {Requests: 1}}, t0, t0, t0.Add(time.Second))
	b := Status(map[string]Load{"web": {Requests: 5}}, map[string]Load{"web": {Requests: 5}}, t0, t0.Add(time.Second), t0.Add(2*time.Second))
	if !Same(a, b) {
		t.Error("same totals at another time are not Same")
	}
	c := Status(map[string]Load{"web": {Requests: 6}}, nil, t0, t0, t0)
	if Same(a, c) || Same(a, nil) {
		t.Error("different totals are Same")
	}
}

// TestExternalsCountOnlyExternalClusters: load on external clusters is
// grouped per dependency and caller; other tracks are not.
func TestExternalsCountOnlyExternalClusters(t *testing.T) {
	shop := lrs.Origin{Class: lrs.ClassAuthenticated, Identity: "token:shop/a"}
	got := Externals(map[lrs.Key]lrs.ByOrigin{
		{Namespace: "shop", Service: "payments", Track: "external"}: {shop: {Requests: 40, Errors: 4}},
		{Namespace: "shop", Service: "checkout", Track: "stable"}:   {shop: {Requests: 1}},
	})
	want := map[Service]map[string]Load{{"shop", "payments"}: {"shop": {Requests: 40, Errors: 4}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Externals = %v, want %v", got, want)
	}
}
