package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/webhook"
)

// benchOpenLoopRates are the offered loads, in requests per second: the
// required 2,000 and a lower one that stays below saturation on a shared
// 2-core machine, so that its quantiles show service time, not queueing.
var benchOpenLoopRates = []int{500, 2000}

// Conditions of the admission benchmarks; docs/admission.md reports them.
const (
	benchOpenLoopDuration = 10 * time.Second
	benchClosedWorkers    = 32
	benchClosedDuration   = 3 * time.Second
	benchCreatesPerMode   = 150
)

// BenchmarkAdmissionWebhook measures Sluice's Deployment webhooks as
// kube-apiserver calls them (TLS, HTTP/2, AdmissionReview JSON of a ~1 KB
// Deployment) against the controller under test, with 1, 10 and 50
// DeploymentPolicies selecting the namespace: latency quantiles at open-loop
// 500 and 2,000 req/s (measured from each request's scheduled start, so
// queueing counts), and closed-loop maximum throughput.
func BenchmarkAdmissionWebhook(b *testing.B) {
	httpc := webhookHTTPClient(b)
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			ns, sel := benchNamespace(b, nil)
			var created []*v1alpha1.DeploymentPolicy
			for i := range n {
				created = append(created, createPolicy(b, fmt.Sprintf("%s-p%02d", ns, i), sel,
					[]v1alpha1.PolicyMode{v1alpha1.ModeEnforce, v1alpha1.ModeWarn, v1alpha1.ModeAudit}[i%3], benchRules(i)))
			}
			for _, p := range created {
				waitPolicyCompiled(b, sluiceClient(b), p)
			}
			for _, path := range []string{webhook.PathValidateDeployment, webhook.PathMutateDeployment} {
				body := benchReview(b, ns)
				url := sluice.WebhookURL + path
				send := func() error { return postReview(httpc, url, body) }
				if err := send(); err != nil {
					b.Fatalf("%s: %v", path, err)
				}
				name := strings.TrimPrefix(path, "/")
				for _, rate := range benchOpenLoopRates {
					stopProfile := profileController(b, fmt.Sprintf("%s-policies=%d-%d", name, n, rate), benchOpenLoopDuration)
					before := handlerBuckets(b)
					open, lag := openLoop(send, rate, benchOpenLoopDuration)
					inHandler := handlerBuckets(b).since(before)
					stopProfile()
					b.ReportMetric(inHandler.quantile(0.99)*1e3, fmt.Sprintf("%s-%d/s-in-handler-p99-ms", name, rate))
					b.Logf("%s policies=%d open loop %d req/s: time in the handler (controller's histogram, n=%d) p50<=%gms p99<=%gms p99.9<=%gms",
						name, n, rate, int(inHandler.count), inHandler.quantile(0.5)*1e3, inHandler.quantile(0.99)*1e3, inHandler.quantile(0.999)*1e3)
					b.ReportMetric(open.quantile(0.50).Seconds()*1e3, fmt.Sprintf("%s-%d/s-p50-ms", name, rate))
					b.ReportMetric(open.quantile(0.99).Seconds()*1e3, fmt.Sprintf("%s-%d/s-p99-ms", name, rate))
					b.ReportMetric(open.quantile(0.999).Seconds()*1e3, fmt.Sprintf("%s-%d/s-p99.9-ms", name, rate))
					b.ReportMetric(float64(open.errors), fmt.Sprintf("%s-%d/s-errors", name, rate))
					b.ReportMetric(lag.quantile(0.99).Seconds()*1e3, fmt.Sprintf("%s-%d/s-dispatch-lag-p99-ms", name, rate))
					b.Logf("%s policies=%d open loop %d req/s for %s: n=%d p50=%s p99=%s p99.9=%s errors=%d (generator dispatch lag p50=%s p99=%s)",
						name, n, rate, benchOpenLoopDuration, len(open.latencies), open.quantile(0.5), open.quantile(0.99), open.quantile(0.999), open.errors,
						lag.quantile(0.5), lag.quantile(0.99))
				}
				closed := closedLoop(send, benchClosedWorkers, benchClosedDuration)
				b.ReportMetric(closed.rate(), name+"-max-req/s")
				b.Logf("%s policies=%d closed loop %d workers for %s: %.0f req/s p50=%s p99=%s errors=%d",
					name, n, benchClosedWorkers, benchClosedDuration, closed.rate(), closed.quantile(0.5), closed.quantile(0.99), closed.errors)
			}
		})
	}
}

