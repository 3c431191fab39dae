package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/charts"
	"github.com/sluice-dev/sluice/local/cluster"
	"github.com/sluice-dev/sluice/webhook"
)

// TestChartRBACRunsController runs a second `sluice controller` with the
// chart's flags under the chart's own ServiceAccount, ClusterRole and Role,
// authenticated by a token from the TokenRequest API, and checks that it
// elects itself leader, issues its certificate Secret, injects the CA into
// its webhook configurations, serves admission, drives a rollout to
// promotion (self mode), and never logs a "forbidden" error: the chart
// grants what the binary uses.
//
// It is deliberately not parallel. The second controller leads its own
// Lease (its own --namespace), so its rollout controller watches the whole
// cluster; running it while no parallel test runs keeps it away from the
// other tests' Rollouts. Its webhook configurations are narrowed by the
// chart's webhooks.namespaceSelector to one namespace of this test.
//
// In cert-manager mode the test plays cert-manager: it writes the Secret
// (tls.crt, tls.key, ca.crt) and the caBundle, and the controller must run
// with the narrower Role (no Secret create or update, no webhook
// configuration access).
func TestChartRBACRunsController(t *testing.T) {
	for _, mode := range []string{"self", "cert-manager"} {
		t.Run(mode, func(t *testing.T) { runUnderChartRBAC(t, mode) })
	}
}

