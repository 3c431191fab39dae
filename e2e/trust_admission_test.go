package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/webhook"
)

// These tests attack admission as a tenant of the cluster would: through
// the real kube-apiserver, as users it authenticates (by impersonation, with
// RBAC the test grants), against the real controller.

// Users of the attack tests. Neither is Sluice's own identity.
const (
	tenantUser = "mallory@example.com" // an ordinary developer of the namespace
	sreUser    = "alice@example.com"   // on call, in the group policies let bypass
	sreGroup   = "sre-oncall"
)

// tenantClient returns a clientset acting as user (in groups) and grants
// that user what a team's developer has in ns: Deployments, and reading
// Rollouts (so a Rollout's UID is no secret).
func tenantClient(t *testing.T, ns, user string, groups ...string) (kubernetes.Interface, *warningRecorder) {
	t.Helper()
	ctx := context.Background()
	name := "developer-" + strings.NewReplacer("@", "-", ".", "-").Replace(user)
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
			{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"rollouts"}, Verbs: []string{"get", "list", "watch"}},
		},
	}
	if _, err := env.Client().RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Role: %v", err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if _, err := env.Client().RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create RoleBinding: %v", err)
	}
	cfg := rest.CopyConfig(env.RESTConfig())
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	rec := &warningRecorder{}
	cfg.WarningHandler = rec
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// RBAC caches are updated asynchronously: wait until the grant works.
	eventually(t, 30*time.Second, "RBAC grant for "+user, func(ctx context.Context) error {
		_, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		return err
	})
	return cs, rec
}

// spoofedCanary is a Deployment that claims to be Rollout ro's canary: the
// name and controller owner reference Sluice gives its canaries.
func spoofedCanary(ns string, ro *v1alpha1.Rollout, image string) *appsv1.Deployment {
	d := deployment(ns, ro.Name+"-canary", image, 1)
	d.Annotations = map[string]string{v1alpha1.AnnotationService: ro.Name}
	d.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Rollout",
		Name: ro.Name, UID: ro.UID, Controller: ptr.To(true),
	}}
	return d
}

