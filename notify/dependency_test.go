package notify

import (
	"strings"
	"testing"
	"time"
)

// TestDependencyWatchTellsChangesOnce: a healthy dependency is not told; one
// whose calls fail well above the ceiling is told failing once, however
// often it is looked at, and recovered once when a later window is
// confidently healthy; a restart of the counts starts a new window.
func TestDependencyWatchTellsChangesOnce(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	w := NewDependencyWatch(time.Hour, 0.01)
	d := Dependency{Namespace: "shop", Name: "checkout", Caller: "web"}
	var req, errs uint64
	var got []Message
	look := func(at time.Duration, n, k uint64) {
		req, errs = req+n, errs+k
		got = append(got, w.Observe([]DependencySample{{Dependency: d, Requests: req, Errors: errs, Limit: 0.01}}, t0.Add(at))...)
	}
	// First seen with failures already counted: judged on them.
	first := NewDependencyWatch(time.Hour, 0.01)
	if m := first.Observe([]DependencySample{{Dependency: d, Requests: 140, Errors: 20, Limit: 0.01}}, t0); len(m) != 1 || m[0].Kind != DependencyFailing {
		t.Fatalf("first look at 20 of 140 failed: %+v, want DependencyFailing", m)
	}
	look(0, 0, 0)
	for i := range 10 {
		look(time.Duration(i+1)*time.Minute, 1000, 2) // 0.2%: healthy
	}
	if len(got) != 0 {
		t.Fatalf("healthy dependency told %v", got)
	}
	for i := range 10 {
		look(time.Duration(11+i)*time.Minute, 1000, 300) // 30%: failing
	}
	if len(got) != 1 || got[0].Kind != DependencyFailing || got[0].Namespace != "web" || got[0].Service != "xds:///checkout.shop" ||
		!strings.Contains(got[0].Reason, "above the 1% ceiling") {
		t.Fatalf("messages %+v, want one DependencyFailing to web", got)
	}
	if !w.Failing(d) {
		t.Error("Failing(d) false while failing")
	}
	// The next window (from 1h) is healthy again.
	for i := range 30 {
		look(time.Hour+time.Duration(i+1)*time.Minute, 2000, 0)
	}
	if len(got) != 2 || got[1].Kind != DependencyRecovered || w.Failing(d) {
		t.Fatalf("messages %+v, want a DependencyRecovered after the failure", got)
	}
	// Counts restart (a new leader) healthy: a new window, no message.
	got = w.Observe([]DependencySample{{Dependency: d, Requests: 5, Errors: 0, Limit: 0.01}}, t0.Add(3*time.Hour))
	if len(got) != 0 {
		t.Errorf("a restart of the counts told %v", got)
	}
	// A dependency no longer sampled is forgotten.
	w.Observe(nil, t0.Add(4*time.Hour))
	if len(w.state) != 0 {
		t.Errorf("%d dependencies kept after they were gone", len(w.state))
	}
}

func TestDependencyMessageText(t *testing.T) {
	m := dependencyMessage(DependencyFailing, DependencySample{Dependency: Dependency{Namespace: "ext", Name: "payments", External: true, Caller: "ext"}, Limit: 0.05},
		30, 100, time.Unix(0, 0), time.Unix(60, 0))
	if txt := m.Text(); !strings.Contains(txt, "ext: xds:///payments.ext is failing: external dependency") || !strings.Contains(txt, "30 of 100") {
		t.Errorf("Text() = %q", txt)
	}
}