func runUnderChartRBAC(t *testing.T, mode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cs := env.Client()

	releaseNS := newNamespace(t, nil)
	teamNS := newNamespace(t, map[string]string{"chart-e2e": releaseNS, v1alpha1.LabelTeam: "payments"})
	set := []string{"webhooks.namespaceSelector.matchLabels.chart-e2e=" + releaseNS, "certificates.mode=" + mode, "dashboard.enabled=true",
		// The chart binds this ServiceAccount to the metrics reader role.
		"metrics.readers[0].kind=ServiceAccount", "metrics.readers[0].name=" + metricsScraperSA, "metrics.readers[0].namespace=" + releaseNS}
	objs := renderChart(t, charts.TemplateOptions{Release: "chart-rbac", Namespace: releaseNS, Set: set})
	if hasArg(t, objs, "--xds-token-audience") {
		// Authenticated xDS: the test's client talks to the legacy
		// listener, which needs no identity (every namespace allowed).
		set = append(set, "xds.legacy.enabled=true", "xds.legacy.allNamespaces=true")
		objs = renderChart(t, charts.TemplateOptions{Release: "chart-rbac", Namespace: releaseNS, Set: set})
	}
	picked := chartObjects(t, objs, "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
		"Deployment", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
	picked["MetricsReader"] = chartObject(t, objs, "ClusterRole", "-metrics-reader")
	picked["MetricsReaderBinding"] = chartObject(t, objs, "ClusterRoleBinding", "-metrics-reader")
	fullname := picked["ServiceAccount"].GetName()
	secretName := fullname + "-webhook-tls"
	ports := loopbackPorts(t, 7)
	webhookBase := "https://127.0.0.1:" + strconv.Itoa(ports[0])
	var caBundle []byte
	if mode == "cert-manager" {
		caBundle = issueAsCertManager(ctx, t, releaseNS, secretName)
	}

	// The chart's RBAC and webhook configurations, for real. The cluster's
	// Services get no endpoints (loopback pod IPs), so the webhooks are
	// pointed at the controller by URL, as `sluice dev` does.
	a := newApplier(t)
	for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
		"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "MetricsReader", "MetricsReaderBinding"} {
		u := picked[kind]
		if strings.HasSuffix(kind, "WebhookConfiguration") {
			pointWebhooksAt(t, u, webhookBase, caBundle)
		}
		if _, err := a.apply(ctx, u, false); err != nil {
			t.Fatalf("apply %s: %v", describe(u), err)
		}
		if u.GetNamespace() == "" {
			t.Cleanup(func() {
				res, err := a.resource(u)
				if err == nil {
					err = res.Delete(context.Background(), u.GetName(), metav1.DeleteOptions{})
				}
				if err != nil && !apierrors.IsNotFound(err) {
					t.Errorf("delete %s: %v", describe(u), err)
				}
			})
		}
	}

	kubeconfig := serviceAccountKubeconfig(ctx, t, releaseNS, fullname)
	args := controllerArgs(t, picked["Deployment"], kubeconfig, ports)
	logPath := logPathOf(t, "chart-rbac-controller")
	proc, err := cluster.StartProcess("sluice (chart RBAC)", sluice.bin, args, logPath)
	if err != nil {
		t.Fatal(err)
	}
	stopAtCleanup(t, proc)
	health := "http://127.0.0.1:" + strconv.Itoa(ports[3])
	// --metrics-secure (the chart's default): HTTPS, bearer token.
	metricsURL := "https://127.0.0.1:" + strconv.Itoa(ports[2]) + "/metrics"

	eventually(t, 2*time.Minute, "controller under the chart's RBAC ready", func(ctx context.Context) error {
		if exited, err := proc.Exited(); exited {
			return fmt.Errorf("controller exited: %v", err)
		}
		// A missing permission keeps an informer from syncing, and so the
		// controller from becoming ready: say which, rather than time out.
		if bad, err := chartLogProblems(logPath); err != nil || len(bad) > 0 {
			t.Fatalf("the controller hit permission errors under the chart's RBAC (%v):\n%s", err, strings.Join(bad, "\n"))
		}
		return httpOK(ctx, health+"/readyz")
	})
	t.Logf("controller under ServiceAccount %s/%s ready", releaseNS, fullname)
	eventually(t, time.Minute, "leader Lease held", func(ctx context.Context) error {
		l, err := cs.CoordinationV1().Leases(releaseNS).Get(ctx, "sluice-controller", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ptr.Deref(l.Spec.HolderIdentity, "") == "" {
			return fmt.Errorf("lease has no holder")
		}
		return nil
	})
	eventually(t, time.Minute, "certificate Secret issued", func(ctx context.Context) error {
		_, err := cs.CoreV1().Secrets(releaseNS).Get(ctx, secretName, metav1.GetOptions{})
		return err
	})
	eventually(t, time.Minute, "caBundle injected", func(ctx context.Context) error {
		m, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, fullname, metav1.GetOptions{})
		if err != nil {
			return err
		}
		v, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, fullname, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cc := range []admissionregistrationv1.WebhookClientConfig{m.Webhooks[0].ClientConfig, v.Webhooks[0].ClientConfig, v.Webhooks[1].ClientConfig} {
			if len(cc.CABundle) == 0 {
				return fmt.Errorf("webhook %s has no caBundle yet", ptr.Deref(cc.URL, ""))
			}
		}
		return nil
	})

	if caBundle == nil {
		sec, err := cs.CoreV1().Secrets(releaseNS).Get(ctx, secretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		caBundle = sec.Data[certs.SecretKeyCACert]
	}
	checkMetricsAuthentication(ctx, t, releaseNS, metricsURL, caBundle)

	// A Deployment in the selected namespace goes through this
	// controller's webhooks (and the main controller's).
	d := admitCheckout(ctx, t, cs, teamNS, metricsURL, "the chart-RBAC controller")
	// The traffic controller lists this Deployment's pods; the rollout
	// controller reconciles the Deployment. Both use informers that were
	// started (and, if forbidden, logged it) before readiness.
	eventually(t, time.Minute, "pod of the admitted Deployment running", func(ctx context.Context) error {
		_, err := runningPods(ctx, teamNS, map[string]string{v1alpha1.LabelService: "checkout"}, 1)
		return err
	})

	// The notifier reads a team's Secret by name only.
	checkSecretAccessUnderChart(ctx, t, releaseNS, fullname, teamNS)

	if audience := argValue(args, "--xds-token-audience"); audience != "" {
		checkXDSTokenUnderChart(ctx, t, teamNS, "127.0.0.1:"+strconv.Itoa(ports[1]), caBundle, audience)
	}

	if mode == "self" {
		// The rollout and traffic controllers' writes: a whole delivery,
		// with the main controller out of the way, under traffic from a
		// grpc-go xDS client of this controller. The metric names that
		// the chart's alerts and dashboards query must all be exported
		// along the way.
		xdsAddr := "127.0.0.1:" + strconv.Itoa(ports[1])
		if legacy := argValue(args, "--xds-legacy-port"); legacy != "" {
			xdsAddr = "127.0.0.1:" + legacy
		}
		wantNames := monitoringMetricNames(t)
		// The team's receiver, named in its Secret: the chart-RBAC
		// controller (the only one running during the delivery) reads it.
		rcv := newReceiver(t)
		enableNotifications(t, teamNS, rcv.URL+"/hooks/", rcv.URL+"/hooks/shop")
		load := startXDSLoad(chartXDSClient(t, xdsAddr, teamNS), 2)
		seen := map[string]bool{}
		observe := func(ctx context.Context) error { return scrapeMetricNames(ctx, metricsURL, seen) }
		driveRolloutUnderChart(ctx, t, teamNS, d.Name, func(ctx context.Context) error {
			if err := observe(ctx); err != nil {
				return err
			}
			// During the canary: its timestamps, the step's confirmation,
			// the analysis verdicts and the load reports.
			return missingMetrics(seen, wantNames)
		})
		close(load.stop)
		load.wg.Wait()
		t.Logf("%d RPCs through the chart-RBAC controller's routes (%d failed)", load.total, len(load.failed))
		if err := observe(ctx); err != nil {
			t.Fatal(err)
		}
		if err := missingMetrics(seen, wantNames); err != nil {
			t.Errorf("the chart's alerts and dashboards query metrics the controller never exported: %v", err)
		}
		t.Logf("the %d metrics the chart's alerts and dashboards query were all exported: %s", len(wantNames), strings.Join(wantNames, " "))
		var ro v1alpha1.Rollout
		if err := sluiceClient(t).Get(ctx, types.NamespacedName{Namespace: teamNS, Name: d.Name}, &ro); err != nil {
			t.Fatal(err)
		}
		checkNotificationsUnderChart(t, rcv, ro.Status.StableRevision)
		checkDashboardUnderChart(ctx, t, "https://"+argValue(args, "--dashboard-addr"), teamNS, "payments", caBundle)
	}
	if exited, err := proc.Exited(); exited {
		t.Fatalf("controller exited: %v", err)
	}
	t.Logf("leader, certificate, CA injection, admission and pods (and in self mode a promoted rollout) confirmed under the chart's RBAC")
	bad, err := chartLogProblems(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("the controller hit %d permission errors under the chart's RBAC:\n%s", len(bad), strings.Join(bad, "\n"))
	}
}

// issueAsCertManager writes the webhook Secret as cert-manager would (a
// serving certificate for 127.0.0.1 and its CA, without the CA key) and
// returns the CA for caBundle.
func issueAsCertManager(ctx context.Context, t *testing.T, namespace, name string) []byte {
	t.Helper()
	b, err := certs.Issue(certs.IssueRequest{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: b.Cert, corev1.TLSPrivateKeyKey: b.Key, certs.SecretKeyCACert: b.CACert},
	}
	if _, err := env.Client().CoreV1().Secrets(namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return b.CACert
}

// pointWebhooksAt rewrites every webhook's service reference in a rendered
// webhook configuration into a URL on base with the same path, with
// caBundle if given.
func pointWebhooksAt(t *testing.T, u *unstructured.Unstructured, base string, caBundle []byte) {
	t.Helper()
	hooks, _, err := unstructured.NestedSlice(u.Object, "webhooks")
	if err != nil || len(hooks) == 0 {
		t.Fatalf("%s has no webhooks: %v", describe(u), err)
	}
	for i, h := range hooks {
		hook := h.(map[string]any)
		path, _, err := unstructured.NestedString(hook, "clientConfig", "service", "path")
		if err != nil || path == "" {
			t.Fatalf("%s webhook %d has no service path: %v", describe(u), i, err)
		}
		cc := map[string]any{"url": base + path}
		if len(caBundle) > 0 {
			cc["caBundle"] = base64.StdEncoding.EncodeToString(caBundle)
		}
		if err := unstructured.SetNestedField(hook, cc, "clientConfig"); err != nil {
			t.Fatal(err)
		}
		hooks[i] = hook
	}
	if err := unstructured.SetNestedSlice(u.Object, hooks, "webhooks"); err != nil {
		t.Fatal(err)
	}
}

// serviceAccountKubeconfig writes a kubeconfig authenticating as the
// ServiceAccount with a token from the TokenRequest API.
func serviceAccountKubeconfig(ctx context.Context, t *testing.T, namespace, name string) string {
	t.Helper()
	tr, err := env.Client().CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("request a token for ServiceAccount %s/%s: %v", namespace, name, err)
	}
	cfg := env.RESTConfig()
	cluster := &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData, CertificateAuthority: cfg.CAFile}
	kc := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"local": cluster},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{name: {Token: tr.Status.Token}},
		Contexts:       map[string]*clientcmdapi.Context{"sa": {Cluster: "local", AuthInfo: name, Namespace: namespace}},
		CurrentContext: "sa",
	}
	path := t.TempDir() + "/kubeconfig"
	if err := clientcmd.WriteToFile(kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// stopAtCleanup stops the controller process proc when the test ends, after
// logging the end of its log if the test failed.
func stopAtCleanup(t *testing.T, proc *cluster.Process) {
	t.Cleanup(func() { proc.Stop(10 * time.Second) })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("controller log:\n%s", proc.LogTail(80))
		}
	})
}