// BenchmarkAdmissionThroughAPIServer measures, in one run, what a Deployment
// CREATE through the real kube-apiserver costs with no admission, with the
// same three rules as a native ValidatingAdmissionPolicy (CEL in the API
// server), and with Sluice's webhooks (mutating + validating, one Enforce
// DeploymentPolicy). Creates are sequential and interleaved across the three
// so that they share the machine's conditions.
func BenchmarkAdmissionThroughAPIServer(b *testing.B) {
	ctx := context.Background()
	cs := fastClient(b)
	excludeFromSluice(b)
	nsNone, _ := benchNamespace(b, map[string]string{benchNoSluiceLabel: "true"})
	nsVAP, vapSel := benchNamespace(b, map[string]string{benchNoSluiceLabel: "true"})
	nsSluice, sluiceSel := benchNamespace(b, nil)
	applyPolicy(b, nsSluice+"-rules", sluiceSel, v1alpha1.ModeEnforce, func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.RequiredLabels = []string{"owner"}
		s.Rules.DisallowLatestTag = true
		s.Rules.CEL = []v1alpha1.CELRule{{Name: "two-replicas", Expression: "object.spec.replicas >= 2", Message: "run at least 2 replicas"}}
	})
	applyVAP(b, nsVAP, vapSel)

	modes := []struct{ name, ns string }{{"none", nsNone}, {"vap", nsVAP}, {"sluice", nsSluice}}
	lat := map[string]*samples{}
	for _, m := range modes {
		lat[m.name] = &samples{}
		// Every mode must really enforce its rules before it is timed.
		bad := benchDeployment(m.ns, "violating")
		bad.Spec.Template.Spec.Containers[0].Image = "registry.example.com/web:latest"
		_, err := cs.AppsV1().Deployments(m.ns).Create(ctx, bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if (m.name == "none") != (err == nil) {
			b.Fatalf("%s: violating create gave %v", m.name, err)
		}
	}
	for i := range benchCreatesPerMode {
		for _, m := range modes {
			d := benchDeployment(m.ns, fmt.Sprintf("web-%d", i))
			start := time.Now()
			_, err := cs.AppsV1().Deployments(m.ns).Create(ctx, d, metav1.CreateOptions{})
			lat[m.name].add(time.Since(start), err)
		}
	}
	for _, m := range modes {
		s := lat[m.name]
		if s.errors > 0 {
			b.Errorf("%s: %d failed creates", m.name, s.errors)
		}
		b.ReportMetric(s.quantile(0.5).Seconds()*1e3, m.name+"-p50-ms")
		b.ReportMetric(s.quantile(0.99).Seconds()*1e3, m.name+"-p99-ms")
		b.Logf("create with %-6s n=%d p50=%s p90=%s p99=%s", m.name, len(s.latencies), s.quantile(0.5), s.quantile(0.9), s.quantile(0.99))
	}
	b.Logf("Sluice adds p50 %s, the ValidatingAdmissionPolicy p50 %s, over no admission",
		lat["sluice"].quantile(0.5)-lat["none"].quantile(0.5), lat["vap"].quantile(0.5)-lat["none"].quantile(0.5))
}

// benchNoSluiceLabel keeps a namespace away from Sluice's webhooks while
// excludeFromSluice is in force.
const benchNoSluiceLabel = "e2e.sluice.dev/no-sluice"

