package webhook

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"pgregory.net/rapid"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/policies"
)

// The mutating webhook merges injected labels from the store without
// running policies.Evaluate; this property pins that both agree on which
// policies select a namespace and which injected value wins, whatever the
// order the policies arrive in.
func TestInjectLabelsAgreeWithEvaluate(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		keys := rapid.SampledFrom([]string{"env", "tier", "team"})
		values := rapid.SampledFrom([]string{"a", "b"})
		n := rapid.IntRange(0, 6).Draw(t, "policies")
		var pols []*v1alpha1.DeploymentPolicy
		for i := range n {
			p := &v1alpha1.DeploymentPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", rapid.IntRange(0, 9).Draw(t, "name")), Generation: 1},
				Spec:       v1alpha1.DeploymentPolicySpec{Mode: v1alpha1.ModeAudit, InjectLabels: map[string]string{}},
			}
			p.UID = typesUID(fmt.Sprintf("u%d", i))
			if rapid.Bool().Draw(t, "selector") {
				p.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{keys.Draw(t, "sk"): values.Draw(t, "sv")}}
			}
			for range rapid.IntRange(0, 3).Draw(t, "labels") {
				p.Spec.InjectLabels["inject-"+keys.Draw(t, "ik")] = values.Draw(t, "iv")
			}
			pols = append(pols, p)
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{}}}
		for range rapid.IntRange(0, 3).Draw(t, "nslabels") {
			ns.Labels[keys.Draw(t, "nk")] = values.Draw(t, "nv")
		}

		s := NewPolicyStore()
		for _, i := range rapid.Permutation(indexes(len(pols))).Draw(t, "order") {
			s.Upsert(pols[i])
		}
		snap := s.Snapshot()
		got := snap.InjectLabels(ns.Labels)
		want := policies.Evaluate(snap.Compiled, policies.Input{Operation: admissionv1.Create, Deployment: testDeployment(), Namespace: ns}, fixtureNow).InjectLabels
		if len(got) == 0 && len(want) == 0 {
			return
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("store vs Evaluate (-Evaluate +store):\n%s", diff)
		}
	})
}

func indexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
