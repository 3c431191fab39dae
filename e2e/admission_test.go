package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/e2e/testkit"
	"github.com/sluice-dev/sluice/webhook"
)

// admissionTestLabel marks the namespaces of one admission test, so its
// cluster-scoped DeploymentPolicies select nothing else in the shared cluster.
const admissionTestLabel = "e2e.sluice.dev/admission"

var admissionSeq atomic.Int64

// admissionNamespace creates a namespace for an admission test with extra
// labels, and returns it with a selector that matches only it.
func admissionNamespace(t *testing.T, extra map[string]string) (string, *metav1.LabelSelector) {
	t.Helper()
	id := fmt.Sprintf("a%d-%d", time.Now().UnixNano()%1_000_000_000, admissionSeq.Add(1))
	labels := map[string]string{admissionTestLabel: id}
	for k, v := range extra {
		labels[k] = v
	}
	return newNamespace(t, labels), &metav1.LabelSelector{MatchLabels: map[string]string{admissionTestLabel: id}}
}

// sluiceClient is a controller-runtime client that knows Sluice's types.
func sluiceClient(t testing.TB) client.Client {
	t.Helper()
	c, err := testkit.NewClient(env.RESTConfig())
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return c
}

// applyPolicy creates a DeploymentPolicy, deletes it after the test, and
// waits until the controller under test reports it compiled: from then on
// admission applies it.
func applyPolicy(t testing.TB, name string, sel *metav1.LabelSelector, mode v1alpha1.PolicyMode, mod func(*v1alpha1.DeploymentPolicySpec)) *v1alpha1.DeploymentPolicy {
	t.Helper()
	p := createPolicy(t, name, sel, mode, mod)
	waitPolicyCompiled(t, sluiceClient(t), p)
	return p
}

// createPolicy creates a DeploymentPolicy and deletes it after the test.
func createPolicy(t testing.TB, name string, sel *metav1.LabelSelector, mode v1alpha1.PolicyMode, mod func(*v1alpha1.DeploymentPolicySpec)) *v1alpha1.DeploymentPolicy {
	t.Helper()
	c := sluiceClient(t)
	p := &v1alpha1.DeploymentPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.DeploymentPolicySpec{Mode: mode, NamespaceSelector: sel},
	}
	if mod != nil {
		mod(&p.Spec)
	}
	if err := c.Create(context.Background(), p); err != nil {
		t.Fatalf("create DeploymentPolicy %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := c.Delete(context.Background(), p); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete DeploymentPolicy %s: %v", name, err)
		}
	})
	return p
}

func waitPolicyCompiled(t testing.TB, c client.Client, p *v1alpha1.DeploymentPolicy) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		cur := &v1alpha1.DeploymentPolicy{}
		err := c.Get(ctx, client.ObjectKeyFromObject(p), cur)
		if err == nil {
			cond := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionCompiled)
			if cond != nil && cond.ObservedGeneration == cur.Generation && cond.Status == metav1.ConditionTrue {
				return
			}
			err = fmt.Errorf("Compiled condition %+v at generation %d", cond, cur.Generation)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("DeploymentPolicy %s not compiled by the controller: %v", p.Name, err)
		case <-tick.C:
		}
	}
}

// warningRecorder collects the admission warnings kube-apiserver relays.
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningRecorder) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.warnings...)
}

// warningClient is a clientset whose warnings are recorded.
func warningClient(t *testing.T) (kubernetes.Interface, *warningRecorder) {
	t.Helper()
	cfg := rest.CopyConfig(env.RESTConfig())
	rec := &warningRecorder{}
	cfg.WarningHandler = rec
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, rec
}

