package v1alpha1

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

func TestCRDs(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatalf("CRDs: %v", err)
	}
	type summary struct {
		Name, Kind string
		Scope      apiextensionsv1.ResourceScope
		Columns    []string
		Status     bool
	}
	var got []summary
	for _, c := range crds {
		if len(c.Spec.Versions) != 1 || c.Spec.Versions[0].Name != "v1alpha1" {
			t.Fatalf("%s: versions %+v, want only v1alpha1", c.Name, c.Spec.Versions)
		}
		v := c.Spec.Versions[0]
		s := summary{Name: c.Name, Kind: c.Spec.Names.Kind, Scope: c.Spec.Scope,
			Status: v.Subresources != nil && v.Subresources.Status != nil}
		for _, col := range v.AdditionalPrinterColumns {
			s.Columns = append(s.Columns, col.Name)
		}
		got = append(got, s)
	}
	want := []summary{
		{Name: "deploymentpolicies.sluice.dev", Kind: "DeploymentPolicy", Scope: apiextensionsv1.ClusterScoped,
			Columns: []string{"Mode", "Compiled", "Age"}, Status: true},
		{Name: "rollouts.sluice.dev", Kind: "Rollout", Scope: apiextensionsv1.NamespaceScoped,
			Columns: []string{"Phase", "Weight", "Step", "Stable", "Canary", "Age"}, Status: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CRDs (-want +got):\n%s", diff)
	}
}

// TestCRDSchemaCoversTypes checks that the generated schema knows the fields
// the policy engine reads, so a stale CRD shows up here.
func TestCRDSchemaCoversTypes(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatalf("CRDs: %v", err)
	}
	schema := crds[0].Spec.Versions[0].Schema.OpenAPIV3Schema
	walk := func(path ...string) {
		t.Helper()
		s := schema
		for _, p := range path {
			next, ok := s.Properties[p]
			if !ok && s.Items != nil && s.Items.Schema != nil {
				next, ok = s.Items.Schema.Properties[p]
			}
			if !ok {
				t.Fatalf("schema has no %v", path)
			}
			s = &next
		}
	}
	walk("spec", "rules", "cel", "expression")
	walk("spec", "rules", "freezeWindows", "weekly", "from", "day")
	walk("spec", "rules", "rolloutBounds", "maxFirstStep")
	walk("spec", "exceptions", "expires")
	walk("spec", "rolloutDefaults", "analysis", "queries", "threshold")
	walk("status", "violations", "count")
}

func TestSchemeRoundTrip(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := AddToScheme(scheme); err != nil {
		t.Fatalf("AddToScheme: %v", err)
	}
	for _, kind := range []string{"DeploymentPolicy", "DeploymentPolicyList", "Rollout", "RolloutList"} {
		if !scheme.Recognizes(SchemeGroupVersion.WithKind(kind)) {
			t.Errorf("scheme does not recognise %s", kind)
		}
	}
	now := metav1.NewTime(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	ro := &Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: "shop"},
		Spec: RolloutSpec{
			Delivery: DefaultDelivery(),
			Promote:  &RolloutAction{Revision: "abc123", RequestedAt: now, Reason: "looks good"},
		},
		Status: RolloutStatus{
			Phase: PhaseProgressing, CurrentWeight: 250, CurrentWeightPercent: BasisPoints(250).String(),
			Analysis: []AnalysisDecision{{Metric: "error-rate", Value: "0.001", Threshold: "0.01",
				Samples: 1200, Verdict: VerdictPass, Time: now}},
		},
	}
	raw, err := yaml.Marshal(ro)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	back := &Rollout{}
	if err := yaml.UnmarshalStrict(raw, back); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if diff := cmp.Diff(ro, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	cp := ro.DeepCopy()
	cp.Spec.Delivery.Steps[0] = 1
	cp.Spec.Delivery.Analysis.MinSamples = 1
	if ro.Spec.Delivery.Steps[0] == 1 || ro.Spec.Delivery.Analysis.MinSamples == 1 {
		t.Error("DeepCopy shares memory with the original")
	}
}
