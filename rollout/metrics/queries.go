package metrics

import (
	"bytes"
	"errors"
	"fmt"
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
	// LatencyUnit is the unit LatencyP99 returns; required with LatencyP99.
	LatencyUnit time.Duration
}

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
	}
}

// compiledQueries is a QuerySet with parsed templates.
type compiledQueries struct {
	requests, errors, latency *template.Template
	latencyUnit               time.Duration
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
		latencyUnit: qs.LatencyUnit,
	}
	if c.latency != nil && qs.LatencyUnit <= 0 {
		errs = append(errs, fmt.Errorf("latency p99 query needs a latency unit > 0, e.g. 1ms for Envoy's histograms"))
	}
	return c, errors.Join(errs...)
}

// queryData is what query templates see.
type queryData struct {
	Namespace, Service, Track, Window string
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
	var b bytes.Buffer
	d := queryData{Namespace: q.Namespace, Service: q.Service, Track: q.Track, Window: promDuration(q.Window)}
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
