package monitoring

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func scheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func leading() bool   { return true }
func following() bool { return false }

func TestRolloutCollector(t *testing.T) {
	started := metav1.NewTime(time.Unix(1_800_000_000, 0))
	before := metav1.NewTime(started.Add(-time.Minute))
	after := metav1.NewTime(started.Add(time.Minute))
	held := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout"},
		Spec:       v1alpha1.RolloutSpec{Delivery: v1alpha1.Delivery{Service: "checkout-api"}},
		Status: v1alpha1.RolloutStatus{
			Phase:            v1alpha1.PhaseProgressing,
			CanaryStartedAt:  &started,
			AnalysisFailures: 1,
			Proxies:          v1alpha1.ProxyStatus{Acked: 3, Nacked: 1, Stale: 2},
			Analysis: []v1alpha1.AnalysisDecision{
				// A replaced revision's decision: not this canary's.
				{Metric: "latency-p99", Verdict: v1alpha1.VerdictFail, Time: before},
				{Metric: "error-rate", Verdict: v1alpha1.VerdictFail, Time: after},
				{Metric: "error-rate", Verdict: v1alpha1.VerdictInconclusive, Time: after},
			},
		},
	}
	done := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
		Status: v1alpha1.RolloutStatus{
			Phase:           v1alpha1.PhaseSucceeded,
			StepStartedAt:   &after,
			CanaryStartedAt: &started,
			Proxies:         v1alpha1.ProxyStatus{Acked: 4},
			Analysis:        []v1alpha1.AnalysisDecision{{Metric: "error-rate", Verdict: v1alpha1.VerdictPass, Time: after}},
		},
	}
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(held, done).Build()
	want := `
# HELP sluice_rollout_analysis_failures Analyses in a row in which a check failed, per service.
# TYPE sluice_rollout_analysis_failures gauge
sluice_rollout_analysis_failures{namespace="shop",service="cart"} 0
sluice_rollout_analysis_failures{namespace="shop",service="checkout-api"} 1
# HELP sluice_rollout_analysis_verdict 1 for the newest analysis verdict (Pass, Fail or Inconclusive) on each metric of each service's current rollout.
# TYPE sluice_rollout_analysis_verdict gauge
sluice_rollout_analysis_verdict{metric="error-rate",namespace="shop",service="checkout-api",verdict="Inconclusive"} 1
# HELP sluice_rollout_canary_started_timestamp_seconds When delivery of each service's current canary revision began, as Unix seconds; absent without a canary.
# TYPE sluice_rollout_canary_started_timestamp_seconds gauge
sluice_rollout_canary_started_timestamp_seconds{namespace="shop",service="checkout-api"} 1.8e+09
# HELP sluice_rollout_proxies Proxies serving each service's routes, by state: acked (carry the current routes), nacked (rejected them) or stale (left them unanswered past the stale bound).
# TYPE sluice_rollout_proxies gauge
sluice_rollout_proxies{namespace="shop",service="cart",state="acked"} 4
sluice_rollout_proxies{namespace="shop",service="cart",state="nacked"} 0
sluice_rollout_proxies{namespace="shop",service="cart",state="stale"} 0
sluice_rollout_proxies{namespace="shop",service="checkout-api",state="acked"} 3
sluice_rollout_proxies{namespace="shop",service="checkout-api",state="nacked"} 1
sluice_rollout_proxies{namespace="shop",service="checkout-api",state="stale"} 2
# HELP sluice_rollout_step_confirmed 1 when every proxy confirmed the current step's weight of a progressing or paused rollout, 0 while the step waits for them.
# TYPE sluice_rollout_step_confirmed gauge
sluice_rollout_step_confirmed{namespace="shop",service="checkout-api"} 0
`
	if err := testutil.CollectAndCompare(NewRolloutCollector(c, leading, logr.Discard()), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestRolloutCollectorSilentWhileFollowing(t *testing.T) {
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout"}}
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(ro).Build()
	if n := testutil.CollectAndCount(NewRolloutCollector(c, following, logr.Discard())); n != 0 {
		t.Errorf("a replica that does not lead exported %d series, want 0", n)
	}
	if n := testutil.CollectAndCount(NewRolloutCollector(c, leading, logr.Discard())); n == 0 {
		t.Error("the leader exported no series")
	}
}

func TestRolloutCollectorListFailureExportsNothing(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme(t)).WithInterceptorFuncs(interceptor.Funcs{
		List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
			return errors.New("cache not synced")
		},
	}).Build()
	if n := testutil.CollectAndCount(NewRolloutCollector(c, leading, logr.Discard())); n != 0 {
		t.Errorf("a failed list exported %d series, want 0", n)
	}
}

// TestRolloutCollectorOneSeriesPerService: two Rollouts of one namespace
// name the same service (two Deployments with one sluice.dev/service). A
// series sent twice would fail the whole scrape; the service is exported
// once, from the Rollout that is active.
func TestRolloutCollectorOneSeriesPerService(t *testing.T) {
	steering := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout-b"},
		Spec:       v1alpha1.RolloutSpec{Delivery: v1alpha1.Delivery{Service: "checkout"}},
		Status:     v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseProgressing, Proxies: v1alpha1.ProxyStatus{Acked: 7}},
	}
	idle := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout-a"},
		Spec:       v1alpha1.RolloutSpec{Delivery: v1alpha1.Delivery{Service: "checkout"}},
		Status:     v1alpha1.RolloutStatus{Phase: v1alpha1.PhaseIdle, Proxies: v1alpha1.ProxyStatus{Acked: 1}},
	}
	reader := fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(steering, idle).Build()
	c := NewRolloutCollector(reader, leading, logr.Discard())
	want := `
# HELP sluice_rollout_proxies Proxies serving each service's routes, by state: acked (carry the current routes), nacked (rejected them) or stale (left them unanswered past the stale bound).
# TYPE sluice_rollout_proxies gauge
sluice_rollout_proxies{namespace="shop",service="checkout",state="acked"} 7
sluice_rollout_proxies{namespace="shop",service="checkout",state="nacked"} 0
sluice_rollout_proxies{namespace="shop",service="checkout",state="stale"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), MetricProxies); err != nil {
		t.Fatal(err)
	}
}
