package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// listCounter counts the lists a client makes, by kind and namespace.
type listCounter struct {
	mu sync.Mutex
	n  map[string]int // "RolloutList ns"
}

func (l *listCounter) funcs() interceptor.Funcs {
	return interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		ns := (&client.ListOptions{}).ApplyOptions(opts).Namespace
		kind := strings.TrimPrefix(fmt.Sprintf("%T", list), "*")
		kind = kind[strings.LastIndexByte(kind, '.')+1:]
		l.mu.Lock()
		l.n[kind+" "+ns]++
		l.mu.Unlock()
		return c.List(ctx, list, opts...)
	}}
}

// in returns the lists made in ns, sorted, as "Kind×count".
func (l *listCounter) in(ns string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k, n := range l.n {
		if kind, where, _ := strings.Cut(k, " "); where == ns {
			out = append(out, fmt.Sprintf("%s×%d", kind, n))
		}
	}
	sort.Strings(out)
	return out
}

// TestTeamPageReadsOnlyRolloutsOfOtherTeams: a team page shows the services
// of other teams it calls ("Depends on") from their Rollouts alone; their
// namespaces' Deployments, ReplicaSets, Events and Services are not read,
// and many pages polling at once list each namespace's Rollouts once per
// freshness interval.
func TestTeamPageReadsOnlyRolloutsOfOtherTeams(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	ns := func(name, team string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.LabelTeam: team}}}
	}
	called := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "pay", Name: "ledger"},
		Spec: v1alpha1.RolloutSpec{Delivery: v1alpha1.Delivery{Mode: v1alpha1.ModeCanary, Service: "ledger"}},
		Status: v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseIdle, Callers: &v1alpha1.CallerStatus{Since: now, UpdatedAt: now,
			Callers: []v1alpha1.CallerLoad{{Namespace: "web", Requests: 400, Errors: 4}, {Namespace: "pay", Requests: 100}}}}}
	lists := &listCounter{n: map[string]int{}}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(
		ns("web", "shop"), ns("pay", "payments"), ns("idle", "search"),
		&v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "checkout"}},
		called,
	).WithStatusSubresource(&v1alpha1.Rollout{}).WithInterceptorFuncs(lists.funcs()).Build()
	s, err := New(Options{Client: c, Access: AccessFunc(func(context.Context, string) (bool, error) { return true, nil }),
		Freshness: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h := localOnly(s)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := get(t, h, "/api/teams/shop")
			for _, want := range []string{`"dependsOn":[{"team":"payments","namespace":"pay","name":"ledger"`, `"requests":400,"errors":4`} {
				if code != http.StatusOK || !strings.Contains(body, want) {
					t.Errorf("status %d, body lacks %s:\n%s", code, want, body)
				}
			}
		}()
	}
	wg.Wait()
	for ns, want := range map[string]string{
		// The team's own namespace: all a service card shows.
		"web": "DeploymentList×1 EventList×1 ReplicaSetList×1 RolloutList×1 ServiceList×1",
		// Other teams' namespaces: their Rollouts, once for all pages.
		"pay":  "RolloutList×1",
		"idle": "RolloutList×1",
	} {
		if got := strings.Join(lists.in(ns), " "); got != want {
			t.Errorf("lists in %s: %s, want %s", ns, got, want)
		}
	}
}

// TestDependsOnReusesAFreshWholeReading: when a page of the other team has
// just read its namespace whole, a team page takes that namespace's
// Rollouts from that reading instead of listing them again.
func TestDependsOnReusesAFreshWholeReading(t *testing.T) {
	ns := func(name, team string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.LabelTeam: team}}}
	}
	lists := &listCounter{n: map[string]int{}}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(
		ns("web", "shop"), ns("pay", "payments"),
		&v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "pay", Name: "ledger"}},
	).WithInterceptorFuncs(lists.funcs()).Build()
	s, err := New(Options{Client: c, Access: AccessFunc(func(context.Context, string) (bool, error) { return true, nil }),
		Freshness: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h := localOnly(s)
	for _, page := range []string{"/api/teams/payments", "/api/teams/shop"} {
		if code, body := get(t, h, page); code != http.StatusOK {
			t.Fatalf("%s: %d %s", page, code, body)
		}
	}
	if got := strings.Join(lists.in("pay"), " "); !strings.Contains(got, "RolloutList×1") {
		t.Errorf("lists in pay: %s, want the Rollouts listed once", got)
	}
}
