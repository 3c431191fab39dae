package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/e2e/testkit"
)

// TestDashboardFollowsARolloutOnlyForThoseAllowed follows a delivery in a
// real browser: the team page shows the service's two versions and their
// live split while the canary runs, the rollout page shows the rollback of
// a failing version with its reason. A person who may get Rollouts only in
// the service's namespace, through their own `sluice dashboard`, sees it
// but nothing of another namespace of the same team: the data API refuses
// it, and no response the browser received names it.
func TestDashboardFollowsARolloutOnlyForThoseAllowed(t *testing.T) {
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,50", v1alpha1.AnnotationStepInterval: "10m"})
	hiddenNS, hiddenName := hiddenDelivery(t)
	viewer := "dash-viewer-" + f.Namespace
	grantRolloutReader(t, rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: viewer}, f.Namespace)
	admin := startDashboard(t, "admin", env.Kubeconfig())
	restricted := startDashboard(t, "viewer", impersonatingKubeconfig(t, viewer))
	startLoad(t, f.Namespace, "checkout", 50)

	f.Update("example.com/checkout:v2")
	f.Wait(2*time.Minute, "canary carries 20%", func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CurrentWeight != 2000 || ro.Status.StepStartedAt == nil {
			return fmt.Errorf("phase %s at %s", ro.Status.Phase, ro.Status.CurrentWeight)
		}
		return nil
	})
	b := newBrowser(t)
	b.open(t, admin+"/team/shop")
	b.waitText(t, time.Minute, "the team page shows both versions and the split", containsAll(
		f.Namespace, "checkout", "Progressing", "stable 80%", "canary 20%", "v1", "v2", hiddenName))
	b.screenshot(t, "dashboard-team")

	// A failing version replaces the canary and is rolled back.
	f.Update("example.com/checkout:v3", errorRate("0.5"))
	ro := f.Wait(3*time.Minute, "v3 rolled back", testkit.PhaseIs(v1alpha1.PhaseRolledBack))
	reason := ro.Status.FailedRevisions[len(ro.Status.FailedRevisions)-1].Reason
	b.open(t, admin+"/rollout/"+f.Namespace+"/checkout")
	b.waitText(t, time.Minute, "the rollout page shows the rollback with its reason",
		containsAll("Rolled back", "RolledBack", "superseded", reason))
	b.screenshot(t, "dashboard-rollout")

	// The viewer sees the service in their namespace and nothing else.
	v := newBrowser(t)
	v.open(t, restricted+"/")
	v.waitText(t, time.Minute, "the viewer's index lists team shop", containsAll("shop", f.Namespace))
	v.open(t, restricted+"/team/shop")
	text := v.waitText(t, time.Minute, "the viewer's team page shows their service", containsAll(f.Namespace, "checkout", "Rolled back"))
	if strings.Contains(text, hiddenNS) || strings.Contains(text, hiddenName) {
		t.Errorf("the viewer's team page shows the hidden namespace:\n%s", text)
	}
	v.open(t, restricted+"/rollout/"+hiddenNS+"/"+hiddenName)
	v.waitText(t, time.Minute, "the viewer is refused the hidden rollout", containsAll("You may not see this"))
	v.screenshot(t, "dashboard-forbidden")
	for _, path := range []string{"/api/rollouts/" + hiddenNS + "/" + hiddenName, "/api/rollouts/" + hiddenNS + "/no-such"} {
		if code := v.fetchStatus(t, path); code != http.StatusForbidden {
			t.Errorf("the viewer's page fetched %s: status %d, want 403", path, code)
		}
		code, body, err := httpGet(context.Background(), restricted+path)
		if err != nil || code != http.StatusForbidden || strings.Contains(body, hiddenNS) || strings.Contains(body, hiddenName) {
			t.Errorf("GET %s as the viewer: %d %q (%v), want 403 naming nothing", path, code, body, err)
		}
	}
	// What the viewer may not see is there for the admin: the filter, not
	// an empty cluster, hides it.
	if code, body, err := httpGet(context.Background(), admin+"/api/teams/shop"); err != nil || code != http.StatusOK || !strings.Contains(body, hiddenName) {
		t.Errorf("the admin's team shop: %d (%v), want it to list %s:\n%s", code, err, hiddenName, body)
	}

	seen := v.captured()
	var apiBodies int
	for url, bodies := range seen {
		for _, body := range bodies {
			if strings.Contains(url, "/api/") && strings.Contains(body, f.Namespace) {
				apiBodies++
			}
			if strings.Contains(body, hiddenNS) || strings.Contains(body, hiddenName) {
				t.Errorf("a response to the viewer's browser (%s) names the hidden namespace:\n%s", url, body)
			}
		}
	}
	if apiBodies == 0 {
		t.Fatalf("no data API response of the viewer's own namespace was captured (URLs %v): the check above saw nothing", keys(seen))
	}
	t.Logf("%d data API responses captured from the viewer's browser, none naming %s or %s", apiBodies, hiddenNS, hiddenName)
}

// containsAll returns a condition that text contains every want.
func containsAll(want ...string) func(string) error {
	return func(text string) error {
		for _, w := range want {
			if !strings.Contains(text, w) {
				return fmt.Errorf("the page does not say %q; it says:\n%s", w, tail(text, 30))
			}
		}
		return nil
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// hiddenDelivery deploys an opted-in service in another namespace of team
// shop and returns the namespace and the service's name, once its Rollout is
// Idle.
func hiddenDelivery(t *testing.T) (namespace, name string) {
	t.Helper()
	namespace = fmt.Sprintf("dash-hidden-%d", time.Now().UnixNano()%100000)
	name = "ledger-vault"
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace, Labels: map[string]string{v1alpha1.LabelTeam: "shop"}}}
	if _, err := env.Client().CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Client().CoreV1().Namespaces().Delete(context.Background(), namespace, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete namespace %s: %v", namespace, err)
		}
	})
	d := deployment(namespace, name, "example.com/ledger:v7", 1)
	d.Annotations = map[string]string{v1alpha1.AnnotationRollout: "canary"}
	kube := rolloutKube(t)
	if err := kube.Create(context.Background(), d); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	rolloutPoll(t, 2*time.Minute, "hidden rollout idle", func(ctx context.Context) error {
		var ro v1alpha1.Rollout
		if err := kube.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &ro); err != nil {
			return err
		}
		if ro.Status.Phase != v1alpha1.PhaseIdle {
			return fmt.Errorf("phase %q", ro.Status.Phase)
		}
		return nil
	})
	return namespace, name
}

// grantRolloutReader lets subject read Rollouts, Deployments, ReplicaSets
// and Events in namespace, and list namespaces (their names and labels)
// cluster-wide.
func grantRolloutReader(t *testing.T, who rbacv1.Subject, namespace string) {
	t.Helper()
	ctx := context.Background()
	rbac := env.Client().RbacV1()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "rollout-reader"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"rollouts"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"get", "list", "watch"}},
		},
	}
	if _, err := rbac.Roles(namespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	subject := []rbacv1.Subject{who}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "rollout-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   subject,
	}
	if _, err := rbac.RoleBindings(namespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cr := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "dash-namespaces-" + namespace},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list"}}},
	}
	if _, err := rbac.ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: cr.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name},
		Subjects:   subject,
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rbac.ClusterRoleBindings().Delete(ctx, crb.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete cluster role binding: %v", err)
		}
		if err := rbac.ClusterRoles().Delete(ctx, cr.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete cluster role: %v", err)
		}
	})
}
