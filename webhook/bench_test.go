package webhook

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// BenchmarkHandlers measures the CPU cost of one admission request through
// the HTTP handler (decode, evaluate, encode) with the request body built
// once, in process and without TLS,
// with 1, 10 and 50 policies selecting the namespace. The e2e benchmarks
// measure the same over TLS and HTTP/2 against the real controller.
func BenchmarkHandlers(b *testing.B) {
	d := testDeployment(optedIn, withLabels("owner", "payments"))
	c := &d.Spec.Template.Spec.Containers[0]
	c.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	for _, n := range []int{1, 10, 50} {
		f := newFixture(b, shopNamespace())
		// As in the controller, Namespaces come from the informer cache
		// without a deep copy (the fake client would copy through JSON).
		ns := shopNamespace()
		ns.ResourceVersion = "1"
		f.h.reader = namespaceCache{Reader: f.client, ns: ns}
		for i := range n {
			f.policy(b, fmt.Sprintf("p%02d", i), []v1alpha1.PolicyMode{v1alpha1.ModeEnforce, v1alpha1.ModeWarn, v1alpha1.ModeAudit}[i%3], func(s *v1alpha1.DeploymentPolicySpec) {
				s.Rules.RequiredLabels = []string{"owner"}
				s.Rules.DisallowLatestTag = true
				s.Rules.AllowedRegistries = []string{"registry.example.com/"}
				s.Rules.RequireResources = true
				s.Rules.CEL = []v1alpha1.CELRule{{Name: "no-debug", Expression: fmt.Sprintf("object.spec.template.spec.containers.all(c, c.name != 'debug-%d')", i), Message: "m"}}
				s.InjectLabels = map[string]string{fmt.Sprintf("policy-%02d", i): "true"}
			})
		}
		type bench struct {
			path, name string
			d          *appsv1.Deployment
		}
		runs := []bench{
			{PathMutateDeployment, fmt.Sprintf("policies=%d", n), d},
			{PathValidateDeployment, fmt.Sprintf("policies=%d", n), d},
		}
		if n == 50 {
			// What kube-apiserver sends for a Deployment applied with
			// kubectl: managed fields and the last-applied annotation,
			// which no rule here reads.
			runs = append(runs, bench{PathValidateDeployment, "policies=50/kubectl-applied", kubectlApplied(b, d)})
		}
		for _, run := range runs {
			path, d := run.path, run.d
			if resp := f.admit(b, path, admissionv1.Create, d, nil, true); !resp.Allowed {
				b.Fatalf("denied: %+v", resp.Result)
			}
			body := reviewBody(b, admissionv1.AdmissionRequest{
				UID:       "req-1",
				Kind:      metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
				Resource:  metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
				Name:      d.Name,
				Namespace: d.Namespace,
				Operation: admissionv1.Create,
				Object:    runtime.RawExtension{Raw: mustJSON(b, d)},
				DryRun:    ptr.To(true),
				// kube-apiserver always says who asks.
				UserInfo: authenticationv1.UserInfo{Username: "alice@example.com", UID: "8f3c2a", Groups: []string{"developers", "payments", "system:authenticated"}},
			})
			h := f.routes[path]
			b.Run(path[1:]+"/"+run.name, func(b *testing.B) {
				b.ReportAllocs()
				w := &discardWriter{header: http.Header{}}
				for b.Loop() {
					r, err := http.NewRequest(http.MethodPost, path, bytes.NewReader(body))
					if err != nil {
						b.Fatal(err)
					}
					r.Header.Set("Content-Type", "application/json")
					w.body = w.body[:0]
					h.ServeHTTP(w, r)
					if !bytes.Contains(w.body, []byte(`"allowed":true`)) {
						b.Fatalf("not allowed: %s", w.body)
					}
				}
			})
		}
	}
}

// discardWriter keeps the last answer for a cheap check, so that the
// benchmark measures the handler rather than a response recorder.
type discardWriter struct {
	header http.Header
	body   []byte
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) WriteHeader(int)     {}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.body = append(w.body, p...)
	return len(p), nil
}

// namespaceCache answers Gets of one Namespace as the informer cache does
// with deep copies disabled, and passes anything else on.
type namespaceCache struct {
	client.Reader
	ns *corev1.Namespace
}

func (c namespaceCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if ns, ok := obj.(*corev1.Namespace); ok && key.Name == c.ns.Name {
		*ns = *c.ns
		return nil
	}
	return c.Reader.Get(ctx, key, obj, opts...)
}

// kubectlApplied is d as kube-apiserver has it after `kubectl apply`: with
// the last-applied-configuration annotation and managed fields.
func kubectlApplied(b *testing.B, d *appsv1.Deployment) *appsv1.Deployment {
	b.Helper()
	out := d.DeepCopy()
	out.Annotations["kubectl.kubernetes.io/last-applied-configuration"] = string(mustJSON(b, d))
	fields := `{"f:metadata":{"f:annotations":{".":{},"f:sluice.dev/rollout":{}},"f:labels":{".":{},"f:app":{},"f:owner":{}}},` +
		`"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},` +
		`"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{},"f:resources":{".":{},` +
		`"f:limits":{".":{},"f:cpu":{},"f:memory":{}},"f:requests":{".":{},"f:cpu":{},"f:memory":{}}}}}}}}}`
	for _, m := range []string{"kubectl-client-side-apply", "kube-controller-manager", "sluice"} {
		out.ManagedFields = append(out.ManagedFields, metav1.ManagedFieldsEntry{
			Manager: m, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "apps/v1",
			FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)},
		})
	}
	return out
}