// excludeFromSluice adds "benchNoSluiceLabel DoesNotExist" to the Deployment
// webhooks' namespace selectors for the benchmark, and removes it after.
func excludeFromSluice(b *testing.B) {
	b.Helper()
	ctx := context.Background()
	req := metav1.LabelSelectorRequirement{Key: benchNoSluiceLabel, Operator: metav1.LabelSelectorOpDoesNotExist}
	edit := func(add bool) error {
		mapi := env.Client().AdmissionregistrationV1().MutatingWebhookConfigurations()
		m, err := mapi.Get(ctx, webhook.ConfigurationName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range m.Webhooks {
			m.Webhooks[i].NamespaceSelector = editSelector(m.Webhooks[i].NamespaceSelector, req, add)
		}
		if _, err := mapi.Update(ctx, m, metav1.UpdateOptions{}); err != nil {
			return err
		}
		vapi := env.Client().AdmissionregistrationV1().ValidatingWebhookConfigurations()
		v, err := vapi.Get(ctx, webhook.ConfigurationName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range v.Webhooks {
			if v.Webhooks[i].Name == webhook.WebhookValidateDeployment {
				v.Webhooks[i].NamespaceSelector = editSelector(v.Webhooks[i].NamespaceSelector, req, add)
			}
		}
		_, err = vapi.Update(ctx, v, metav1.UpdateOptions{})
		return err
	}
	if err := edit(true); err != nil {
		b.Fatalf("exclude benchmark namespaces from Sluice: %v", err)
	}
	b.Cleanup(func() {
		if err := edit(false); err != nil {
			b.Errorf("restore webhook namespace selectors: %v", err)
		}
	})
}

func editSelector(sel *metav1.LabelSelector, req metav1.LabelSelectorRequirement, add bool) *metav1.LabelSelector {
	if sel == nil {
		sel = &metav1.LabelSelector{}
	}
	sel.MatchExpressions = slices.DeleteFunc(sel.MatchExpressions, func(r metav1.LabelSelectorRequirement) bool { return r.Key == req.Key })
	if add {
		sel.MatchExpressions = append(sel.MatchExpressions, req)
	}
	return sel
}

// applyVAP installs the benchmark's three rules as a native
// ValidatingAdmissionPolicy bound to sel, and waits until it denies.
func applyVAP(b *testing.B, ns string, sel *metav1.LabelSelector) {
	b.Helper()
	ctx := context.Background()
	name := ns + "-rules"
	api := env.Client().AdmissionregistrationV1()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{
				{Expression: "has(object.metadata.labels) && 'owner' in object.metadata.labels && object.metadata.labels['owner'] != ''", Message: "label owner is required"},
				{Expression: "object.spec.template.spec.containers.all(c, c.image.contains('@') || (c.image.split('/')[c.image.split('/').size()-1].contains(':') && !c.image.endsWith(':latest')))", Message: "pin image tags"},
				{Expression: "object.spec.replicas >= 2", Message: "run at least 2 replicas"},
			},
		},
	}
	if _, err := api.ValidatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		b.Fatalf("create ValidatingAdmissionPolicy: %v", err)
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources:    &admissionregistrationv1.MatchResources{NamespaceSelector: sel},
		},
	}
	if _, err := api.ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		b.Fatalf("create ValidatingAdmissionPolicyBinding: %v", err)
	}
	b.Cleanup(func() {
		if err := api.ValidatingAdmissionPolicyBindings().Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			b.Errorf("delete binding: %v", err)
		}
		if err := api.ValidatingAdmissionPolicies().Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			b.Errorf("delete policy: %v", err)
		}
	})
	bad := benchDeployment(ns, "probe")
	bad.Labels = nil
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := env.Client().AppsV1().Deployments(ns).Create(ctx, bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && strings.Contains(err.Error(), "owner") {
			return
		}
		select {
		case <-deadline.C:
			b.Fatalf("ValidatingAdmissionPolicy not in force: %v", err)
		case <-tick.C:
		}
	}
}

// benchNamespace creates a namespace for a benchmark and a selector
// matching only it.
func benchNamespace(b *testing.B, extra map[string]string) (string, *metav1.LabelSelector) {
	b.Helper()
	id := fmt.Sprintf("b%d-%d", time.Now().UnixNano()%1_000_000_000, admissionSeq.Add(1))
	labels := map[string]string{admissionTestLabel: id, v1alpha1.LabelTeam: "bench"}
	for k, v := range extra {
		labels[k] = v
	}
	name := "bench-" + id
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := env.Client().CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		b.Fatalf("create namespace: %v", err)
	}
	b.Cleanup(func() {
		if err := env.Client().CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			b.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name, &metav1.LabelSelector{MatchLabels: map[string]string{admissionTestLabel: id}}
}

// benchRules varies the rules of the i-th benchmark policy; the benchmark
// Deployment satisfies all of them, the common case at admission.
func benchRules(i int) func(*v1alpha1.DeploymentPolicySpec) {
	return func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.RequiredLabels = []string{"owner"}
		s.Rules.DisallowLatestTag = true
		s.Rules.AllowedRegistries = []string{"registry.example.com/"}
		s.Rules.RequireResources = i%2 == 0
		s.Rules.Replicas = &v1alpha1.ReplicaBounds{Min: ptr.To[int32](2), Max: ptr.To[int32](50)}
		// Each policy's expression differs, so that nothing can be shared
		// between policies.
		s.Rules.CEL = []v1alpha1.CELRule{{Name: fmt.Sprintf("cel-%d", i),
			Expression: fmt.Sprintf("object.spec.template.spec.containers.all(c, c.name != 'debug-%d')", i), Message: "no debug containers"}}
		s.InjectLabels = map[string]string{fmt.Sprintf("policy-%02d", i): "true"}
	}
}

