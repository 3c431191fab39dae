package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/sluice-dev/sluice/charts"
)

// chartDir is the chart, relative to this package.
const chartDir = "../charts/sluice"

// optionalGroups are API groups the chart may render for that the local
// cluster does not serve: the Prometheus Operator's and cert-manager's.
var optionalGroups = map[string]string{
	"monitoring.coreos.com": "the Prometheus Operator is not installed",
	"cert-manager.io":       "cert-manager is not installed",
}

// renderChart renders the chart with helm built from the module proxy.
func renderChart(t *testing.T, o charts.TemplateOptions) []*unstructured.Unstructured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	helm, err := charts.EnsureHelm(ctx, os.Stderr)
	if err != nil {
		t.Fatalf("helm: %v", err)
	}
	out, err := charts.Template(ctx, helm, chartDir, o)
	if err != nil {
		t.Fatalf("render the chart: %v", err)
	}
	objs, err := charts.Objects(out)
	if err != nil {
		t.Fatalf("rendered chart: %v", err)
	}
	return objs
}

// applier applies unstructured objects with server-side apply.
type applier struct {
	dyn    dynamic.Interface
	mapper meta.RESTMapper
}

func newApplier(t *testing.T) *applier {
	t.Helper()
	cfg := env.RESTConfig()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))}
}

// resource is the client for u's kind, in u's namespace if it has one.
func (a *applier) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return a.dyn.Resource(m.Resource).Namespace(u.GetNamespace()), nil
	}
	return a.dyn.Resource(m.Resource), nil
}

// apply server-side applies u; dryRun asks the API server to run every
// admission step (webhooks included) without persisting.
func (a *applier) apply(ctx context.Context, u *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	res, err := a.resource(u)
	if err != nil {
		return nil, err
	}
	opts := metav1.ApplyOptions{FieldManager: "sluice-chart-e2e", Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return res.Apply(ctx, u.GetName(), u, opts)
}

func describe(u *unstructured.Unstructured) string {
	if ns := u.GetNamespace(); ns != "" {
		return fmt.Sprintf("%s %s/%s", u.GetKind(), ns, u.GetName())
	}
	return fmt.Sprintf("%s %s", u.GetKind(), u.GetName())
}

// TestChartServerSideDryRun applies the rendered chart by server-side
// dry-run: the API server validates every object against its schema (CRDs
// included), runs admission (Sluice's own webhooks see the Deployment) and
// the apply merge, without keeping anything.
func TestChartServerSideDryRun(t *testing.T) {
	tests := map[string][]string{
		"default":      nil,
		"cert-manager": {"certificates.mode=cert-manager"},
		"servicemonitor": {"prometheus.serviceMonitor.enabled=true", "metrics.readers[0].kind=ServiceAccount",
			"metrics.readers[0].name=prometheus", "metrics.readers[0].namespace=monitoring"},
		"one replica": {"replicas=1", "webhooks.failurePolicy.mutating=Ignore"},
		// Dashboards in the release namespace: Grafana's is not there.
		"monitoring": {"prometheus.rules.enabled=true", "grafana.dashboards.enabled=true"},
		"legacy xds": {"peerPortFlag=true", "xds.legacy.enabled=true", "networkPolicy.apiserverCIDRs[0]=10.0.0.1/32"},
	}
	for name, set := range tests {
		t.Run(name, func(t *testing.T) {
			ns := newNamespace(t, nil)
			// A release name of its own: the main controller's webhook
			// configurations are already called "sluice" (registered by URL),
			// and applying the chart's service-based ones over them would
			// merge into an invalid mix of both.
			objs := renderChart(t, charts.TemplateOptions{Release: "dryrun", Namespace: ns, Set: set, IncludeCRDs: true})
			a := newApplier(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			applied := map[string]int{}
			for _, u := range objs {
				if u.GetNamespace() == "" && isNamespaced(t, a, u) {
					u.SetNamespace(ns)
				}
				if _, err := a.apply(ctx, u, true); err != nil {
					if why, ok := optionalGroups[u.GroupVersionKind().Group]; ok && meta.IsNoMatchError(err) {
						t.Logf("skip %s: %s (%v)", describe(u), why, err)
						continue
					}
					t.Errorf("dry-run apply %s: %v", describe(u), err)
					continue
				}
				applied[u.GetKind()]++
			}
			// NetworkPolicies are validated and admitted here, not enforced:
			// the local cluster has no network plugin.
			for _, kind := range []string{"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
				"RoleBinding", "Deployment", "Service", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "NetworkPolicy"} {
				if applied[kind] == 0 {
					t.Errorf("no %s was applied (applied: %v)", kind, applied)
				}
			}
			if name == "monitoring" && applied["ConfigMap"] != 4 {
				t.Errorf("%d dashboard ConfigMaps applied, want 4", applied["ConfigMap"])
			}
		})
	}
}

// isNamespaced reports whether u's kind is namespaced; kinds the cluster
// does not serve count as namespaced (they are skipped later).
func isNamespaced(t *testing.T, a *applier, u *unstructured.Unstructured) bool {
	t.Helper()
	gvk := u.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return true
	}
	return m.Scope.Name() == meta.RESTScopeNameNamespace
}

// chartObjects picks the objects of the given kinds from a render, leaving
// out the metrics reader's role and binding (see chartObject).
func chartObjects(t *testing.T, objs []*unstructured.Unstructured, kinds ...string) map[string]*unstructured.Unstructured {
	t.Helper()
	out := map[string]*unstructured.Unstructured{}
	for _, u := range objs {
		if strings.HasSuffix(u.GetName(), "-metrics-reader") {
			continue
		}
		for _, k := range kinds {
			if u.GetKind() == k {
				if _, dup := out[k]; dup {
					t.Fatalf("the chart renders two %ss", k)
				}
				out[k] = u
			}
		}
	}
	for _, k := range kinds {
		if out[k] == nil {
			t.Fatalf("the chart renders no %s", k)
		}
	}
	return out
}

// chartObject picks the object of a kind whose name ends with suffix.
func chartObject(t *testing.T, objs []*unstructured.Unstructured, kind, suffix string) *unstructured.Unstructured {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == kind && strings.HasSuffix(u.GetName(), suffix) {
			return u
		}
	}
	t.Fatalf("the chart renders no %s named *%s", kind, suffix)
	return nil
}

// chartLogProblems returns the log lines that report a permission error.
func chartLogProblems(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, l := range strings.Split(string(data), "\n") {
		// A namespace being deleted refuses new objects with "forbidden"
		// too (the NamespaceLifecycle admission plugin), whatever the
		// rights: another test's namespace going away is not a missing
		// permission.
		if strings.Contains(l, "because it is being terminated") {
			continue
		}
		if strings.Contains(strings.ToLower(l), "forbidden") {
			bad = append(bad, l)
		}
	}
	return bad, nil
}

// logPathOf is where a test's controller writes its log.
func logPathOf(t *testing.T, name string) string {
	return filepath.Join(t.TempDir(), name+".log")
}