func TestAdmissionInjectsLabelsAndPausesNewRevisions(t *testing.T) {
	ctx := context.Background()
	ns, _ := admissionNamespace(t, map[string]string{v1alpha1.LabelTeam: "payments"})
	d := deployment(ns, "web", "example.com/web:1.0", 1)
	d.Annotations = map[string]string{v1alpha1.AnnotationRollout: "canary", v1alpha1.AnnotationService: "checkout"}
	created, err := env.Client().AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	rev := created.Spec.Template.Labels[v1alpha1.LabelRevision]
	if len(rev) != webhook.RevisionLength {
		t.Fatalf("revision label %q", rev)
	}
	want := map[string]string{v1alpha1.LabelTeam: "payments", v1alpha1.LabelService: "checkout",
		v1alpha1.LabelTrack: v1alpha1.TrackStable, v1alpha1.LabelRevision: rev}
	for where, labels := range map[string]map[string]string{"metadata": created.Labels, "pod template": created.Spec.Template.Labels} {
		for k, v := range want {
			if labels[k] != v {
				t.Errorf("%s label %s = %q, want %q", where, k, labels[k], v)
			}
		}
	}
	if created.Spec.Paused {
		t.Error("CREATE paused the Deployment")
	}
	// The pods carry the labels the traffic side selects on.
	eventually(t, podTimeout, "pods labelled for traffic", func(ctx context.Context) error {
		_, err := runningPods(ctx, ns, map[string]string{v1alpha1.LabelService: "checkout", v1alpha1.LabelRevision: rev}, 1)
		return err
	})

	// A new template on an opted-in Deployment is held paused.
	var updated *appsv1.Deployment
	eventually(t, 30*time.Second, "update the image", func(ctx context.Context) error {
		cur, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.Template.Spec.Containers[0].Image = "example.com/web:2.0"
		updated, err = env.Client().AppsV1().Deployments(ns).Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	newRev := updated.Spec.Template.Labels[v1alpha1.LabelRevision]
	if newRev == rev || !updated.Spec.Paused || updated.Annotations[v1alpha1.AnnotationPendingRevision] != newRev {
		t.Errorf("after the update: revision %q (was %q), paused %v, pending %q; want a new revision, paused, pending it",
			newRev, rev, updated.Spec.Paused, updated.Annotations[v1alpha1.AnnotationPendingRevision])
	}

	// A namespace without a team gets no team label.
	other, _ := admissionNamespace(t, nil)
	plain, err := env.Client().AppsV1().Deployments(other).Create(ctx, deployment(other, "api", "example.com/api:1.0", 1), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, ok := plain.Labels[v1alpha1.LabelTeam]; ok || plain.Labels[v1alpha1.LabelService] != "api" {
		t.Errorf("labels %v: want service api and no team", plain.Labels)
	}
}

func TestAdmissionEnforceDeniesWithEveryViolation(t *testing.T) {
	ns, sel := admissionNamespace(t, nil)
	applyPolicy(t, ns+"-strict", sel, v1alpha1.ModeEnforce, func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.RequiredLabels = []string{"owner"}
		s.Rules.DisallowLatestTag = true
		s.Rules.CEL = []v1alpha1.CELRule{{Name: "two-replicas", Expression: "object.spec.replicas >= 2", Message: "run at least 2 replicas"}}
	})
	d := deployment(ns, "web", "example.com/web:latest", 1)
	d.Annotations = map[string]string{v1alpha1.AnnotationSteps: "5,1"}
	_, err := env.Client().AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("create: %v, want an Invalid error", err)
	}
	msg := err.Error()
	for _, s := range []string{"metadata.labels[owner]", "spec.template.spec.containers[0].image", "run at least 2 replicas",
		"metadata.annotations[sluice.dev/steps]", "policy " + ns + "-strict"} {
		if !strings.Contains(msg, s) {
			t.Errorf("denial lacks %q:\n%s", s, msg)
		}
	}
	// A compliant Deployment passes.
	good := deployment(ns, "good", "example.com/web:1.0", 2)
	good.Labels = map[string]string{"owner": "payments"}
	if _, err := env.Client().AppsV1().Deployments(ns).Create(context.Background(), good, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create a compliant Deployment: %v", err)
	}
}

func TestAdmissionWarnReachesTheClient(t *testing.T) {
	ns, sel := admissionNamespace(t, nil)
	applyPolicy(t, ns+"-probes", sel, v1alpha1.ModeWarn, func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.RequireReadinessProbe = true
	})
	cs, rec := warningClient(t)
	if _, err := cs.AppsV1().Deployments(ns).Create(context.Background(), deployment(ns, "web", "example.com/web:1.0", 1), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	if w := strings.Join(rec.all(), "\n"); !strings.Contains(w, "readiness probe") || !strings.Contains(w, ns+"-probes") {
		t.Errorf("warnings %q lack the readiness probe violation", rec.all())
	}
}

func TestAdmissionAuditEmitsEventAndCounts(t *testing.T) {
	ns, sel := admissionNamespace(t, nil)
	p := applyPolicy(t, ns+"-audit", sel, v1alpha1.ModeAudit, func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.RequiredLabels = []string{"owner"}
	})
	cs, rec := warningClient(t)
	if _, err := cs.AppsV1().Deployments(ns).Create(context.Background(), deployment(ns, "web", "example.com/web:1.0", 1), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	if len(rec.all()) > 0 {
		t.Errorf("Audit mode warned: %q", rec.all())
	}
	eventually(t, 30*time.Second, "PolicyAudit Event", func(ctx context.Context) error {
		evs, err := env.Client().EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == webhook.ReasonPolicyAudit && e.Regarding.Name == "web" && strings.Contains(e.Note, "owner") {
				return nil
			}
		}
		return fmt.Errorf("%d events, none PolicyAudit for web", len(evs.Items))
	})
	c := sluiceClient(t)
	eventually(t, 30*time.Second, "violation count in policy status", func(ctx context.Context) error {
		cur := &v1alpha1.DeploymentPolicy{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(p), cur); err != nil {
			return err
		}
		for _, v := range cur.Status.Violations {
			if v.Rule == "requiredLabels" && v.Mode == v1alpha1.ModeAudit && v.Count >= 1 {
				return nil
			}
		}
		return fmt.Errorf("violations %+v", cur.Status.Violations)
	})
}

