package metrics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/sluice-dev/sluice/rollout/analysis"
)

// PrometheusConfig configures a Prometheus source.
type PrometheusConfig struct {
	// Address is the Prometheus server's base URL, e.g. http://prometheus.monitoring:9090.
	Address string
	// Timeout bounds each query, on the client and (as the query's timeout parameter) on the server; > 0.
	Timeout time.Duration
	// Queries are the templates run for each sample, e.g. SluiceQueries() or EnvoyQueries(...).
	Queries QuerySet
}

// Prometheus is a Source running PromQL instant queries against a Prometheus server. It is safe for concurrent
// use.
type Prometheus struct {
	address string
	timeout time.Duration
	api     promv1.API
	queries compiledQueries
}

var _ Source = (*Prometheus)(nil)

// NewPrometheus checks cfg and returns a source for it. It does not contact the server.
func NewPrometheus(cfg PrometheusConfig) (*Prometheus, error) {
	if cfg.Address == "" {
		return nil, fmt.Errorf("prometheus source: address is empty; want a URL such as http://prometheus:9090")
	}
	if cfg.Timeout <= 0 {
		return nil, fmt.Errorf("prometheus source: timeout %v: want > 0", cfg.Timeout)
	}
	compiled, err := cfg.Queries.compile()
	if err != nil {
		return nil, fmt.Errorf("prometheus source: %w", err)
	}
	client, err := api.NewClient(api.Config{Address: cfg.Address})
	if err != nil {
		return nil, fmt.Errorf("prometheus source: address %q: %w", cfg.Address, err)
	}
	return &Prometheus{address: cfg.Address, timeout: cfg.Timeout, api: promv1.NewAPI(client), queries: compiled}, nil
}

// Sample runs the requests, errors and (if configured) latency queries for q, and the slow requests query when
// q.SlowerThan is set and a histogram bucket at or above it exists. Counts are the queries' results
// rounded to whole requests; increase() extrapolates each series on its own, so errors may exceed requests by
// rounding, and are capped at requests when the excess is at most 1% + 1 (a larger excess is an error). An
// empty or NaN requests result is ErrNoData; an empty errors result is 0 errors; an empty or NaN latency
// result leaves LatencyP99 nil.
func (p *Prometheus) Sample(ctx context.Context, q Query) (Sample, error) {
	if err := q.Validate(); err != nil {
		return Sample{}, fmt.Errorf("prometheus at %s: %w", p.address, err)
	}
	requests, err := p.number(ctx, "requests", p.queries.requests, q)
	if err != nil {
		return Sample{}, err
	}
	errs, err := p.number(ctx, "errors", p.queries.errors, q)
	switch {
	case errors.Is(err, ErrNoData):
		errs = 0
	case err != nil:
		return Sample{}, err
	}
	out := Sample{Requests: uint64(math.Round(requests)), Errors: uint64(math.Round(errs)), Window: q.Window}
	if out.Errors > out.Requests {
		if float64(out.Errors-out.Requests) > 1+0.01*float64(out.Requests) {
			return Sample{}, fmt.Errorf("prometheus at %s: %v: %d errors exceed %d requests: check that the errors query selects a subset of the requests query", p.address, q, out.Errors, out.Requests)
		}
		out.Errors = out.Requests
	}
	if p.queries.slow != nil && q.SlowerThan > 0 {
		if bound, over, ok := slowBucket(p.queries.buckets, p.queries.latencyUnit, q.SlowerThan); ok {
			promql, err := renderSlow(p.queries.slow, q, leMatcher(bound))
			if err != nil {
				return Sample{}, fmt.Errorf("prometheus at %s: render slow requests query: %w", p.address, err)
			}
			v, err := p.run(ctx, "slow requests", promql)
			switch {
			case errors.Is(err, ErrNoData):
			case err != nil:
				return Sample{}, err
			default:
				// Like errors, a slow count is a subset of the requests up to increase()'s extrapolation.
				slow := min(uint64(math.Round(v)), out.Requests)
				out.SlowRequests, out.SlowerThan = &slow, over
			}
		}
	}
	if p.queries.latency != nil {
		v, err := p.number(ctx, "latency p99", p.queries.latency, q)
		switch {
		case errors.Is(err, ErrNoData):
		case err != nil:
			return Sample{}, err
		default:
			d := time.Duration(v * float64(p.queries.latencyUnit))
			out.LatencyP99 = &d
		}
	}
	return out, nil
}

