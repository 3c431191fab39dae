package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/xds"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/charts"
)

// driveRolloutUnderChart delivers a new revision of the Deployment name in
// namespace ns with the controller that runs under the chart's RBAC alone:
// the main controller is stopped and its webhooks exclude namespaces
// labelled chart-e2e, so the chart-RBAC controller admits (pauses), creates
// the Rollout and the canary, and promotes them. While the canary runs,
// duringCanary is polled until it returns nil (before the promotion).
// Afterwards the main controller and its webhooks are restored for the
// following tests.
func driveRolloutUnderChart(ctx context.Context, t *testing.T, ns, name string, duringCanary func(context.Context) error) {
	t.Helper()
	cs := env.Client()
	excludeChartNamespaces(ctx, t)
	sluice.Stop()
	t.Cleanup(func() { restoreMainController(t) })

	c := sluiceClient(t)
	update := func(what string, change func(annotations map[string]string, image *string)) {
		t.Helper()
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if d.Annotations == nil {
				d.Annotations = map[string]string{}
			}
			change(d.Annotations, &d.Spec.Template.Spec.Containers[0].Image)
			_, err = cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
			return err
		}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// Opt in first: the Rollout learns the stable revision before a new
	// one arrives.
	update("opt in", func(a map[string]string, _ *string) {
		a[v1alpha1.AnnotationRollout] = "canary"
		a[v1alpha1.AnnotationSteps] = "50"
	})
	eventually(t, 2*time.Minute, "Rollout created with the stable revision", func(ctx context.Context) error {
		var ro v1alpha1.Rollout
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &ro); err != nil {
			return err
		}
		if ro.Status.StableRevision == "" {
			return fmt.Errorf("rollout phase %q has no stable revision yet: %s", ro.Status.Phase, ro.Status.Message)
		}
		return nil
	})
	update("change the image", func(_ map[string]string, image *string) { *image = "registry.example/shop/checkout:v2" })
	var ro v1alpha1.Rollout
	eventually(t, 2*time.Minute, "canary running under the chart's RBAC", func(ctx context.Context) error {
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &ro); err != nil {
			return err
		}
		if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CanaryRevision == "" {
			return fmt.Errorf("rollout phase %q canary %q: %s", ro.Status.Phase, ro.Status.CanaryRevision, ro.Status.Message)
		}
		return nil
	})
	eventually(t, 2*time.Minute, "observed while the canary runs", duringCanary)
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &ro); err != nil {
			return err
		}
		ro.Spec.Promote = &v1alpha1.RolloutAction{Revision: ro.Status.CanaryRevision, RequestedAt: metav1.Now(), RequestedBy: "e2e", Reason: "chart RBAC test"}
		return c.Update(ctx, &ro)
	}); err != nil {
		t.Fatalf("promote: %v", err)
	}
	eventually(t, 2*time.Minute, "rollout promoted under the chart's RBAC", func(ctx context.Context) error {
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &ro); err != nil {
			return err
		}
		if ro.Status.Phase != v1alpha1.PhaseSucceeded {
			return fmt.Errorf("rollout phase %q: %s", ro.Status.Phase, ro.Status.Message)
		}
		return nil
	})
	if _, err := cs.AppsV1().Deployments(ns).Get(ctx, name+"-canary", metav1.GetOptions{}); err == nil {
		t.Errorf("the canary %s-canary still exists after promotion", name)
	}
}

