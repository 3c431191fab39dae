// Package metrics provides the metric sources the rollout analysis reads: load reports from the data plane (the
// default, no extra component) and Prometheus. Each source answers one question, "how many requests and errors
// did this track of this service see over this window", as a Sample; Observe turns the answer, or the failure to
// get one, into the analysis package's TrackSample.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/sluice-dev/sluice/rollout/analysis"
)

// ErrNoData is wrapped by a source's error when the source works but has nothing for the query: no series, no
// snapshot, NaN.
var ErrNoData = errors.New("no data")

// Query names one track of one service and the trailing window to aggregate over.
type Query struct {
	// Namespace is the service's namespace.
	Namespace string
	// Service is the logical service name (label sluice.dev/service).
	Service string
	// Track is "stable" or "canary".
	Track string
	// Revision, when set, restricts the query to the requests that pods of
	// this revision served (sources that cannot tell revisions apart ignore
	// it); empty means every revision of the track.
	Revision string
	// Window is the trailing window to aggregate over, at least one second.
	Window time.Duration
	// Since, when set, is the exact start of the span to aggregate over
	// (Window then spans at least from Since to now, for sources that only
	// know trailing windows). A source that keeps history counts from the
	// first instant after Since, however long ago it was.
	Since time.Time
	// SlowerThan, when set, asks the source to also count the requests slower than this latency (sources that
	// keep a latency histogram count those above its smallest bucket at or above it), for the sequential latency
	// test; zero asks for no such count.
	SlowerThan time.Duration
}

// nameRE accepts Kubernetes names and label values; Query fields are interpolated into PromQL, so nothing else
// is let through.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$`)

// Validate reports a Query that no source can answer.
func (q Query) Validate() error {
	var errs []error
	fields := []struct{ name, value string }{{"namespace", q.Namespace}, {"service", q.Service}, {"track", q.Track}}
	if q.Revision != "" {
		fields = append(fields, struct{ name, value string }{"revision", q.Revision})
	}
	for _, f := range fields {
		if !nameRE.MatchString(f.value) {
			errs = append(errs, fmt.Errorf("query %s %q: want a Kubernetes name (letters, digits, '-', '.', '_')", f.name, f.value))
		}
	}
	if q.SlowerThan < 0 {
		errs = append(errs, fmt.Errorf("query latency bound %v: want > 0, or 0 for none", q.SlowerThan))
	}
	if q.Window < time.Second {
		errs = append(errs, fmt.Errorf("query window %v: want at least 1s", q.Window))
	}
	return errors.Join(errs...)
}

func (q Query) String() string {
	track := q.Track
	if q.Revision != "" {
		track += " revision " + q.Revision
	}
	if !q.Since.IsZero() {
		return fmt.Sprintf("%s/%s track %s since %s", q.Namespace, q.Service, track, q.Since.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("%s/%s track %s over %v", q.Namespace, q.Service, track, q.Window)
}

// Sample is what a source observed for one Query.
type Sample struct {
	// Requests is the number of requests completed in the window.
	Requests uint64
	// Errors is the number of failed requests among them, never more than Requests.
	Errors uint64
	// LatencyP99 is the 99th percentile latency, nil when the source has no latency data.
	LatencyP99 *time.Duration
	// SlowRequests, when the query asked for it (Query.SlowerThan) and the source can count them, is the number of
	// the requests slower than SlowerThan; nil otherwise. Never more than Requests.
	SlowRequests *uint64
	// SlowerThan is the latency SlowRequests counts above: the query's, or the histogram bucket boundary at or
	// above it that the source could count against.
	SlowerThan time.Duration
	// Window is the span the sample actually covers; shorter than asked when the source's history is shorter.
	Window time.Duration
}

// Source delivers samples. Implementations return an error wrapping ErrNoData when they have nothing for the
// query, and a descriptive error when they fail.
type Source interface {
	Sample(ctx context.Context, q Query) (Sample, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context, q Query) (Sample, error)

// Sample calls f.
func (f SourceFunc) Sample(ctx context.Context, q Query) (Sample, error) { return f(ctx, q) }

var _ Source = SourceFunc(nil)

// Observe asks src for q and returns the result as the analysis expects it: a present sample, or an absent one
// whose Problem carries the error and whose SourceFailed tells a failure from an empty answer.
func Observe(ctx context.Context, src Source, q Query) analysis.TrackSample {
	s, err := src.Sample(ctx, q)
	if err != nil {
		return analysis.TrackSample{Problem: err.Error(), SourceFailed: !errors.Is(err, ErrNoData)}
	}
	return analysis.TrackSample{Requests: s.Requests, Errors: s.Errors, LatencyP99: s.LatencyP99,
		SlowRequests: s.SlowRequests, SlowerThan: s.SlowerThan, Present: true}
}