func TestTrustSpoofedCanaryIsJudgedAndSluicesCanaryIsAdmitted(t *testing.T) {
	ctx := context.Background()
	ns, sel := admissionNamespace(t, nil)
	applyPolicy(t, ns+"-registries", sel, v1alpha1.ModeEnforce, func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.AllowedRegistries = []string{"registry.example.com/"}
		// Sluice's canary breaks this rule: that it is created at all shows
		// that it is exempt, and a tenant's copy that it is not.
		s.Rules.CEL = []v1alpha1.CELRule{{Name: "no-canaries-by-hand", Expression: "!object.metadata.name.endsWith('-canary')",
			Message: "canaries are Sluice's to create"}}
	})
	web := deployment(ns, "web", "registry.example.com/web:1.0", 1)
	web.Annotations = map[string]string{v1alpha1.AnnotationRollout: "canary", v1alpha1.AnnotationStepInterval: "1h"}
	if _, err := env.Client().AppsV1().Deployments(ns).Create(ctx, web, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create web: %v", err)
	}
	c := sluiceClient(t)
	ro := &v1alpha1.Rollout{}
	eventually(t, 60*time.Second, "Rollout web with a stable revision", func(ctx context.Context) error {
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, ro); err != nil {
			return err
		}
		if ro.Status.StableRevision == "" {
			return fmt.Errorf("status %+v", ro.Status)
		}
		return nil
	})

	mallory, _ := tenantClient(t, ns, tenantUser, "developers")
	// The attack of the issue: a canary by name and owner reference (with
	// the Rollout's real UID), from a registry the Enforce policy forbids.
	_, err := mallory.AppsV1().Deployments(ns).Create(ctx, spoofedCanary(ns, ro, "evil.example.com/miner:1"), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.template.spec.containers[0].image") ||
		!strings.Contains(err.Error(), "rule allowedRegistries") {
		t.Fatalf("spoofed canary from a forbidden registry: %v, want denied by the registry rule", err)
	}
	// A compliant one fails the rule that Sluice's own canary is exempt from.
	_, err = mallory.AppsV1().Deployments(ns).Create(ctx, spoofedCanary(ns, ro, "registry.example.com/web:1.0"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "rule no-canaries-by-hand") {
		t.Fatalf("compliant spoofed canary: %v, want denied by the rule Sluice's canary is exempt from", err)
	}

	// Sluice's own canary of a new, compliant revision is created (exempt
	// from no-canaries-by-hand).
	eventually(t, 30*time.Second, "update web to 2.0", func(ctx context.Context) error {
		cur, err := env.Client().AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.Template.Spec.Containers[0].Image = "registry.example.com/web:2.0"
		_, err = env.Client().AppsV1().Deployments(ns).Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	var canary *appsv1.Deployment
	eventually(t, 60*time.Second, "Sluice's canary web-canary", func(ctx context.Context) error {
		canary, err = env.Client().AppsV1().Deployments(ns).Get(ctx, "web-canary", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if canary.Labels[v1alpha1.LabelTrack] != v1alpha1.TrackCanary {
			return fmt.Errorf("labels %v", canary.Labels)
		}
		return nil
	})

	// A tenant's edit of Sluice's canary is judged like any Deployment.
	eventually(t, 30*time.Second, "tenant edits the canary", func(ctx context.Context) error {
		cur, err := mallory.AppsV1().Deployments(ns).Get(ctx, "web-canary", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.Template.Spec.Containers[0].Image = "evil.example.com/miner:1"
		_, err = mallory.AppsV1().Deployments(ns).Update(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsInvalid(err) && strings.Contains(err.Error(), "rule allowedRegistries") {
			return nil
		}
		if apierrors.IsConflict(err) {
			return err // the rollout controller wrote it meanwhile: again
		}
		t.Fatalf("tenant's edit of Sluice's canary to a forbidden registry: %v, want denied", err)
		return nil
	})
}

// bypassDeployment breaks the registry rule and asks for an emergency
// bypass until expires.
func bypassDeployment(ns, name string, expires time.Time) *appsv1.Deployment {
	d := deployment(ns, name, "hotfix.example.com/web:1.0-hotfix", 1)
	d.Annotations = map[string]string{
		v1alpha1.AnnotationEmergencyBypass:        "INC-4711 checkout down, registry mirror unavailable",
		v1alpha1.AnnotationEmergencyBypassExpires: expires.UTC().Format(time.RFC3339),
	}
	return d
}

func TestTrustEmergencyBypass(t *testing.T) {
	ctx := context.Background()
	ns, sel := admissionNamespace(t, nil)
	policy := ns + "-registries"
	applyPolicy(t, policy, sel, v1alpha1.ModeEnforce, func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.AllowedRegistries = []string{"registry.example.com/"}
		s.EmergencyBypass = &v1alpha1.EmergencyBypass{Groups: []string{sreGroup}, MaxDuration: &metav1.Duration{Duration: 4 * time.Hour}}
	})
	mallory, _ := tenantClient(t, ns, tenantUser, "developers")
	alice, warnings := tenantClient(t, ns, sreUser, sreGroup)

	// A user outside the allowed groups.
	_, err := mallory.AppsV1().Deployments(ns).Create(ctx, bypassDeployment(ns, "web", time.Now().Add(time.Hour)), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), fmt.Sprintf("user %q may not bypass policy %q", tenantUser, policy)) ||
		!strings.Contains(err.Error(), "rule allowedRegistries") {
		t.Fatalf("bypass by a user outside the allowed groups: %v, want denied, naming the user and the violation", err)
	}
	// An expired bypass, by a member.
	_, err = alice.AppsV1().Deployments(ns).Create(ctx, bypassDeployment(ns, "web", time.Now().Add(-time.Minute)), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "metadata.annotations[sluice.dev/emergency-bypass-expires]") ||
		!strings.Contains(err.Error(), "expired at") {
		t.Fatalf("expired bypass: %v, want denied at the expiry annotation", err)
	}
	// One longer than the policy allows.
	_, err = alice.AppsV1().Deployments(ns).Create(ctx, bypassDeployment(ns, "web", time.Now().Add(48*time.Hour)), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "allows a bypass of at most 4h0m0s") {
		t.Fatalf("bypass beyond maxDuration: %v, want denied", err)
	}

	before, err := metricWith(ctx, sluice.MetricsURL, webhook.MetricBypasses, `policy="`+policy+`"`)
	if err != nil {
		t.Fatal(err)
	}
	// A member of the group, in time: admitted, warned, recorded.
	if _, err := alice.AppsV1().Deployments(ns).Create(ctx, bypassDeployment(ns, "web", time.Now().Add(time.Hour)), metav1.CreateOptions{}); err != nil {
		t.Fatalf("allowed bypass: %v", err)
	}
	if w := strings.Join(warnings.all(), "\n"); !strings.Contains(w, fmt.Sprintf("by user %q", sreUser)) || !strings.Contains(w, "INC-4711") {
		t.Errorf("warnings %q lack the bypass and its user", warnings.all())
	}
	eventually(t, 30*time.Second, "EmergencyBypass Event naming the user", func(ctx context.Context) error {
		evs, err := env.Client().EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == webhook.ReasonEmergencyBypass && e.Regarding.Name == "web" &&
				strings.Contains(e.Note, fmt.Sprintf("user %q", sreUser)) && strings.Contains(e.Note, "INC-4711") {
				return nil
			}
		}
		return fmt.Errorf("%d events, none EmergencyBypass for web naming %s", len(evs.Items), sreUser)
	})
	after, err := metricWith(ctx, sluice.MetricsURL, webhook.MetricBypasses, `policy="`+policy+`"`)
	if err != nil {
		t.Fatal(err)
	}
	if after != before+1 {
		t.Errorf("%s{policy=%q} went from %v to %v, want +1", webhook.MetricBypasses, policy, before, after)
	}

	// kube-apiserver writes the webhook's audit annotations to its audit
	// log, which the local cluster does not keep: ask the webhook itself,
	// as kube-apiserver does, for the answer it gives.
	resp := reviewAsAPIServer(t, bypassDeployment(ns, "web2", time.Now().Add(time.Hour)),
		authenticationv1.UserInfo{Username: sreUser, Groups: []string{sreGroup, "system:authenticated"}})
	audit := resp.AuditAnnotations["emergency-bypass"]
	if !resp.Allowed || !strings.Contains(audit, fmt.Sprintf("by user %q", sreUser)) || !strings.Contains(audit, policy) {
		t.Errorf("answer allowed=%v auditAnnotations=%v, want allowed with the user and policy", resp.Allowed, resp.AuditAnnotations)
	}
}

// reviewAsAPIServer sends the validating webhook a dry-run CREATE of d by
// user, over TLS as kube-apiserver does, and returns the answer.
func reviewAsAPIServer(t *testing.T, d *appsv1.Deployment, user authenticationv1.UserInfo) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "e2e-bypass", Kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
			Resource:  metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
			Namespace: d.Namespace, Name: d.Name, Operation: admissionv1.Create,
			UserInfo: user, Object: runtime.RawExtension{Raw: raw}, DryRun: ptr.To(true),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the test reads the answer, not the server's identity
	}}
	resp, err := hc.Post(sluice.WebhookURL+webhook.PathValidateDeployment, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("call the webhook: %v", err)
	}
	defer resp.Body.Close()
	out := admissionv1.AdmissionReview{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil {
		t.Fatalf("decode the answer: %v (%+v)", err, out)
	}
	return out.Response
}

// metricWith adds up the samples of a metric family whose line contains
// match (e.g. `policy="p"`; "" for all) at url, scraped with the
// credentials registered for url, if any (metricsGet).
func metricWith(ctx context.Context, url, family, match string) (float64, error) {
	resp, err := metricsGet(ctx, url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// A failed scrape (a collector sending one series twice fails
		// them all) must not read as zero.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return 0, fmt.Errorf("scrape %s: %s: %s", url, resp.Status, body)
	}
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !(strings.HasPrefix(line, family+"{") || strings.HasPrefix(line, family+" ")) || !strings.Contains(line, match) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

func TestTrustExceptionByNameNeedsNamespace(t *testing.T) {
	c := sluiceClient(t)
	for name, ex := range map[string]v1alpha1.PolicyException{
		"by-name":     {Name: "web"},
		"by-selector": {Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	} {
		ex.Expires, ex.Reason = metav1.NewTime(time.Now().Add(time.Hour)), "migration"
		p := &v1alpha1.DeploymentPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unscoped-%s-%d", name, time.Now().UnixNano())},
			Spec: v1alpha1.DeploymentPolicySpec{Mode: v1alpha1.ModeEnforce, Rules: v1alpha1.PolicyRules{RequiredLabels: []string{"owner"}},
				Exceptions: []v1alpha1.PolicyException{ex}},
		}
		err := c.Create(context.Background(), p)
		if err == nil {
			if derr := c.Delete(context.Background(), p); derr != nil {
				t.Errorf("delete: %v", derr)
			}
		}
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "namespace") {
			t.Errorf("%s: an exception without a namespace: %v, want refused", name, err)
		}
	}
}
