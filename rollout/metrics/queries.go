package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// QuerySet holds the PromQL templates a Prometheus source runs for one Query. Templates see {{.Namespace}},
// {{.Service}}, {{.Track}} and {{.Window}} (a PromQL duration such as 10s), and must each return one number:
// a scalar or a single-element vector.
type QuerySet struct {
	// Requests counts the requests of the track over the window; required.
	Requests string
	// Errors counts the failed requests of the track over the window; required. An empty result means no
	// errors (error series often appear only with the first error).
	Errors string
	// LatencyP99 yields the track's p99 latency over the window in LatencyUnit; optional.
	LatencyP99 string
	// LatencyUnit is the unit LatencyP99 returns and LatencyBuckets are in; required with either.
	LatencyUnit time.Duration
	// SlowRequests counts the track's requests over the window slower than a latency histogram bucket's upper
	// bound; optional. It sees {{.SlowerThan}}, a regular expression matching the spellings of that bound as an
	// "le" label value (e.g. 250|250\\.0). The bound is the smallest of LatencyBuckets at or above the query's
	// SlowerThan; with none, slow requests are not counted.
	SlowRequests string
	// LatencyBuckets are the histogram's upper bounds in LatencyUnit, ascending; required with SlowRequests.
	LatencyBuckets []float64
}

// EnvoyLatencyBuckets are the upper bounds, in milliseconds, of Envoy's default histogram buckets, which
// envoy_cluster_upstream_rq_time uses unless the bootstrap's stats_config changes them.
var EnvoyLatencyBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
	300000, 600000, 1800000, 3600000}

// SluiceQueries returns the queries over Sluice's own per-route counters, which it exports from load reports:
// sluice_route_requests_total and sluice_route_errors_total with namespace, service and track labels. They carry
// no latency.
func SluiceQueries() QuerySet {
	const sel = `{namespace="{{.Namespace}}",service="{{.Service}}",track="{{.Track}}"}`
	return QuerySet{
		Requests: `sum(increase(sluice_route_requests_total` + sel + `[{{.Window}}]))`,
		Errors:   `sum(increase(sluice_route_errors_total` + sel + `[{{.Window}}]))`,
	}
}

// EnvoyQueries returns the queries over Envoy's per-cluster upstream statistics as scraped from sidecars:
// envoy_cluster_upstream_rq_total, envoy_cluster_upstream_rq_xx with envoy_response_code_class="5" as errors, and
// the p99 of the envoy_cluster_upstream_rq_time histogram (milliseconds). cluster is a template for a regular
// expression matching the envoy_cluster_name of the track's clusters (one per port), e.g.
// "{{.Namespace}}/{{.Service}}/[0-9]+/{{.Track}}".
func EnvoyQueries(cluster string) QuerySet {
	sel := `envoy_cluster_name=~"` + cluster + `"`
	return QuerySet{
		Requests:    `sum(increase(envoy_cluster_upstream_rq_total{` + sel + `}[{{.Window}}]))`,
		Errors:      `sum(increase(envoy_cluster_upstream_rq_xx{` + sel + `,envoy_response_code_class="5"}[{{.Window}}]))`,
		LatencyP99:  `histogram_quantile(0.99, sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket{` + sel + `}[{{.Window}}])))`,
		LatencyUnit: time.Millisecond,
		SlowRequests: `sum(increase(envoy_cluster_upstream_rq_time_bucket{` + sel + `,le="+Inf"}[{{.Window}}])) - ` +
			`sum(increase(envoy_cluster_upstream_rq_time_bucket{` + sel + `,le=~"{{.SlowerThan}}"}[{{.Window}}]))`,
		LatencyBuckets: EnvoyLatencyBuckets,
	}
}

// compiledQueries is a QuerySet with parsed templates.
type compiledQueries struct {
	requests, errors, latency, slow *template.Template
	latencyUnit                     time.Duration
	buckets                         []float64
}

