package dashboard

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// newTestServer serves two namespaces of team shop, of which the reader
// may see only "shop-web".
func newTestServer(t *testing.T) http.Handler {
	t.Helper()
	sch := testScheme(t)
	now := metav1.NewTime(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	ns := func(name string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.LabelTeam: "shop"}}}
	}
	ro := func(ns, name string) *v1alpha1.Rollout {
		return &v1alpha1.Rollout{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       v1alpha1.RolloutSpec{Delivery: v1alpha1.Delivery{Mode: v1alpha1.ModeCanary, Service: name, Steps: []v1alpha1.BasisPoints{2000, 5000}}},
			Status: v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseProgressing, StableRevision: "aaa", CanaryRevision: "bbb",
				CurrentWeight: 2000, StepStartedAt: &now, CanaryStartedAt: &now,
				Analysis: []v1alpha1.AnalysisDecision{
					{Metric: "critical-error-rate", Value: "0.2", Threshold: "0.05", Samples: 400, Verdict: v1alpha1.VerdictFail, Time: now},
					{Metric: "error-rate", Value: "0.2", Threshold: "0.01", Samples: 400, Verdict: v1alpha1.VerdictFail, Time: now},
					{Metric: "error-rate-vs-stable", Value: "0.19", Threshold: "0.005", Samples: 400, Verdict: v1alpha1.VerdictFail, Time: now},
				}},
		}
	}
	dep := func(ns, name, rev, image string) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{v1alpha1.LabelService: "x"}}}
		d.Spec.Template.Labels = map[string]string{v1alpha1.LabelRevision: rev}
		d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app", Image: image}}
		return d
	}
	stableRS := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop-web", Name: "checkout-1",
		Labels:          map[string]string{v1alpha1.LabelRevision: "aaa"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "checkout", UID: "u"}}}}
	stableRS.Spec.Template.Labels = map[string]string{v1alpha1.LabelRevision: "aaa"}
	stableRS.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app", Image: "example.com/checkout:v1"}}
	ev := &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "shop-web", Name: "e1"}, EventTime: metav1.NewMicroTime(now.Time),
		Regarding: corev1.ObjectReference{Kind: "Rollout", Name: "checkout"}, Reason: "CanaryStarted", Type: "Normal",
		Note: "started canary bbb (canary) against stable aaa", ReportingController: "sluice-rollout", ReportingInstance: "x", Action: "Rollout"}
	c := fake.NewClientBuilder().WithScheme(sch).WithObjects(
		ns("shop-web"), ns("shop-vault"),
		ro("shop-web", "checkout"), ro("shop-vault", "ledger-vault"),
		// Paused, the Deployment already holds the canary's template; the
		// stable version lives on in its ReplicaSet.
		dep("shop-web", "checkout", "bbb", "example.com/checkout:v2"), dep("shop-web", "checkout-canary", "bbb", "example.com/checkout:v2"),
		stableRS,
		ev,
	).Build()
	s, err := New(Options{Client: c, Access: AccessFunc(func(_ context.Context, ns string) (bool, error) {
		return ns == "shop-web", nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	return localOnly(s)
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:3100"+path, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Code, string(body)
}

func TestDataAPIShowsOnlyAllowedNamespaces(t *testing.T) {
	h := newTestServer(t)
	cases := map[string]struct {
		path     string
		code     int
		contains []string
	}{
		"teams":             {"/api/teams", 200, []string{`"shop"`, "shop-web"}},
		"team":              {"/api/teams/shop", 200, []string{"checkout", `"version":"v1"`, `"version":"v2"`, `"weight":"80%"`, `"weight":"20%"`, `"errorRate":"20%"`, `"errorRate":"1%"`, "in progress"}},
		"rollout":           {"/api/rollouts/shop-web/checkout", 200, []string{`"timeline":[{`, `"series":[{`, `"state":"current"`}},
		"hidden rollout":    {"/api/rollouts/shop-vault/ledger-vault", 403, nil},
		"hidden, not there": {"/api/rollouts/shop-vault/nothing", 403, nil},
		"unknown team":      {"/api/teams/vault", 403, nil},
		"missing rollout":   {"/api/rollouts/shop-web/nothing", 404, nil},
		"page":              {"/team/shop", 200, []string{"<main"}},
		"asset":             {"/static/app.js", 200, []string{"POLL_MS"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			code, body := get(t, h, c.path)
			if code != c.code {
				t.Fatalf("status %d, want %d: %s", code, c.code, body)
			}
			for _, w := range c.contains {
				if !strings.Contains(body, w) {
					t.Errorf("body lacks %s:\n%s", w, body)
				}
			}
			if strings.Contains(body, "shop-vault") || strings.Contains(body, "ledger") {
				t.Errorf("body names the hidden namespace:\n%s", body)
			}
			if strings.Contains(body, ":null") {
				t.Errorf("body has a null the pages would trip on:\n%s", body)
			}
		})
	}
}

func TestNonLoopbackHostRefused(t *testing.T) {
	h := newTestServer(t)
	req := httptest.NewRequest(http.MethodGet, "http://evil.example:3100/api/teams", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("status %d for Host evil.example, want 403", rec.Code)
	}
}

func TestDeliveries(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2026, 12, 3, 12, 0, s, 0, time.UTC) }
	events := []Event{
		{Time: at(0), Reason: "CanaryStarted", Message: "started canary aaa (canary) against stable s"},
		{Time: at(5), Reason: "CanaryStarted", Message: "started canary bbb (canary) against stable s"},
		{Time: at(5), Reason: "CanarySuperseded", Message: "revision bbb replaced canary aaa before it finished"},
		{Time: at(9), Reason: "RolledBack", Message: "rolled back canary bbb at 20%: error-rate failed"},
		{Time: at(20), Reason: "CanaryStarted", Message: "retried canary ccc (canary) against stable s"},
		{Time: at(50), Reason: "Promoted", Message: "revision ccc is stable"},
	}
	got := deliveries(events)
	want := []string{"ccc promoted 30s", "bbb rolled back 4s", "aaa superseded 5s"}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i, d := range got {
		if s := d.Revision + " " + d.Outcome + " " + d.Duration; s != want[i] {
			t.Errorf("delivery %d: %s, want %s", i, s, want[i])
		}
	}
	if got[2].Why != "revision bbb replaced canary aaa before it finished" {
		t.Errorf("superseded why %q", got[2].Why)
	}
}

func TestSteps(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	ro := func(mode v1alpha1.DeliveryMode, phase v1alpha1.RolloutPhase, index int32, w v1alpha1.BasisPoints) *v1alpha1.Rollout {
		return &v1alpha1.Rollout{
			Spec: v1alpha1.RolloutSpec{Delivery: v1alpha1.Delivery{Mode: mode, Steps: []v1alpha1.BasisPoints{1000, 2500, 5000}}},
			Status: v1alpha1.RolloutStatus{Phase: phase, CurrentStepIndex: index, CurrentWeight: w, StepStartedAt: &at,
				CanaryStartedAt: &at},
		}
	}
	timeline := []Event{{Time: at.Time, Reason: "WeightConfirmed", Message: "1 proxies carry canary weight 10%"}}
	cases := map[string]struct {
		ro   *v1alpha1.Rollout
		want string
	}{
		"second step":           {ro(v1alpha1.ModeCanary, v1alpha1.PhaseProgressing, 1, 2500), "done(acked) current(acked) pending"},
		"beta before a promote": {ro(v1alpha1.ModeBeta, v1alpha1.PhaseProgressing, 0, 0), "pending pending pending"},
		"promoting":             {ro(v1alpha1.ModeCanary, v1alpha1.PhasePromoting, 3, 5000), "done(acked) done done"},
		"rolled back":           {ro(v1alpha1.ModeCanary, v1alpha1.PhaseRolledBack, 0, 0), "pending pending pending"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, s := range steps(c.ro, timeline) {
				if s.AckedAt != nil {
					s.State += "(acked)"
				}
				got = append(got, s.State)
			}
			if strings.Join(got, " ") != c.want {
				t.Errorf("steps %v, want %s", got, c.want)
			}
		})
	}
}

