package charts

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// ruleGroups renders the chart with the PrometheusRule and returns its
// spec.groups.
func ruleGroups(t *testing.T) []any {
	t.Helper()
	out, err := Template(testContext(t), helm(t), chartDir, TemplateOptions{Set: []string{"prometheus.rules.enabled=true"}})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if u.GetKind() == "PrometheusRule" {
			groups, ok, err := unstructured.NestedSlice(u.Object, "spec", "groups")
			if err != nil || !ok || len(groups) == 0 {
				t.Fatalf("PrometheusRule has no spec.groups (%v)", err)
			}
			return groups
		}
	}
	t.Fatal("no PrometheusRule rendered with prometheus.rules.enabled=true")
	return nil
}

// ruleExprs returns each rule's expression by alert name.
func ruleExprs(t *testing.T, groups []any) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, g := range groups {
		rules, _, err := unstructured.NestedSlice(g.(map[string]any), "rules")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			m := r.(map[string]any)
			name, _ := m["alert"].(string)
			expr, _ := m["expr"].(string)
			if name == "" || expr == "" {
				t.Fatalf("rule %v has no alert name or expression", m)
			}
			out[name] = expr
		}
	}
	return out
}

// TestPrometheusRules runs Prometheus' own tools on the rendered rules:
// `promtool check rules`, then `promtool test rules` with
// testdata/prometheus/alerts.test.yaml, which must hold a firing case for
// every alert.
func TestPrometheusRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool (Debian package prometheus; hack/install-deps.sh installs it): %v", err)
	}
	groups := ruleGroups(t)
	dir := t.TempDir()
	raw, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "prometheus", "alerts.test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "alerts.test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	var file struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(tests, &file); err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range file.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for name := range ruleExprs(t, groups) {
		if !fires[name] || !silent[name] {
			t.Errorf("alert %s lacks a unit test that fires (%v) or one that stays silent (%v)", name, fires[name], silent[name])
		}
	}
}

// TestMonitoringQueriesParse parses every expression of the rules and the
// dashboards with Prometheus' parser; each names only Sluice's metrics
// (e2e's TestChartRBACRunsController checks them against a live /metrics).
func TestMonitoringQueriesParse(t *testing.T) {
	ds, err := Dashboards(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	exprs := DashboardQueries(ds)
	for _, e := range ruleExprs(t, ruleGroups(t)) {
		exprs = append(exprs, e)
	}
	names, err := MetricNames(exprs)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "sluice_") {
			t.Errorf("a query names %s, which Sluice does not export", n)
		}
	}
	if _, err := MetricNames([]string{"sum(rate(sluice_x_total[5m])"}); err == nil {
		t.Error("MetricNames accepted an unbalanced expression")
	}
	if _, err := MetricNames([]string{`{namespace="shop"}`}); err == nil {
		t.Error("MetricNames accepted a selector without a metric name")
	}
	t.Logf("%d expressions name %d metrics: %v", len(exprs), len(names), names)
}