// CustomQuery is a parsed custom PromQL template from a team's DeploymentPolicy.
type CustomQuery struct {
	name string
	tmpl *template.Template
}

// NewCustomQuery parses a custom query template; it sees the same fields as QuerySet templates and must return
// one number.
func NewCustomQuery(name, text string) (CustomQuery, error) {
	if name == "" {
		return CustomQuery{}, fmt.Errorf("custom query: name is empty")
	}
	t, err := parseQuery("custom "+name, text)
	if err != nil {
		return CustomQuery{}, err
	}
	return CustomQuery{name: name, tmpl: t}, nil
}

// Name returns the query's name, which the analysis matches against its CustomCheck.
func (c CustomQuery) Name() string { return c.name }

// Custom runs a custom query for q and returns its value as the analysis expects it; a failure or an empty
// result gives an absent sample saying which.
func (p *Prometheus) Custom(ctx context.Context, c CustomQuery, q Query) analysis.CustomSample {
	if c.tmpl == nil {
		return analysis.CustomSample{Name: c.name, Problem: "custom query was not created with NewCustomQuery", SourceFailed: true}
	}
	if err := q.Validate(); err != nil {
		return analysis.CustomSample{Name: c.name, Problem: err.Error(), SourceFailed: true}
	}
	v, err := p.number(ctx, "custom "+c.name, c.tmpl, q)
	if err != nil {
		return analysis.CustomSample{Name: c.name, Problem: err.Error(), SourceFailed: !errors.Is(err, ErrNoData)}
	}
	return analysis.CustomSample{Name: c.name, Value: v, Present: true}
}

// number renders and runs one query and returns its single finite value, which must be non-negative unless the
// query is a custom one. It wraps ErrNoData for an empty result or NaN.
func (p *Prometheus) number(ctx context.Context, what string, t *template.Template, q Query) (float64, error) {
	promql, err := render(t, q)
	if err != nil {
		return 0, fmt.Errorf("prometheus at %s: render %s query: %w", p.address, what, err)
	}
	return p.run(ctx, what, promql)
}

// run runs one rendered query; see number.
func (p *Prometheus) run(ctx context.Context, what, promql string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	val, _, _, err := p.api.Query(ctx, promql, time.Time{}, promv1.WithTimeout(p.timeout))
	if err != nil {
		return 0, fmt.Errorf("prometheus at %s: %s query %q: %w", p.address, what, promql, err)
	}
	var v float64
	switch r := val.(type) {
	case *model.Scalar:
		v = float64(r.Value)
	case model.Vector:
		switch len(r) {
		case 0:
			return 0, fmt.Errorf("prometheus at %s: %s query %q: %w: empty result", p.address, what, promql, ErrNoData)
		case 1:
			v = float64(r[0].Value)
		default:
			return 0, fmt.Errorf("prometheus at %s: %s query %q returned %d series, want one: aggregate it, e.g. with sum()", p.address, what, promql, len(r))
		}
	default:
		return 0, fmt.Errorf("prometheus at %s: %s query %q returned a %s, want a scalar or a one-element vector", p.address, what, promql, val.Type())
	}
	switch {
	case math.IsNaN(v):
		return 0, fmt.Errorf("prometheus at %s: %s query %q: %w: result is NaN", p.address, what, promql, ErrNoData)
	case math.IsInf(v, 0):
		return 0, fmt.Errorf("prometheus at %s: %s query %q: result is %v", p.address, what, promql, v)
	case v < 0 && !strings.HasPrefix(what, "custom "):
		return 0, fmt.Errorf("prometheus at %s: %s query %q: result %v is negative", p.address, what, promql, v)
	}
	return v, nil
}