func TestAdmissionRejectsPoliciesThatDoNotCompile(t *testing.T) {
	c := sluiceClient(t)
	p := &v1alpha1.DeploymentPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("broken-%d", time.Now().UnixNano())},
		Spec: v1alpha1.DeploymentPolicySpec{Mode: v1alpha1.ModeEnforce, Rules: v1alpha1.PolicyRules{
			CEL: []v1alpha1.CELRule{{Name: "bad", Expression: "object.spec.replicas >=", Message: "m"}},
			FreezeWindows: []v1alpha1.FreezeWindow{{Name: "w", TimeZone: "Mars/Olympus",
				Dates: &v1alpha1.DateRange{From: "2026-12-01T00:00", To: "2026-12-02T00:00"}}},
		}},
	}
	err := c.Create(context.Background(), p)
	if err == nil {
		if derr := c.Delete(context.Background(), p); derr != nil {
			t.Errorf("delete: %v", derr)
		}
		t.Fatal("a policy that does not compile was admitted")
	}
	for _, s := range []string{"spec.rules.cel[0].expression", "spec.rules.freezeWindows[0].timeZone"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("rejection lacks %q: %v", s, err)
		}
	}
}

// dryRunCreate asks admission about d without storing it.
func dryRunCreate(ctx context.Context, d *appsv1.Deployment) error {
	_, err := env.Client().AppsV1().Deployments(d.Namespace).Create(ctx, d, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

func TestAdmissionFreezeWindowEnds(t *testing.T) {
	ns, sel := admissionNamespace(t, nil)
	// Freeze windows have minute precision: end at a minute boundary at
	// least 20 s away, so the policy is in force before it ends.
	now := time.Now().UTC()
	end := now.Truncate(time.Minute).Add(time.Minute)
	if end.Sub(now) < 20*time.Second {
		end = end.Add(time.Minute)
	}
	applyPolicy(t, ns+"-freeze", sel, v1alpha1.ModeEnforce, func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.FreezeWindows = []v1alpha1.FreezeWindow{{Name: "launch", TimeZone: "UTC", Reason: "launch freeze",
			Dates: &v1alpha1.DateRange{From: now.Add(-time.Hour).Format("2006-01-02T15:04"), To: end.Format("2006-01-02T15:04")}}}
	})
	d := deployment(ns, "web", "example.com/web:1.0", 1)
	err := dryRunCreate(context.Background(), d)
	if time.Now().Before(end) && (!apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "launch")) {
		t.Fatalf("inside the freeze window: %v, want a denial naming it", err)
	}
	eventually(t, time.Until(end)+30*time.Second, "admitted after the freeze window", func(ctx context.Context) error {
		return dryRunCreate(ctx, d)
	})
	if time.Now().Before(end) {
		t.Errorf("admitted at %s, before the window ended at %s", time.Now().UTC(), end)
	}
}

