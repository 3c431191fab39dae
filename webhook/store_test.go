package webhook

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func storePolicy(name, uid string, gen int64, mod func(*v1alpha1.DeploymentPolicySpec)) *v1alpha1.DeploymentPolicy {
	p := &v1alpha1.DeploymentPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, UID: typesUID(uid), Generation: gen},
		Spec: v1alpha1.DeploymentPolicySpec{Mode: v1alpha1.ModeEnforce}}
	if mod != nil {
		mod(&p.Spec)
	}
	return p
}

func typesUID(s string) types.UID { return types.UID(s) }

func TestPolicyStoreCompilesOncePerGeneration(t *testing.T) {
	s := NewPolicyStore()
	s.Upsert(storePolicy("b", "u-b", 1, nil))
	s.Upsert(storePolicy("a", "u-a", 1, nil))
	first := s.Snapshot()
	if got := names(first); !cmp.Equal(got, []string{"a", "b"}) {
		t.Fatalf("names %v, want [a b] in name order", got)
	}
	// A status-only update (same generation) keeps the compiled policy.
	s.Upsert(storePolicy("a", "u-a", 1, func(sp *v1alpha1.DeploymentPolicySpec) { sp.Mode = v1alpha1.ModeAudit }))
	if s.Snapshot() != first {
		t.Error("same UID and generation recompiled and republished")
	}
	s.Upsert(storePolicy("a", "u-a", 2, func(sp *v1alpha1.DeploymentPolicySpec) { sp.Mode = v1alpha1.ModeAudit }))
	second := s.Snapshot()
	if second == first || second.Compiled[0].Mode() != v1alpha1.ModeAudit || second.Compiled[1] != first.Compiled[1] {
		t.Error("a new generation was not recompiled alone")
	}
	// The old snapshot is immutable.
	if first.Compiled[0].Mode() != v1alpha1.ModeEnforce {
		t.Error("an old snapshot changed")
	}
	handler := s.eventHandler()
	handler.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "b", Obj: storePolicy("b", "u-b", 1, nil)})
	if got := names(s.Snapshot()); !cmp.Equal(got, []string{"a"}) {
		t.Errorf("after delete: %v, want [a]", got)
	}
	handler.OnAdd(storePolicy("c", "u-c", 1, nil), false)
	handler.OnUpdate(nil, storePolicy("c", "u-c", 2, nil))
	handler.OnDelete(storePolicy("a", "u-a", 2, nil))
	if got := names(s.Snapshot()); !cmp.Equal(got, []string{"c"}) {
		t.Errorf("after events: %v, want [c]", got)
	}
}

func names(snap *PolicySnapshot) []string {
	var out []string
	for _, c := range snap.Compiled {
		out = append(out, c.Name())
	}
	return out
}