// TestNamespacesGivenWhenListIsForbidden: a person who may not list
// Namespaces sees the namespaces given (the kubeconfig context's), still
// each checked.
func TestNamespacesGivenWhenListIsForbidden(t *testing.T) {
	sch := testScheme(t)
	c := fake.NewClientBuilder().WithScheme(sch).WithObjects(
		&v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "checkout"}},
	).WithInterceptorFuncs(interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*corev1.NamespaceList); ok {
				return apierrors.NewForbidden(corev1.Resource("namespaces"), "", errors.New("no"))
			}
			return c.List(ctx, list, opts...)
		},
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if _, ok := obj.(*corev1.Namespace); ok {
				return apierrors.NewForbidden(corev1.Resource("namespaces"), key.Name, errors.New("no"))
			}
			return c.Get(ctx, key, obj, opts...)
		},
	}).Build()
	s, err := New(Options{Client: c, Namespaces: []string{"web", "vault"}, Access: AccessFunc(func(_ context.Context, ns string) (bool, error) {
		return ns == "web", nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(t, localOnly(s), "/api/teams/"+NoTeam)
	if code != http.StatusOK || !strings.Contains(body, `"name":"checkout"`) || strings.Contains(body, "vault") {
		t.Errorf("status %d, body %s: want web's checkout and nothing of vault", code, body)
	}
}

// testScheme knows the built-in kinds and Sluice's.
func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	sch := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	return sch
}

// TestUnreadableNamespaceBreaksNoOther: a namespace whose Rollouts cannot
// be listed and one whose Deployments may not be listed are said on the
// team page; the rest shows.
func TestUnreadableNamespaceBreaksNoOther(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{v1alpha1.LabelTeam: "shop"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "b", Labels: map[string]string{v1alpha1.LabelTeam: "shop"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "c", Labels: map[string]string{v1alpha1.LabelTeam: "shop"}}},
		&v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "alpha"}},
		&v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "beta"}},
		&v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "c", Name: "gamma"}},
	).WithInterceptorFuncs(interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			ns := (&client.ListOptions{}).ApplyOptions(opts).Namespace
			switch list.(type) {
			case *v1alpha1.RolloutList:
				if ns == "b" {
					return errors.New("etcd is on fire")
				}
			case *appsv1.DeploymentList:
				if ns == "c" {
					return apierrors.NewForbidden(appsv1.Resource("deployments"), "", errors.New("no"))
				}
			}
			return c.List(ctx, list, opts...)
		},
	}).Build()
	s, err := New(Options{Client: c, Access: AccessFunc(func(context.Context, string) (bool, error) { return true, nil })})
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(t, localOnly(s), "/api/teams/shop")
	for _, want := range []string{`"name":"alpha"`, `"name":"gamma"`, "b: could not be read", "c: you may not list deployments"} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("status %d, body lacks %s:\n%s", code, want, body)
		}
	}
	if strings.Contains(body, "fire") {
		t.Errorf("the API server's error reached the page: %s", body)
	}
}
