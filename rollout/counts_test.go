package rollout

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/rollout/analysis"
	"github.com/sluice-dev/sluice/rollout/metrics"
)

// TestResumeCounts checks the arithmetic that carries a canary's counts across restarts: each replica
// incarnation's grow-only counter is counted once, at its newest reading, whether the persisted status, the live
// readings or both hold it.
func TestResumeCounts(t *testing.T) {
	since := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	c := func(requests, errors int64) v1alpha1.RequestCounts {
		return v1alpha1.RequestCounts{Requests: requests, Errors: errors}
	}
	src := func(name string, base, seen v1alpha1.RequestCounts) v1alpha1.CountSource {
		return v1alpha1.CountSource{Name: name, CanaryBase: base, CanarySeen: seen}
	}
	reading := func(base, now uint64, errs ...uint64) metrics.Counter {
		r := metrics.Counter{Base: metrics.Totals{Requests: base}, Now: metrics.Totals{Requests: now}}
		if len(errs) == 2 {
			r.Base.Errors, r.Now.Errors = errs[0], errs[1]
		}
		return r
	}
	persisted := func(sources ...v1alpha1.CountSource) *v1alpha1.AnalysisCounts {
		return &v1alpha1.AnalysisCounts{Revision: "r2", Since: metav1.NewTime(since), Sources: sources}
	}
	cases := map[string]struct {
		prev   *v1alpha1.AnalysisCounts
		since  time.Time
		canary map[string]metrics.Counter
		want   v1alpha1.RequestCounts
	}{
		"first evaluation: the live counts": {
			canary: map[string]metrics.Counter{"a-1": reading(0, 100, 0, 1)},
			want:   c(100, 1),
		},
		"same process later: its newest reading, not the sum": {
			prev:   persisted(src("a-1", c(0, 0), c(100, 1))),
			canary: map[string]metrics.Counter{"a-1": reading(0, 150, 0, 2)},
			want:   c(150, 2),
		},
		"every replica restarted: persisted plus what the new process counted": {
			prev:   persisted(src("a-1", c(0, 0), c(1000, 5))),
			canary: map[string]metrics.Counter{"a-2": reading(0, 200, 0, 1)},
			want:   c(1200, 6),
		},
		"leader restarted, the follower's counter survives in both": {
			prev: persisted(src("a-1", c(0, 0), c(500, 2)), src("b-1", c(0, 0), c(400, 1))),
			canary: map[string]metrics.Counter{"b-1": reading(0, 450, 0, 1),
				"a-2": reading(0, 30, 0, 0)},
			want: c(500+450+30, 3),
		},
		"new leader's view of the old leader lags: the persisted reading wins, nothing twice": {
			prev: persisted(src("a-1", c(0, 0), c(500, 2)), src("b-1", c(0, 0), c(400, 1))),
			canary: map[string]metrics.Counter{"b-1": reading(0, 420, 0, 1),
				"a-1": reading(0, 490, 0, 2)},
			want: c(500+420, 3),
		},
		"the persisted base holds: a later history's base is not exact": {
			prev:   persisted(src("b-1", c(100, 0), c(400, 3))),
			canary: map[string]metrics.Counter{"b-1": reading(300, 450, 1, 4)},
			want:   c(350, 4),
		},
		"no live readings: the persisted counts carry on": {
			prev: persisted(src("a-1", c(0, 0), c(1000, 5))),
			want: c(1000, 5),
		},
		"counts of another start of the same revision never carry over": {
			prev:   persisted(src("a-1", c(0, 0), c(1000, 5))),
			since:  since.Add(time.Hour),
			canary: map[string]metrics.Counter{"a-1": reading(1000, 1010, 5, 5)},
			want:   c(10, 0),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := since
			if !tc.since.IsZero() {
				s = tc.since
			}
			got := ResumeCounts(tc.prev, "r2", s, Readings{Canary: tc.canary})
			if diff := cmp.Diff(tc.want, got.Canary); diff != "" {
				t.Fatalf("canary counts (-want +got):\n%s", diff)
			}
			// What is persisted resumes to the same counts: a replay changes nothing.
			again := ResumeCounts(&got, "r2", s, Readings{Canary: tc.canary})
			if diff := cmp.Diff(got, again); diff != "" {
				t.Fatalf("resuming the persisted counts with the same readings changed them (-first +again):\n%s", diff)
			}
		})
	}
}

// TestResumeCountsFoldsBeyondTheBound checks that the persisted sources stay bounded and that folding keeps the
// counts.
func TestResumeCountsFoldsBeyondTheBound(t *testing.T) {
	since := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var prev *v1alpha1.AnalysisCounts
	for i := range 3 * v1alpha1.MaxCountSources {
		// One restart after another: each incarnation counts 10 requests, 1 of them failed.
		next := ResumeCounts(prev, "r2", since, Readings{Canary: map[string]metrics.Counter{
			fmt.Sprintf("a-%03d", i): {Now: metrics.Totals{Requests: 10, Errors: 1}}}})
		prev = &next
		if len(prev.Sources) > v1alpha1.MaxCountSources {
			t.Fatalf("after %d incarnations %d sources are persisted, want at most %d", i+1, len(prev.Sources), v1alpha1.MaxCountSources)
		}
		if want := (v1alpha1.RequestCounts{Requests: int64(10 * (i + 1)), Errors: int64(i + 1)}); prev.Canary != want {
			t.Fatalf("after %d incarnations the counts are %+v, want %+v", i+1, prev.Canary, want)
		}
	}
}

// TestStepPersistsCountsAndFailures checks what an analysing Step writes on the status: the resumed counts it was
// given, and whether the analysis failed.
func TestStepPersistsCountsAndFailures(t *testing.T) {
	spec := testSpec(v1alpha1.ModeCanary)
	counts := &v1alpha1.AnalysisCounts{Revision: "b", Since: metav1.NewTime(t0), Canary: v1alpha1.RequestCounts{Requests: 1000},
		Sources: []v1alpha1.CountSource{{Name: "a-1", CanarySeen: v1alpha1.RequestCounts{Requests: 1000}}}}
	cases := map[string]struct {
		samples      *analysis.Input
		wantFailures int32
	}{
		"healthy":           {samples: healthy, wantFailures: 0},
		"critical failures": {samples: critical, wantFailures: 1},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := Step(Observed{Deployment: pausedFor("b"), Spec: spec, Canary: readyCanary("b", 1),
				Status: progressingAt(1, 500, &metav1.Time{Time: t0}), Samples: tc.samples, Counts: counts,
				Now: t0.Add(2 * time.Second)})
			if diff := cmp.Diff(counts, r.Status.Counts); diff != "" {
				t.Errorf("status.counts (-want +got):\n%s", diff)
			}
			if r.Status.AnalysisFailures != tc.wantFailures {
				t.Errorf("status.analysisFailures = %d, want %d", r.Status.AnalysisFailures, tc.wantFailures)
			}
		})
	}
}