func (qs QuerySet) compile() (compiledQueries, error) {
	var errs []error
	parse := func(name, text string, required bool) *template.Template {
		if strings.TrimSpace(text) == "" {
			if required {
				errs = append(errs, fmt.Errorf("%s query is empty", name))
			}
			return nil
		}
		t, err := parseQuery(name, text)
		if err != nil {
			errs = append(errs, err)
		}
		return t
	}
	c := compiledQueries{
		requests:    parse("requests", qs.Requests, true),
		errors:      parse("errors", qs.Errors, true),
		latency:     parse("latency p99", qs.LatencyP99, false),
		slow:        parse("slow requests", qs.SlowRequests, false),
		latencyUnit: qs.LatencyUnit,
		buckets:     qs.LatencyBuckets,
	}
	if c.latency != nil && qs.LatencyUnit <= 0 {
		errs = append(errs, fmt.Errorf("latency p99 query needs a latency unit > 0, e.g. 1ms for Envoy's histograms"))
	}
	if c.slow != nil {
		if qs.LatencyUnit <= 0 {
			errs = append(errs, fmt.Errorf("slow requests query needs a latency unit > 0, e.g. 1ms for Envoy's histograms"))
		}
		if len(qs.LatencyBuckets) == 0 {
			errs = append(errs, fmt.Errorf("slow requests query needs the histogram's latency buckets"))
		}
		for i, b := range qs.LatencyBuckets {
			if !(b > 0) || math.IsInf(b, 0) || (i > 0 && b <= qs.LatencyBuckets[i-1]) {
				errs = append(errs, fmt.Errorf("latency buckets %v: want finite bounds > 0 in ascending order", qs.LatencyBuckets))
				break
			}
		}
	}
	return c, errors.Join(errs...)
}

// queryData is what query templates see.
type queryData struct {
	Namespace, Service, Track, Window string
	// SlowerThan matches the spellings of a histogram bucket bound as an "le" label value; empty unless
	// counting slow requests.
	SlowerThan string
}

// slowBucket returns the smallest of buckets (in unit) at or above d, as a duration, and false when there is
// none.
func slowBucket(buckets []float64, unit, d time.Duration) (float64, time.Duration, bool) {
	for _, b := range buckets {
		if bd := time.Duration(b * float64(unit)); bd >= d {
			return b, bd, true
		}
	}
	return 0, 0, false
}

// leMatcher is a regular expression matching the ways exporters spell bound as an "le" label value: Go's
// shortest form (250, 0.5, 3.6e+06), the same with ".0" for whole numbers, and the plain decimal form.
func leMatcher(bound float64) string {
	spellings := []string{strconv.FormatFloat(bound, 'g', -1, 64), strconv.FormatFloat(bound, 'f', -1, 64)}
	if bound == math.Trunc(bound) {
		spellings = append(spellings, strconv.FormatFloat(bound, 'f', 1, 64))
	}
	slices.Sort(spellings)
	spellings = slices.Compact(spellings)
	for i, s := range spellings {
		// Escaped for the regular expression, then for the PromQL string literal it sits in.
		spellings[i] = strings.ReplaceAll(regexp.QuoteMeta(s), `\`, `\\`)
	}
	return strings.Join(spellings, "|")
}

// parseQuery parses a query template and renders it once with sample values, so a template naming an unknown
// field fails here rather than at the first analysis.
func parseQuery(name, text string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s query: %w", name, err)
	}
	if _, err := render(t, Query{Namespace: "ns", Service: "svc", Track: "canary", Window: 10 * time.Second}); err != nil {
		return nil, fmt.Errorf("%s query: %w (fields available: .Namespace .Service .Track .Window)", name, err)
	}
	return t, nil
}

func render(t *template.Template, q Query) (string, error) {
	return renderSlow(t, q, "")
}

// renderSlow renders t for q with slowerThan as {{.SlowerThan}}.
func renderSlow(t *template.Template, q Query, slowerThan string) (string, error) {
	var b bytes.Buffer
	d := queryData{Namespace: q.Namespace, Service: q.Service, Track: q.Track, Window: promDuration(q.Window),
		SlowerThan: slowerThan}
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}

// promDuration formats d as a PromQL duration in whole seconds, rounded up, at least 1s.
func promDuration(d time.Duration) string {
	s := (d + time.Second - 1) / time.Second
	return fmt.Sprintf("%ds", max(s, 1))
}
