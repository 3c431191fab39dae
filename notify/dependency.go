package notify

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/sluice-dev/sluice/rollout/analysis"
)

// Dependency alert kinds: a service of another team, or an external
// dependency, that a namespace calls is failing its callers from that
// namespace (or recovered), as an anytime-valid test of their own load
// reports says (analysis.RateVerdict), not a raw rate crossing a line.
const (
	DependencyFailing   Kind = "DependencyFailing"
	DependencyRecovered Kind = "DependencyRecovered"
)

// Dependency is what one calling namespace depends on.
type Dependency struct {
	// Namespace and Name of the called service or external dependency.
	Namespace string
	Name      string
	// External is true for an external dependency.
	External bool
	// Caller is the calling namespace, whose receiver is told.
	Caller string
}

// Target is the dependency's gRPC target.
func (d Dependency) Target() string { return "xds:///" + d.Name + "." + d.Namespace }

// DependencySample is a dependency's cumulative load from its caller, and
// the error-rate ceiling it is judged against (a fraction).
type DependencySample struct {
	Dependency
	Requests, Errors uint64
	Limit            float64
}

// DependencyWatch turns samples into alerts. Each dependency is judged on
// its counts within a window of Window (a new window starts when it ends),
// so a dependency that breaks after a long healthy time is caught within a
// window; within a window the test holds at every look, so a healthy
// dependency is falsely called failing with probability at most Alpha per
// window. A failing dependency is told once, and its recovery once, when a
// later verdict passes. It is pure; the zero value is not usable (see
// NewDependencyWatch).
type DependencyWatch struct {
	Window time.Duration
	Alpha  float64
	state  map[Dependency]*dependencyWindow
}

type dependencyWindow struct {
	start            time.Time
	requests, errors uint64 // at the window's start
	failing          bool
}

// NewDependencyWatch returns a watch with the given window and level.
func NewDependencyWatch(window time.Duration, alpha float64) *DependencyWatch {
	return &DependencyWatch{Window: window, Alpha: alpha, state: map[Dependency]*dependencyWindow{}}
}

// Failing reports whether d is failing as last observed.
func (w *DependencyWatch) Failing(d Dependency) bool {
	s := w.state[d]
	return s != nil && s.failing
}

// Observe judges the samples at now and returns the alerts to send, in the
// order of the samples. Dependencies absent from samples are forgotten.
func (w *DependencyWatch) Observe(samples []DependencySample, now time.Time) []Message {
	var out []Message
	seen := map[Dependency]bool{}
	for _, s := range samples {
		seen[s.Dependency] = true
		st := w.state[s.Dependency]
		if st == nil || s.Requests < st.requests || s.Errors < st.errors {
			// New, or counted afresh (a new leader): the first window
			// holds every count so far, which all began with this count.
			failing := st != nil && st.failing
			st = &dependencyWindow{start: now, failing: failing}
			w.state[s.Dependency] = st
		}
		n, k := s.Requests-st.requests, s.Errors-st.errors
		v := analysis.RateVerdict(k, n, s.Limit, w.Alpha)
		switch {
		case v == analysis.Fail && !st.failing:
			st.failing = true
			out = append(out, dependencyMessage(DependencyFailing, s, k, n, st.start, now))
		case v == analysis.Pass && st.failing:
			st.failing = false
			out = append(out, dependencyMessage(DependencyRecovered, s, k, n, st.start, now))
		}
		if now.Sub(st.start) >= w.Window {
			st.start, st.requests, st.errors = now, s.Requests, s.Errors
		}
	}
	for d := range w.state {
		if !seen[d] {
			delete(w.state, d)
		}
	}
	return out
}

func dependencyMessage(kind Kind, s DependencySample, k, n uint64, since, now time.Time) Message {
	what := "service"
	if s.External {
		what = "external dependency"
	}
	verdict := "above"
	if kind == DependencyRecovered {
		verdict = "confidently below"
	}
	return Message{
		Kind: kind, Namespace: s.Caller, Service: s.Target(), Phase: string(kind), Time: now,
		Reason: fmt.Sprintf("%s %s: %d of %d requests from %s failed since %s (%s), %s the %s ceiling",
			what, s.Target(), k, n, s.Caller, since.UTC().Format(time.RFC3339), percentOf(k, n), verdict,
			strconv.FormatFloat(s.Limit*100, 'f', -1, 64)+"%"),
	}
}

func percentOf(k, n uint64) string {
	if n == 0 {
		return "–"
	}
	return strconv.FormatFloat(float64(k)/float64(n)*100, 'f', 2, 64) + "%"
}

// Notify queues a message that concerns no Rollout (a dependency alert) for
// its namespace's receiver, without blocking.
func (n *Notifier) Notify(ctx context.Context, m Message) {
	n.enqueue(ctx, item{msg: m})
}
