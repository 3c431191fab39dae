package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// fixtureNow is the fixed instant of handler tests: a Wednesday.
var fixtureNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// fixture serves the three handlers over HTTP exactly as the manager's
// webhook server does, backed by a fake cache and a real policy store.
type fixture struct {
	w        *Webhooks
	h        *handlers
	client   client.WithWatch
	recorder *events.FakeRecorder
	reg      *prometheus.Registry
	now      time.Time
	routes   map[string]http.Handler
	// user makes the requests admit sends; developer unless a test says.
	user authenticationv1.UserInfo
}

// Users of handler tests: Sluice's own identity and an ordinary developer.
var (
	sluiceUser = authenticationv1.UserInfo{Username: "system:serviceaccount:sluice-system:sluice",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:sluice-system", "system:authenticated"}}
	developer = authenticationv1.UserInfo{Username: "bob@example.com", Groups: []string{"developers", "system:authenticated"}}
	sre       = authenticationv1.UserInfo{Username: "alice@example.com", Groups: []string{"sre", "system:authenticated"}}
)

func testScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func shopNamespace() *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{
		corev1.LabelMetadataName: "shop", v1alpha1.LabelTeam: "payments", "env": "prod",
	}}}
}

func newFixture(t testing.TB, objs ...client.Object) *fixture {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).
		WithStatusSubresource(&v1alpha1.DeploymentPolicy{}).Build()
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{client: c, recorder: events.NewFakeRecorder(100), reg: reg, now: fixtureNow, user: developer}
	f.w = &Webhooks{store: NewPolicyStore()}
	f.w.synced.Store(true)
	f.h = &handlers{
		store:         f.w.store,
		reader:        c,
		now:           func() time.Time { return f.now },
		metrics:       m,
		audit:         newAuditor(f.recorder),
		ownNamespace:  "sluice-system",
		self:          sluiceUser.Username,
		namespaceWait: 50 * time.Millisecond,
	}
	// Tests must see panics, not recovered 500s.
	mutate := f.w.reviewHandler(f.h.mutateDeployment, m, logr.Discard())
	mutate.recoverPanic = false
	validate := f.w.reviewHandler(f.h.validateDeployment, m, logr.Discard())
	validate.recoverPanic = false
	f.routes = map[string]http.Handler{
		PathMutateDeployment:         mutate,
		PathValidateDeployment:       validate,
		PathValidateDeploymentPolicy: f.w.webhook(f.h.instrument(kindDeploymentPolicy, f.h.validatePolicy)).WithRecoverPanic(false),
	}
	return f
}

// policy adds a DeploymentPolicy to the store.
func (f *fixture) policy(t testing.TB, name string, mode v1alpha1.PolicyMode, mod func(*v1alpha1.DeploymentPolicySpec)) *v1alpha1.DeploymentPolicy {
	t.Helper()
	p := &v1alpha1.DeploymentPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Generation: 1},
		Spec:       v1alpha1.DeploymentPolicySpec{Mode: mode},
	}
	if mod != nil {
		mod(&p.Spec)
	}
	f.w.store.Upsert(p)
	return p
}

// serve posts body to path and decodes the AdmissionReview answer.
func (f *fixture) serve(t testing.TB, path, contentType string, body []byte) (int, *admissionv1.AdmissionResponse) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	f.routes[path].ServeHTTP(rec, req)
	review := &admissionv1.AdmissionReview{}
	if err := json.Unmarshal(rec.Body.Bytes(), review); err != nil {
		t.Fatalf("decode answer %q: %v", rec.Body.String(), err)
	}
	if review.Response == nil {
		t.Fatalf("answer without response: %s", rec.Body.String())
	}
	return rec.Code, review.Response
}

// admit sends one Deployment admission request to path.
func (f *fixture) admit(t testing.TB, path string, op admissionv1.Operation, d, old *appsv1.Deployment, dryRun bool) *admissionv1.AdmissionResponse {
	t.Helper()
	req := admissionv1.AdmissionRequest{
		UID:       "req-1",
		Kind:      metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
		Resource:  metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
		Name:      d.Name,
		Namespace: d.Namespace,
		Operation: op,
		Object:    runtime.RawExtension{Raw: mustJSON(t, d)},
		DryRun:    &dryRun,
		UserInfo:  f.user,
	}
	if old != nil {
		req.OldObject = runtime.RawExtension{Raw: mustJSON(t, old)}
	}
	_, resp := f.serve(t, path, "application/json", reviewBody(t, req))
	if resp.UID != "req-1" {
		t.Errorf("response UID %q, want req-1", resp.UID)
	}
	return resp
}

func reviewBody(t testing.TB, req admissionv1.AdmissionRequest) []byte {
	return mustJSON(t, admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req,
	})
}

// events drains the recorded Events.
func (f *fixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}