func TestInjectLabelsAndUnapplied(t *testing.T) {
	s := NewPolicyStore()
	s.Upsert(storePolicy("b-team", "u1", 1, func(sp *v1alpha1.DeploymentPolicySpec) {
		sp.InjectLabels = map[string]string{"cost-center": "b", "tier": "web"}
	}))
	s.Upsert(storePolicy("a-platform", "u2", 1, func(sp *v1alpha1.DeploymentPolicySpec) {
		sp.InjectLabels = map[string]string{"cost-center": "a"}
	}))
	s.Upsert(storePolicy("dev-only", "u3", 1, func(sp *v1alpha1.DeploymentPolicySpec) {
		sp.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}
		sp.InjectLabels = map[string]string{"dev": "true"}
	}))
	s.Upsert(storePolicy("broken-dev", "u4", 1, func(sp *v1alpha1.DeploymentPolicySpec) {
		sp.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}
		sp.Rules.CEL = []v1alpha1.CELRule{{Name: "x", Expression: "1 +", Message: "m"}}
		sp.InjectLabels = map[string]string{"never": "injected"}
	}))
	s.Upsert(storePolicy("broken-selector", "u5", 1, func(sp *v1alpha1.DeploymentPolicySpec) {
		sp.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: "Near"}}}
	}))
	snap := s.Snapshot()
	prod := map[string]string{"env": "prod"}
	if diff := cmp.Diff(map[string]string{"cost-center": "a", "tier": "web"}, snap.InjectLabels(prod)); diff != "" {
		t.Errorf("prod labels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"cost-center": "a", "tier": "web", "dev": "true"}, snap.InjectLabels(map[string]string{"env": "dev"})); diff != "" {
		t.Errorf("dev labels (-want +got):\n%s", diff)
	}
	// A selector that cannot be read warns everywhere and denies nowhere;
	// a broken Enforce policy denies where it selects, nowhere else.
	deny, warn := snap.Unapplied(prod)
	if len(deny) != 0 || len(warn) != 1 || !containsAll(warn[0], "broken-selector", "not applied") {
		t.Errorf("prod: deny %v, warnings %q", deny, warn)
	}
	deny, warn = snap.Unapplied(map[string]string{"env": "dev"})
	if len(deny) != 1 || !containsAll(deny[0].Error(), "broken-dev", "Enforce", "does not compile", "denies") || len(warn) != 1 {
		t.Errorf("dev: deny %v, warnings %q; want broken-dev to deny and broken-selector to warn", deny, warn)
	}
}

// TestBrokenPolicyFailsClosedOnlyInEnforce: a policy that does not compile
// denies what it selects in Enforce mode, and only warns in Warn or Audit.
func TestBrokenPolicyFailsClosedOnlyInEnforce(t *testing.T) {
	for mode, denies := range map[v1alpha1.PolicyMode]bool{"": true, v1alpha1.ModeEnforce: true, v1alpha1.ModeWarn: false, v1alpha1.ModeAudit: false} {
		s := NewPolicyStore()
		s.Upsert(storePolicy("broken", "u1", 1, func(sp *v1alpha1.DeploymentPolicySpec) {
			sp.Mode = mode
			sp.Rules.CEL = []v1alpha1.CELRule{{Name: "x", Expression: "object.spec.", Message: "m"}}
		}))
		deny, warn := s.Snapshot().Unapplied(map[string]string{"env": "prod"})
		if got := len(deny) == 1; got != denies || len(deny)+len(warn) != 1 {
			t.Errorf("mode %q: deny %v, warnings %q; want denial %v", mode, deny, warn, denies)
		}
	}
}

// TestInjectLabelsForFollowsNamespaceVersions checks the memo: a namespace
// relabelled (a new resourceVersion) gets the labels of its new selection,
// and a new snapshot forgets the old answers.
func TestInjectLabelsForFollowsNamespaceVersions(t *testing.T) {
	s := NewPolicyStore()
	s.Upsert(storePolicy("dev-only", "u1", 1, func(sp *v1alpha1.DeploymentPolicySpec) {
		sp.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}
		sp.InjectLabels = map[string]string{"dev": "true"}
	}))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", ResourceVersion: "1", Labels: map[string]string{"env": "prod"}}}
	snap := s.Snapshot()
	if got := snap.InjectLabelsFor(ns); len(got) != 0 {
		t.Fatalf("prod namespace gets %v", got)
	}
	if got := snap.InjectLabelsFor(ns); len(got) != 0 {
		t.Fatalf("prod namespace, asked again, gets %v", got)
	}
	relabelled := ns.DeepCopy()
	relabelled.ResourceVersion, relabelled.Labels["env"] = "2", "dev"
	if got := snap.InjectLabelsFor(relabelled); got["dev"] != "true" {
		t.Fatalf("relabelled namespace gets %v, want dev=true", got)
	}
	s.Upsert(storePolicy("dev-only", "u1", 2, func(sp *v1alpha1.DeploymentPolicySpec) {
		sp.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "dev"}}
		sp.InjectLabels = map[string]string{"dev": "yes"}
	}))
	if got := s.Snapshot().InjectLabelsFor(relabelled); got["dev"] != "yes" {
		t.Fatalf("after the policy changed: %v, want dev=yes", got)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