// controllerArgs are the chart Deployment's container arguments, with the
// listeners moved to loopback ports of the test and the kubeconfig added.
func controllerArgs(t *testing.T, d *unstructured.Unstructured, kubeconfig string, ports []int) []string {
	t.Helper()
	containers, _, err := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if err != nil || len(containers) != 1 {
		t.Fatalf("the chart's Deployment has %d containers (%v), want 1", len(containers), err)
	}
	var c corev1.Container
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(containers[0].(map[string]any), &c); err != nil {
		t.Fatal(err)
	}
	override := map[string]string{
		"--webhook-port": strconv.Itoa(ports[0]),
		"--xds-port":     strconv.Itoa(ports[1]),
		"--metrics-addr": "127.0.0.1:" + strconv.Itoa(ports[2]),
		"--health-addr":  "127.0.0.1:" + strconv.Itoa(ports[3]),
	}
	// Rendered only with the authenticated xDS flags (trustFlags): ports[4]
	// and ports[5], or free ones of their own.
	if len(ports) < 6 {
		ports = append(slices.Clone(ports[:4]), loopbackPorts(t, 2)...)
	}
	if len(ports) < 7 {
		ports = append(slices.Clone(ports[:6]), loopbackPorts(t, 1)...)
	}
	optional := map[string]string{
		"--peer-port":       strconv.Itoa(ports[4]),
		"--xds-legacy-port": strconv.Itoa(ports[5]),
		// Rendered with dashboard.enabled.
		"--dashboard-addr": "127.0.0.1:" + strconv.Itoa(ports[6]),
	}
	var args []string
	for _, a := range c.Args {
		k, _, _ := strings.Cut(a, "=")
		if v, ok := override[k]; ok {
			a = k + "=" + v
			delete(override, k)
		} else if v, ok := optional[k]; ok {
			a = k + "=" + v
		}
		args = append(args, a)
	}
	if len(override) > 0 {
		t.Fatalf("the chart's controller args %v lack %v", c.Args, override)
	}
	return append(args, "--kubeconfig="+kubeconfig, "--webhook-host=127.0.0.1", "--xds-host=127.0.0.1", "--cert-ips=127.0.0.1")
}