// benchDeployment is a ~1 KB Deployment that satisfies the benchmark rules,
// paused so that no pods are created.
func benchDeployment(ns, name string) *appsv1.Deployment {
	d := deployment(ns, name, "registry.example.com/web:1.4.2", 2)
	d.Labels = map[string]string{"owner": "payments", "app": name}
	d.Annotations = map[string]string{v1alpha1.AnnotationRollout: "canary", v1alpha1.AnnotationSteps: "1,5,25,50"}
	d.Spec.Paused = true
	c := &d.Spec.Template.Spec.Containers[0]
	c.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}}
	c.Env = []corev1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "REGION", Value: "eu-west-1"}}
	return d
}

// benchReview is the AdmissionReview kube-apiserver sends for a CREATE of
// benchDeployment in ns.
func benchReview(b *testing.B, ns string) []byte {
	b.Helper()
	d := benchDeployment(ns, "web")
	d.UID = "00000000-0000-0000-0000-000000000001"
	raw, err := json.Marshal(d)
	if err != nil {
		b.Fatal(err)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("bench"),
			Kind:      metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
			Resource:  metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
			Name:      d.Name,
			Namespace: ns,
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
			DryRun:    ptr.To(true), // counts nothing, emits nothing
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// webhookHTTPClient is an HTTP/2 client trusting the webhook's CA, as
// kube-apiserver is.
func webhookHTTPClient(b *testing.B) *http.Client {
	b.Helper()
	sec, err := env.Client().CoreV1().Secrets(sluiceNamespace).Get(context.Background(), "sluice-webhook-tls", metav1.GetOptions{})
	if err != nil {
		b.Fatalf("read certificate Secret: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(sec.Data[certs.SecretKeyCACert]) {
		b.Fatal("no CA in the certificate Secret")
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 100,
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// postReview sends one AdmissionReview and checks that it was allowed over
// HTTP/2.
func postReview(c *http.Client, url string, body []byte) error {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		return fmt.Errorf("%s over %s", resp.Status, resp.Proto)
	}
	// Only the verdict is read, as cheaply as possible: the generator shares
	// the machine with the webhook it measures.
	var review struct {
		Response *struct {
			Allowed bool `json:"allowed"`
		} `json:"response"`
	}
	if err := jsonv2.Unmarshal(out, &review); err != nil {
		return err
	}
	if review.Response == nil || !review.Response.Allowed {
		return fmt.Errorf("not allowed: %s", out)
	}
	return nil
}

// samples are latencies and errors.
type samples struct {
	mu        sync.Mutex
	latencies []time.Duration
	errors    int
	elapsed   time.Duration
	sorted    bool
}

func (s *samples) add(d time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errors++
		return
	}
	s.latencies = append(s.latencies, d)
	s.sorted = false
}

func (s *samples) quantile(q float64) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.latencies) == 0 {
		return 0
	}
	if !s.sorted {
		sort.Slice(s.latencies, func(i, j int) bool { return s.latencies[i] < s.latencies[j] })
		s.sorted = true
	}
	i := int(q * float64(len(s.latencies)))
	return s.latencies[min(i, len(s.latencies)-1)]
}

func (s *samples) rate() float64 {
	return float64(len(s.latencies)) / s.elapsed.Seconds()
}

// openLoop offers rate requests per second for d, each on its own
// goroutine whatever the answers do, so a slow webhook meets a queue as it
// would behind kube-apiserver. Each request is timed from the moment it is
// handed to the HTTP client; lag, how late the generator dispatched it
// against its schedule, is returned apart: Go's timers wake with about a
// millisecond of slack on an idle machine, and that slack is the
// generator's, not the webhook's.
//
// The generator's own garbage collector is off for the run (its
// allocations for one run are a few tens of MB), so that its pauses are not
// charged to the webhook either.
func openLoop(send func() error, rate int, d time.Duration) (latency, lag *samples) {
	latency, lag = &samples{}, &samples{}
	interval := time.Second / time.Duration(rate)
	total := int(d / interval)
	goruntime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var wg sync.WaitGroup
	start := time.Now()
	for i := range total {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait) // pacing the offered load, not waiting for a condition
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent := time.Now()
			err := send()
			latency.add(time.Since(sent), err)
			lag.add(sent.Sub(due), nil)
		}()
	}
	wg.Wait()
	latency.elapsed = time.Since(start)
	lag.elapsed = latency.elapsed
	return latency, lag
}

