package webhook

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/policies"
)

func TestStatusWriter(t *testing.T) {
	good := storePolicy("good", "u-good", 3, func(s *v1alpha1.DeploymentPolicySpec) { s.Rules.RequiredLabels = []string{"owner"} })
	bad := storePolicy("bad", "u-bad", 1, func(s *v1alpha1.DeploymentPolicySpec) {
		s.Rules.CEL = []v1alpha1.CELRule{{Name: "x", Expression: "1 +", Message: "m"}}
	})
	f := newFixture(t, shopNamespace(), good.DeepCopy(), bad.DeepCopy())
	f.w.store.Upsert(good)
	f.w.store.Upsert(bad)

	conflicts := 1
	c := interceptorClient(f, func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
		if obj.GetName() == "good" && conflicts > 0 {
			conflicts--
			return apierrors.NewConflict(schema.GroupResource{Group: "sluice.dev", Resource: "deploymentpolicies"}, "good", nil)
		}
		return c.SubResource(sub).Update(ctx, obj, opts...)
	})
	w := &statusWriter{store: f.w.store, audit: f.h.audit, client: c, now: func() time.Time { return fixtureNow }, synced: f.w.synced.Load}

	f.h.audit.record(testDeployment(), resultWith("good", 2))
	w.flush(t.Context(), logr.Discard()) // good conflicts: its counts wait for the next batch
	f.h.audit.record(testDeployment(), resultWith("good", 1))
	w.flush(t.Context(), logr.Discard())

	if conflicts != 0 {
		t.Fatal("the conflict path was not exercised")
	}
	got := &v1alpha1.DeploymentPolicy{}
	if err := f.client.Get(t.Context(), client.ObjectKey{Name: "good"}, got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]v1alpha1.ViolationCount{{Rule: "requiredLabels", Mode: v1alpha1.ModeEnforce, Count: 3}}, got.Status.Violations); diff != "" {
		t.Errorf("good violations (-want +got):\n%s", diff)
	}
	cond := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionCompiled)
	if got.Status.ObservedGeneration != 3 || cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != 3 {
		t.Errorf("good status %+v, want Compiled=True at generation 3", got.Status)
	}
	if err := f.client.Get(t.Context(), client.ObjectKey{Name: "bad"}, got); err != nil {
		t.Fatal(err)
	}
	cond = meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionCompiled)
	if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != ReasonCompileFailed || !containsAll(cond.Message, "spec.rules.cel[0].expression") {
		t.Errorf("bad Compiled condition %+v, want False with the CEL error", cond)
	}

	// Nothing new: no write at all.
	rv := got.ResourceVersion
	w.flush(t.Context(), logr.Discard())
	if err := f.client.Get(t.Context(), client.ObjectKey{Name: "bad"}, got); err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != rv {
		t.Error("an unchanged status was written again")
	}
}

// resultWith is an Evaluate result with n violations of rule requiredLabels
// of policy.
func resultWith(policy string, n int) policies.Result {
	var r policies.Result
	for range n {
		r.Violations = append(r.Violations, policies.Violation{Policy: policy, Rule: "requiredLabels", Mode: v1alpha1.ModeEnforce})
	}
	return r
}

func interceptorClient(f *fixture, update func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error) client.Client {
	return interceptor.NewClient(f.client, interceptor.Funcs{SubResourceUpdate: update})
}
