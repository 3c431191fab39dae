package dashboard

import (
	"regexp"
	"sort"
	"time"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// confirmedWeight reads the weight from a WeightConfirmed or StaleProxies
// Event ("... carry canary weight 5%").
var confirmedWeight = regexp.MustCompile(`carry canary weight (\S+%)`)

// rollout builds the rollout page of ro; seen are chart points observed
// earlier (the Rollout's status keeps only its last decisions).
func (d namespaceData) rollout(ro *v1alpha1.Rollout, seen []Point) Rollout {
	r := Rollout{Service: d.service(ro), Timeline: d.eventsOf("Rollout", ro.Name), Problems: append([]string{}, d.Problems...)}
	if r.Timeline == nil {
		r.Timeline = []Event{}
	}
	var since time.Time
	if ro.Status.CanaryStartedAt != nil {
		since = ro.Status.CanaryStartedAt.Time
	}
	r.Series = mergePoints(seen, ro.Status.Analysis, since)
	return r
}

// steps says for each step of ro its weight, whether it is done, current or
// pending, and when the proxies acknowledged its weight during the current
// delivery.
func steps(ro *v1alpha1.Rollout, timeline []Event) []Step {
	st := ro.Status
	acked := map[string]time.Time{}
	var started time.Time
	if st.CanaryStartedAt != nil {
		started = st.CanaryStartedAt.Time
	}
	for _, e := range timeline {
		if e.Reason != "WeightConfirmed" && e.Reason != "StaleProxies" {
			continue
		}
		if m := confirmedWeight.FindStringSubmatch(e.Message); m != nil && !e.Time.Before(started.Add(-time.Second)) {
			if _, ok := acked[m[1]]; !ok {
				acked[m[1]] = e.Time
			}
		}
	}
	// A beta rollout holds its cohort at weight 0 until promoted: no step
	// runs before that.
	beta := ro.Spec.Delivery.Mode == v1alpha1.ModeBeta && st.ReleasedAt == nil
	active := (st.Phase == v1alpha1.PhaseProgressing || st.Phase == v1alpha1.PhasePaused) && !beta
	out := make([]Step, 0, len(ro.Spec.Delivery.Steps))
	for i, w := range ro.Spec.Delivery.Steps {
		s := Step{Index: i, Weight: w.String(), State: "pending"}
		switch {
		case (int32(i) < st.CurrentStepIndex && !beta) || st.Phase == v1alpha1.PhasePromoting || st.Phase == v1alpha1.PhaseSucceeded:
			s.State = "done"
		case int32(i) == st.CurrentStepIndex && active:
			s.State = "current"
			if st.StepStartedAt != nil && st.CurrentWeight == w {
				t := st.StepStartedAt.Time
				s.AckedAt = &t
			}
		}
		if t, ok := acked[s.Weight]; ok && s.AckedAt == nil && s.State != "pending" {
			s.AckedAt = &t
		}
		out = append(out, s)
	}
	return out
}

// maxPoints bounds a rollout's chart.
const maxPoints = 500

// mergePoints joins earlier points with those of the current decisions,
// one per time, oldest first, at most maxPoints, none before since (the
// current canary's start).
func mergePoints(seen []Point, ds []v1alpha1.AnalysisDecision, since time.Time) []Point {
	byTime := map[time.Time]Point{}
	for _, p := range seen {
		byTime[p.Time] = p
	}
	for _, p := range points(ds) {
		byTime[p.Time] = p.Point
	}
	out := make([]Point, 0, len(byTime))
	for _, p := range byTime {
		if (p.Canary >= 0 || p.Stable >= 0) && !p.Time.Before(since) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	if len(out) > maxPoints {
		out = out[len(out)-maxPoints:]
	}
	return out
}