// closedLoop runs workers that each send as fast as answers come back.
func closedLoop(send func() error, workers int, d time.Duration) *samples {
	s := &samples{}
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				t := time.Now()
				err := send()
				s.add(time.Since(t), err)
			}
		}()
	}
	wg.Wait()
	s.elapsed = time.Since(start)
	return s
}

// fastClient is a clientset without client-side rate limiting.
func fastClient(b *testing.B) kubernetes.Interface {
	b.Helper()
	cfg := rest.CopyConfig(env.RESTConfig())
	cfg.QPS, cfg.Burst = 10_000, 10_000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return cs
}

// benchProfileDirEnv names a directory; when set, the admission benchmark
// writes there a CPU profile of the controller for each open-loop run.
const benchProfileDirEnv = "SLUICE_BENCH_PROFILES"

// profileController starts a CPU profile of the controller for about d, to
// be written under $SLUICE_BENCH_PROFILES as name.pprof; the returned func
// waits for it. Without the variable it does nothing.
func profileController(b *testing.B, name string, d time.Duration) (wait func()) {
	dir := os.Getenv(benchProfileDirEnv)
	if dir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		url := fmt.Sprintf("%s/profile?seconds=%d", sluice.PprofURL, int(d.Seconds()))
		resp, err := http.Get(url)
		if err != nil {
			b.Errorf("profile the controller: %v", err)
			return
		}
		defer resp.Body.Close()
		out, err := os.Create(filepath.Join(dir, name+".pprof"))
		if err != nil {
			b.Errorf("profile the controller: %v", err)
			return
		}
		defer out.Close()
		if _, err := io.Copy(out, resp.Body); err != nil {
			b.Errorf("profile the controller: %v", err)
		}
	}()
	return func() { <-done }
}

// buckets are the cumulative bucket counts of the controller's admission
// duration histogram for Deployment CREATEs.
type buckets struct {
	upper []float64
	cum   []float64
	count float64
}

// handlerBuckets reads the controller's admission duration histogram.
func handlerBuckets(b *testing.B) buckets {
	b.Helper()
	resp, err := http.Get(sluice.MetricsURL)
	if err != nil {
		b.Fatalf("read controller metrics: %v", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		b.Fatalf("parse controller metrics: %v", err)
	}
	var out buckets
	for _, m := range families[webhook.MetricDuration].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["operation"] != string(admissionv1.Create) || labels["kind"] != "Deployment" {
			continue
		}
		h := m.GetHistogram()
		out.count = float64(h.GetSampleCount())
		for _, bk := range h.GetBucket() {
			out.upper = append(out.upper, bk.GetUpperBound())
			out.cum = append(out.cum, float64(bk.GetCumulativeCount()))
		}
	}
	return out
}

// since is the histogram of the samples taken after prev.
func (h buckets) since(prev buckets) buckets {
	out := buckets{upper: h.upper, count: h.count - prev.count, cum: make([]float64, len(h.cum))}
	for i := range h.cum {
		out.cum[i] = h.cum[i]
		if i < len(prev.cum) {
			out.cum[i] -= prev.cum[i]
		}
	}
	return out
}

// quantile is the upper bound of the bucket holding quantile q (+Inf past
// the last bucket).
func (h buckets) quantile(q float64) float64 {
	for i, c := range h.cum {
		if c >= q*h.count {
			return h.upper[i]
		}
	}
	return math.Inf(1)
}