func TestAdmissionExceptionExpires(t *testing.T) {
	ns, sel := admissionNamespace(t, nil)
	expires := time.Now().Add(20 * time.Second).Truncate(time.Second)
	applyPolicy(t, ns+"-owner", sel, v1alpha1.ModeEnforce, func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.RequiredLabels = []string{"owner"}
		s.Exceptions = []v1alpha1.PolicyException{{Namespace: ns, Reason: "migration in progress", Expires: metav1.NewTime(expires)}}
	})
	d := deployment(ns, "web", "example.com/web:1.0", 1)
	err := dryRunCreate(context.Background(), d)
	if time.Now().Before(expires) && err != nil {
		t.Fatalf("under an unexpired exception: %v", err)
	}
	eventually(t, time.Until(expires)+30*time.Second, "denied once the exception expired", func(ctx context.Context) error {
		err := dryRunCreate(ctx, d)
		if apierrors.IsInvalid(err) && strings.Contains(err.Error(), "owner") {
			return nil
		}
		return fmt.Errorf("create: %v", err)
	})
	if time.Now().Before(expires) {
		t.Errorf("denied at %s, before the exception expired at %s", time.Now(), expires)
	}
}

// servedCertificate returns the leaf certificate the webhook server presents.
func servedCertificate(ctx context.Context) (*x509.Certificate, error) {
	u, err := url.Parse(sluice.WebhookURL)
	if err != nil {
		return nil, err
	}
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // only reads the presented certificate
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

func TestAdmissionCertificateRotationFailsNothing(t *testing.T) {
	ns, _ := admissionNamespace(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var applied, failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			d := deployment(ns, fmt.Sprintf("web-%d", i%10), fmt.Sprintf("example.com/web:%d", i), 1)
			var err error
			if i < 10 {
				_, err = env.Client().AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
			} else {
				_, err = env.Client().AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
			}
			if ctx.Err() != nil {
				return
			}
			if err != nil && !apierrors.IsConflict(err) {
				failed.Add(1)
				errOnce.Do(func() { firstErr = err })
				continue
			}
			applied.Add(1)
		}
	}()

	secrets := env.Client().CoreV1().Secrets(sluiceNamespace)
	for round := range 3 {
		sec, err := secrets.Get(ctx, "sluice-webhook-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("read certificate Secret: %v", err)
		}
		old := certs.BundleFromSecretData(sec.Data)
		leaf, err := certs.ParseCertificates(old.Cert)
		if err != nil {
			t.Fatal(err)
		}
		// Re-issue the serving certificate under the same CA and names, as a
		// rotation does: a lookahead longer than what is left of the current
		// certificate (but shorter than the new one's validity) forces it.
		year := 365 * 24 * time.Hour
		next, err := certs.Issue(certs.IssueRequest{
			Existing: old, DNSNames: leaf[0].DNSNames, IPAddresses: leaf[0].IPAddresses,
			CertValidity: time.Duration(round+2) * year, CertLookahead: time.Duration(round+1)*year + year/2,
		}, time.Now())
		if err != nil {
			t.Fatalf("issue: %v", err)
		}
		nextLeaf, err := certs.ParseCertificates(next.Cert)
		if err != nil {
			t.Fatal(err)
		}
		sec.Data = next.SecretData()
		if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("rewrite certificate Secret: %v", err)
		}
		eventually(t, 30*time.Second, fmt.Sprintf("rotation %d served", round+1), func(ctx context.Context) error {
			cur, err := servedCertificate(ctx)
			if err != nil {
				return err
			}
			if cur.SerialNumber.Cmp(nextLeaf[0].SerialNumber) != 0 {
				return errors.New("still serving the previous certificate")
			}
			return nil
		})
		// Keep applying for a while on the new certificate.
		start := applied.Load()
		eventually(t, 30*time.Second, "Deployments applied after the rotation", func(context.Context) error {
			if applied.Load() < start+30 {
				return fmt.Errorf("%d applied since the rotation", applied.Load()-start)
			}
			return nil
		})
	}
	cancel()
	<-done
	if failed.Load() > 0 {
		t.Fatalf("%d of %d admissions failed during certificate rotation; first: %v", failed.Load(), applied.Load()+failed.Load(), firstErr)
	}
	t.Logf("%d Deployment writes admitted across 3 certificate rotations, none failed", applied.Load())
}