// loopbackPorts returns n free ports on 127.0.0.1.
func loopbackPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s: %s %s", url, resp.Status, body)
	}
	return nil
}

// metricSum adds up every sample of a metric family in the Prometheus text
// exposition at url.
func metricSum(ctx context.Context, url, family string) (float64, error) {
	return metricWith(ctx, url, family, "")
}

// admitCheckout creates Deployment checkout in teamNS (team payments) through
// the API server and checks that the controller serving metricsURL (named
// who) admitted it: Sluice's labels are on it and that controller counted
// an admission request. It returns the admitted Deployment.
func admitCheckout(ctx context.Context, t *testing.T, cs kubernetes.Interface, teamNS, metricsURL, who string) *appsv1.Deployment {
	t.Helper()
	d := deployment(teamNS, "checkout", "v1", 1)
	eventually(t, time.Minute, "Deployment admitted", func(ctx context.Context) error {
		_, err := cs.AppsV1().Deployments(teamNS).Create(ctx, d, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
	got, err := cs.AppsV1().Deployments(teamNS).Get(ctx, d.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[v1alpha1.LabelService] != "checkout" || got.Labels[v1alpha1.LabelTeam] != "payments" {
		t.Errorf("Deployment labels %v lack Sluice's service and team labels", got.Labels)
	}
	eventually(t, time.Minute, "admission counted by "+who, func(ctx context.Context) error {
		n, err := metricSum(ctx, metricsURL, webhook.MetricRequests)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%s is 0", webhook.MetricRequests)
		}
		return nil
	})
	return got
}

// metricsScraperSA is the ServiceAccount the chart's metrics.readers binds
// to the metrics reader role in the chart-RBAC test.
const metricsScraperSA = "metrics-scraper"

// metricsScrapers holds, by URL, how tests read a secure /metrics.
var metricsScrapers sync.Map // string → metricsScraper

type metricsScraper struct {
	client *http.Client
	token  string
}

// metricsGet GETs a metrics URL, with the client and bearer token
// registered for it, if any.
func metricsGet(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	c := http.DefaultClient
	if v, ok := metricsScrapers.Load(url); ok {
		s := v.(metricsScraper)
		c = s.client
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	return c.Do(req)
}

// checkMetricsAuthentication shows that the secure /metrics at url refuses
// an anonymous request, a plain-HTTP one and a token without the metrics
// reader role, and serves a token the chart bound to it; it registers that
// token for the test's later reads. The server's certificate is verified
// against ca.
func checkMetricsAuthentication(ctx context.Context, t *testing.T, namespace, url string, ca []byte) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no CA certificate to verify the metrics server with")
	}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	stranger := "metrics-stranger"
	for _, sa := range []string{metricsScraperSA, stranger} {
		if _, err := env.Client().CoreV1().ServiceAccounts(namespace).Create(ctx,
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create ServiceAccount %s: %v", sa, err)
		}
	}
	token := func(sa string) string {
		tr, err := env.Client().CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("request a token for %s: %v", sa, err)
		}
		return tr.Status.Token
	}
	get := func(c *http.Client, url, token string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return resp.StatusCode, string(body), err
	}

	code, body, err := get(client, url, "")
	if err != nil || code != http.StatusUnauthorized || strings.Contains(body, webhook.MetricRequests) {
		t.Errorf("anonymous GET %s: %d %v, want 401 and no metrics", url, code, err)
	}
	plain := "http" + strings.TrimPrefix(url, "https")
	if code, body, err := get(http.DefaultClient, plain, ""); err == nil && (code == http.StatusOK || strings.Contains(body, webhook.MetricRequests)) {
		t.Errorf("plain-HTTP GET %s answered %d with metrics, want a refusal", plain, code)
	}
	code, body, err = get(client, url, token(stranger))
	if err != nil || code != http.StatusForbidden || strings.Contains(body, webhook.MetricRequests) {
		t.Errorf("GET %s with the token of %s (no role): %d %v, want 403 and no metrics", url, stranger, code, err)
	}
	scraper := token(metricsScraperSA)
	// The role binding may take a moment to reach the authorizer's cache.
	eventually(t, time.Minute, "metrics served to the metrics reader", func(context.Context) error {
		code, body, err := get(client, url, scraper)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, "# TYPE ") {
			return fmt.Errorf("GET %s with the metrics reader's token: %d %.200s", url, code, body)
		}
		return nil
	})
	metricsScrapers.Store(url, metricsScraper{client: client, token: scraper})
	t.Cleanup(func() { metricsScrapers.Delete(url) })
	t.Logf("/metrics refused anonymous (401), plain HTTP and %s (403); served %s", stranger, metricsScraperSA)
}

// checkXDSTokenUnderChart shows that the controller, under the chart's
// RBAC, verifies xDS clients' ServiceAccount tokens with the TokenReview
// API: an ADS stream on the TLS port without a token is refused, one with a
// token of the namespace's ServiceAccount for the audience is answered.
func checkXDSTokenUnderChart(ctx context.Context, t *testing.T, ns, addr string, ca []byte, audience string) {
	t.Helper()
	const sa = "checkout-client"
	if _, err := env.Client().CoreV1().ServiceAccounts(ns).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ServiceAccount %s/%s: %v", ns, sa, err)
	}
	tr, err := env.Client().CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no CA certificate to verify the xDS server with")
	}
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool})
	listener := "checkout." + ns
	if err := adsProbe(t, addr, creds, "", listenerRequest(ns, listener)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ADS stream without a token: %v, want Unauthenticated", err)
	}
	eventually(t, time.Minute, "ADS stream with a ServiceAccount token answered", func(context.Context) error {
		return adsProbe(t, addr, creds, tr.Status.Token, listenerRequest(ns, listener))
	})
	t.Logf("xDS under the chart's RBAC: no token refused, %s/%s's token (audience %s) served", ns, sa, audience)
}