// TestDashboards checks the dashboards' structure (no Grafana runs here):
// unique uids, a data source variable every panel uses, panels with ids,
// positions inside Grafana's 24-column grid and queries; and that the chart
// ships each one in a ConfigMap Grafana's sidecar picks up.
func TestDashboards(t *testing.T) {
	ds, err := Dashboards(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"control-plane.json", "rollout.json", "service.json", "team.json"}
	var got []string
	uids := map[string]string{}
	for name, d := range ds {
		got = append(got, name)
		if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
			t.Errorf("%s: uid %q title %q with %d panels", name, d.UID, d.Title, len(d.Panels))
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s share uid %s", name, other, d.UID)
		}
		uids[d.UID] = name
		if !slices.ContainsFunc(d.Templating.List, func(v struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		}) bool {
			return v.Name == "datasource" && v.Type == "datasource"
		}) {
			t.Errorf("%s has no datasource variable", name)
		}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			switch {
			case p.ID == 0 || ids[p.ID]:
				t.Errorf("%s: panel %q has id %d (zero or repeated)", name, p.Title, p.ID)
			case p.Title == "" || p.Type == "":
				t.Errorf("%s: panel %d has no title or type", name, p.ID)
			case p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus":
				t.Errorf("%s: panel %q uses data source %+v, want the datasource variable", name, p.Title, p.Datasource)
			case p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24:
				t.Errorf("%s: panel %q at %+v is outside the 24-column grid", name, p.Title, p.GridPos)
			case len(p.Targets) == 0:
				t.Errorf("%s: panel %q has no query", name, p.Title)
			}
			ids[p.ID] = true
			for _, q := range p.Targets {
				if q.RefID == "" || q.Expr == "" {
					t.Errorf("%s: panel %q has a query without refId or expr", name, p.Title)
				}
			}
		}
	}
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dashboards (-want +got):\n%s", diff)
	}

	r := decode(t, render(t, "monitoring"))
	if len(r.configMaps) != len(want) {
		t.Fatalf("%d dashboard ConfigMaps rendered, want %d", len(r.configMaps), len(want))
	}
	for _, cm := range r.configMaps {
		if cm.Labels["grafana_dashboard"] != "1" || cm.Namespace != "grafana" || cm.Annotations["grafana_folder"] != "Sluice" {
			t.Errorf("ConfigMap %s/%s labels %v annotations %v: want grafana_dashboard=1 in namespace grafana, folder Sluice",
				cm.Namespace, cm.Name, cm.Labels, cm.Annotations)
		}
		if len(cm.Data) != 1 {
			t.Errorf("ConfigMap %s holds %d keys, want one dashboard", cm.Name, len(cm.Data))
		}
		for key, body := range cm.Data {
			file := strings.TrimPrefix(key, "sluice-")
			raw, err := os.ReadFile(filepath.Join(chartDir, "dashboards", file))
			if err != nil {
				t.Errorf("ConfigMap %s key %s: %v", cm.Name, key, err)
				continue
			}
			var a, b any
			if err := json.Unmarshal(raw, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(body), &b); err != nil {
				t.Errorf("ConfigMap %s key %s is not JSON: %v", cm.Name, key, err)
				continue
			}
			if diff := cmp.Diff(a, b); diff != "" {
				t.Errorf("ConfigMap %s differs from dashboards/%s:\n%s", cm.Name, file, diff)
			}
		}
	}
	if r := decode(t, render(t, "default")); len(r.configMaps) != 0 {
		t.Errorf("the defaults render %d dashboard ConfigMaps, want none (grafana.dashboards.enabled is false)", len(r.configMaps))
	}
}

// TestServiceMonitor checks that the ServiceMonitor scrapes the metrics
// Service's port by name, over HTTPS with a token and the serving
// certificate's CA when metrics are secure, and over HTTP otherwise.
func TestServiceMonitor(t *testing.T) {
	tests := map[string]struct {
		set                   []string
		scheme, port, secret  string
		tokenFile, serverName bool
	}{
		"secure, token file": {set: []string{"prometheus.serviceMonitor.enabled=true"},
			scheme: "https", port: "https-metrics", tokenFile: true, serverName: true},
		"secure, token Secret": {set: []string{"prometheus.serviceMonitor.enabled=true", "prometheus.serviceMonitor.tokenSecret.name=scraper"},
			scheme: "https", port: "https-metrics", secret: "scraper", serverName: true},
		"plain": {set: []string{"prometheus.serviceMonitor.enabled=true", "metrics.secure=false"}, port: "http-metrics"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, err := Template(testContext(t), helm(t), chartDir, TemplateOptions{Set: tc.set})
			if err != nil {
				t.Fatal(err)
			}
			r := decode(t, out)
			var sm *unstructured.Unstructured
			for _, u := range r.all {
				if u.GetKind() == "ServiceMonitor" {
					sm = u
				}
			}
			if sm == nil {
				t.Fatal("no ServiceMonitor rendered")
			}
			eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
			if len(eps) != 1 {
				t.Fatalf("%d endpoints, want 1", len(eps))
			}
			ep := eps[0].(map[string]any)
			str := func(path ...string) string {
				s, _, _ := unstructured.NestedString(ep, path...)
				return s
			}
			if svcPort := r.services["sluice-metrics"].Spec.Ports[0].Name; str("port") != tc.port || svcPort != tc.port {
				t.Errorf("ServiceMonitor port %q, metrics Service port %q, want both %q", str("port"), svcPort, tc.port)
			}
			if str("scheme") != tc.scheme {
				t.Errorf("scheme %q, want %q", str("scheme"), tc.scheme)
			}
			if got := str("bearerTokenFile") != ""; got != tc.tokenFile {
				t.Errorf("bearerTokenFile set = %v, want %v", got, tc.tokenFile)
			}
			if str("authorization", "credentials", "name") != tc.secret {
				t.Errorf("authorization credentials from Secret %q, want %q", str("authorization", "credentials", "name"), tc.secret)
			}
			if got := str("tlsConfig", "serverName") == "sluice-metrics.sluice-system.svc" && str("tlsConfig", "ca", "secret", "key") == "ca.crt"; got != tc.serverName {
				t.Errorf("tlsConfig %v: verifies the metrics Service's name with the Secret's CA = %v, want %v", ep["tlsConfig"], got, tc.serverName)
			}
		})
	}
}