// excludeChartNamespaces narrows the main controller's webhooks so that
// namespaces labelled chart-e2e are left to the chart-RBAC controller.
func excludeChartNamespaces(ctx context.Context, t *testing.T) {
	t.Helper()
	exclude := metav1.LabelSelectorRequirement{Key: "chart-e2e", Operator: metav1.LabelSelectorOpDoesNotExist}
	narrow := func(sel *metav1.LabelSelector) *metav1.LabelSelector {
		if sel == nil {
			sel = &metav1.LabelSelector{}
		}
		sel.MatchExpressions = append(sel.MatchExpressions, exclude)
		return sel
	}
	adm := env.Client().AdmissionregistrationV1()
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		m, err := adm.MutatingWebhookConfigurations().Get(ctx, mainWebhookName(t), metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range m.Webhooks {
			m.Webhooks[i].NamespaceSelector = narrow(m.Webhooks[i].NamespaceSelector)
		}
		_, err = adm.MutatingWebhookConfigurations().Update(ctx, m, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatalf("narrow the main mutating webhooks: %v", err)
	}
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		v, err := adm.ValidatingWebhookConfigurations().Get(ctx, mainWebhookName(t), metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range v.Webhooks {
			v.Webhooks[i].NamespaceSelector = narrow(v.Webhooks[i].NamespaceSelector)
		}
		_, err = adm.ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatalf("narrow the main validating webhooks: %v", err)
	}
}

func mainWebhookName(t *testing.T) string {
	t.Helper()
	m, _, err := webhookConfigurations(sluice.WebhookURL)
	if err != nil {
		t.Fatal(err)
	}
	return m.Name
}

// restoreMainController puts the main controller's webhook configurations
// back as the harness installed them, restarts it, and waits until it has
// injected its CA again, so the following tests are admitted as before.
func restoreMainController(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mutating, validating, err := webhookConfigurations(sluice.WebhookURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Install(ctx, sluiceNamespace, mutating, validating); err != nil {
		t.Fatalf("restore the main webhook configurations: %v", err)
	}
	if err := sluice.Start(ctx); err != nil {
		t.Fatalf("restart the main controller: %v", err)
	}
	adm := env.Client().AdmissionregistrationV1()
	eventually(t, 2*time.Minute, "main controller's CA injected again", func(ctx context.Context) error {
		m, err := adm.MutatingWebhookConfigurations().Get(ctx, mutating.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		v, err := adm.ValidatingWebhookConfigurations().Get(ctx, validating.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var ccs []admissionregistrationv1.WebhookClientConfig
		for _, w := range m.Webhooks {
			ccs = append(ccs, w.ClientConfig)
		}
		for _, w := range v.Webhooks {
			ccs = append(ccs, w.ClientConfig)
		}
		for _, cc := range ccs {
			if len(cc.CABundle) == 0 {
				return fmt.Errorf("a webhook of %s has no caBundle yet", m.Name)
			}
		}
		return nil
	})
}

// chartXDSClient is grpc-go's xDS client for xds:///checkout.<ns>, served by
// the xDS server at addr (plaintext: the chart's xDS port before
// authenticated xDS, its legacy listener after). Unlike the traffic
// plane's client, its node names its namespace in the metadata, as the
// legacy listener requires.
func chartXDSClient(t *testing.T, addr, ns string) testgrpc.TestServiceClient {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "chart-e2e-%s", "locality": {"zone": "e2e"}, "metadata": {"namespace": %q}}
	}`, addr, ns, ns)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///checkout."+ns, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("first call through the chart-RBAC controller's xDS: %v", err)
	}
	return c
}

// hasArg reports whether the rendered Deployment's controller arguments
// include flag.
func hasArg(t *testing.T, objs []*unstructured.Unstructured, flag string) bool {
	t.Helper()
	d := chartObjects(t, objs, "Deployment")["Deployment"]
	containers, _, err := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if err != nil || len(containers) == 0 {
		t.Fatalf("the chart's Deployment has no containers: %v", err)
	}
	args, _, err := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(args, func(a string) bool { return a == flag || strings.HasPrefix(a, flag+"=") })
}

// argValue is the value of --flag=value among args, or "".
func argValue(args []string, flag string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// monitoringMetricNames are the metric names that the chart's alert rules
// and Grafana dashboards query, read with Prometheus' parser.
func monitoringMetricNames(t *testing.T) []string {
	t.Helper()
	objs := renderChart(t, charts.TemplateOptions{Set: []string{"prometheus.rules.enabled=true"}})
	var exprs []string
	for _, u := range objs {
		if u.GetKind() != "PrometheusRule" {
			continue
		}
		groups, _, err := unstructured.NestedSlice(u.Object, "spec", "groups")
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range groups {
			rules, _, err := unstructured.NestedSlice(g.(map[string]any), "rules")
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				exprs = append(exprs, fmt.Sprint(r.(map[string]any)["expr"]))
			}
		}
	}
	if len(exprs) == 0 {
		t.Fatal("the chart renders no alert rules")
	}
	ds, err := charts.Dashboards(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	names, err := charts.MetricNames(append(exprs, charts.DashboardQueries(ds)...))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// scrapeMetricNames adds the sample names of the exposition at url to seen.
func scrapeMetricNames(ctx context.Context, url string, seen map[string]bool) error {
	resp, err := metricsGet(ctx, url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		seen[name] = true
	}
	return sc.Err()
}

// missingMetrics names the wanted metrics not seen.
func missingMetrics(seen map[string]bool, want []string) error {
	var missing []string
	for _, n := range want {
		if !seen[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("not exported (yet): %s", strings.Join(missing, ", "))
	}
	return nil
}
