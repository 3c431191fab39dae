package charts

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// Dashboard is the part of a Grafana dashboard the tests read.
type Dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Panel is one dashboard panel.
type Panel struct {
	ID         int    `json:"id"`
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// Dashboards reads the chart's Grafana dashboards (dashboards/*.json),
// strictly: an unknown top-level shape or bad JSON is an error.
func Dashboards(chartDir string) (map[string]Dashboard, error) {
	files, err := filepath.Glob(filepath.Join(chartDir, "dashboards", "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no dashboards under %s/dashboards", chartDir)
	}
	out := map[string]Dashboard{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var d Dashboard
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out, nil
}

// DashboardQueries are the PromQL expressions of every panel and query
// variable of the dashboards, with Grafana's range variables replaced by a
// duration so that Prometheus' parser reads them.
func DashboardQueries(ds map[string]Dashboard) []string {
	var out []string
	for _, d := range ds {
		for _, p := range d.Panels {
			for _, t := range p.Targets {
				out = append(out, grafanaToPromQL(t.Expr))
			}
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			if q, ok := v.Query.(map[string]any); ok {
				if s, ok := q["query"].(string); ok {
					out = append(out, labelValuesQuery(s))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// grafanaToPromQL replaces Grafana's interval variables by a duration.
func grafanaToPromQL(expr string) string {
	return strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h").Replace(expr)
}

// labelValuesQuery turns Grafana's label_values(selector, label) into the
// selector, which is the PromQL inside it.
func labelValuesQuery(q string) string {
	inner, ok := strings.CutPrefix(strings.TrimSpace(q), "label_values(")
	if !ok {
		return q
	}
	inner = strings.TrimSuffix(inner, ")")
	if i := strings.LastIndex(inner, ","); i >= 0 {
		inner = inner[:i]
	}
	return strings.TrimSpace(inner)
}

// MetricNames parses each expression with Prometheus' own parser and
// returns the metric names its selectors name, sorted and unique. A parse
// error, or a selector without a metric name, is an error naming the
// expression.
func MetricNames(exprs []string) ([]string, error) {
	seen := map[string]bool{}
	for _, e := range exprs {
		expr, err := parser.ParseExpr(e)
		if err != nil {
			return nil, fmt.Errorf("parse %q: %w", e, err)
		}
		var bad error
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			if vs.Name == "" {
				bad = fmt.Errorf("%q: selector %s names no metric", e, vs)
				return bad
			}
			seen[vs.Name] = true
			return nil
		})
		if bad != nil {
			return nil, bad
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}
