package traffic

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
)

func rollout(name string, mode v1alpha1.DeliveryMode, phase v1alpha1.RolloutPhase, weight v1alpha1.BasisPoints) v1alpha1.Rollout {
	return v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
		Spec:       v1alpha1.RolloutSpec{Delivery: v1alpha1.Delivery{Mode: mode}},
		Status:     v1alpha1.RolloutStatus{Phase: phase, CurrentWeight: weight},
	}
}

func withDelivery(r v1alpha1.Rollout, f func(*v1alpha1.Delivery)) v1alpha1.Rollout {
	f(&r.Spec.Delivery)
	return r
}

var (
	betaCohort = &v1alpha1.Cohort{Source: v1alpha1.SourceHeader, Name: "x-cohort", Match: v1alpha1.MatchExact, Value: "beta"}
	userKey    = &v1alpha1.Sticky{Source: v1alpha1.SourceHeader, Name: "x-user-id"}
)

func TestStrategies(t *testing.T) {
	routerCohort := router.Cohort{Source: router.SourceHeader, Name: "x-cohort", Match: router.MatchExact, Value: "beta"}
	tests := map[string]struct {
		rollouts []v1alpha1.Rollout
		want     router.Strategy // for service "checkout"
		problem  string
	}{
		"no rollout: all to stable": {},
		"idle":                      {rollouts: []v1alpha1.Rollout{rollout("checkout", v1alpha1.ModeCanary, v1alpha1.PhaseIdle, 500)}},
		"succeeded":                 {rollouts: []v1alpha1.Rollout{rollout("checkout", v1alpha1.ModeCanary, v1alpha1.PhaseSucceeded, 10000)}},
		"rolled back":               {rollouts: []v1alpha1.Rollout{rollout("checkout", v1alpha1.ModeCanary, v1alpha1.PhaseRolledBack, 500)}},
		"empty phase":               {rollouts: []v1alpha1.Rollout{rollout("checkout", v1alpha1.ModeCanary, "", 500)}},
		"canary progressing": {
			rollouts: []v1alpha1.Rollout{rollout("checkout", v1alpha1.ModeCanary, v1alpha1.PhaseProgressing, 2500)},
			want:     router.Strategy{CanaryWeight: 2500},
		},
		"canary paused holds the weight": {
			rollouts: []v1alpha1.Rollout{rollout("checkout", v1alpha1.ModeCanary, v1alpha1.PhasePaused, 100)},
			want:     router.Strategy{CanaryWeight: 100},
		},
		"canary promoting": {
			rollouts: []v1alpha1.Rollout{rollout("checkout", v1alpha1.ModeCanary, v1alpha1.PhasePromoting, 5000)},
			want:     router.Strategy{CanaryWeight: 5000},
		},
		"beta promoting, canary draining at weight 0: cohort back to stable": {
			rollouts: []v1alpha1.Rollout{withDelivery(rollout("checkout", v1alpha1.ModeBeta, v1alpha1.PhasePromoting, 0),
				func(d *v1alpha1.Delivery) { d.Cohort = betaCohort })},
			want: router.Strategy{},
		},
		"beta promoting before the drain: cohort kept": {
			rollouts: []v1alpha1.Rollout{withDelivery(rollout("checkout", v1alpha1.ModeBeta, v1alpha1.PhasePromoting, 2500),
				func(d *v1alpha1.Delivery) { d.Cohort = betaCohort })},
			want: router.Strategy{CanaryWeight: 2500, Cohorts: []router.Cohort{routerCohort}},
		},
		"sticky canary: share follows the weight": {
			rollouts: []v1alpha1.Rollout{withDelivery(rollout("checkout", v1alpha1.ModeCanary, v1alpha1.PhaseProgressing, 500),
				func(d *v1alpha1.Delivery) { d.Sticky = userKey })},
			want: router.Strategy{CanaryWeight: 500, Sticky: &router.Sticky{Source: router.SourceHeader, Name: "x-user-id", Share: 500}},
		},
		"beta: cohort": {
			rollouts: []v1alpha1.Rollout{withDelivery(rollout("checkout", v1alpha1.ModeBeta, v1alpha1.PhaseProgressing, 0),
				func(d *v1alpha1.Delivery) { d.Cohort = betaCohort })},
			want: router.Strategy{Cohorts: []router.Cohort{routerCohort}},
		},
		"beta without cohort": {
			rollouts: []v1alpha1.Rollout{rollout("checkout", v1alpha1.ModeBeta, v1alpha1.PhaseProgressing, 0)},
			problem:  "checkout.shop (rollout/checkout): spec.delivery.cohort: beta mode needs a cohort; all traffic goes to stable until it is fixed",
		},
		"ab: sticky split with the split as share": {
			rollouts: []v1alpha1.Rollout{withDelivery(rollout("checkout", v1alpha1.ModeAB, v1alpha1.PhaseProgressing, 0),
				func(d *v1alpha1.Delivery) { d.Sticky = userKey; d.Split = ptr.To(v1alpha1.BasisPoints(5000)) })},
			want: router.Strategy{Sticky: &router.Sticky{Source: router.SourceHeader, Name: "x-user-id", Share: 5000}},
		},
		"ab without split": {
			rollouts: []v1alpha1.Rollout{withDelivery(rollout("checkout", v1alpha1.ModeAB, v1alpha1.PhaseProgressing, 0),
				func(d *v1alpha1.Delivery) { d.Sticky = userKey })},
			problem: "checkout.shop (rollout/checkout): spec.delivery: ab mode needs a sticky key and a split; all traffic goes to stable until it is fixed",
		},
		"cookie cohort in canary mode": {
			rollouts: []v1alpha1.Rollout{withDelivery(rollout("checkout", v1alpha1.ModeCanary, v1alpha1.PhaseProgressing, 100),
				func(d *v1alpha1.Delivery) {
					d.Cohort = &v1alpha1.Cohort{Source: v1alpha1.SourceCookie, Name: "beta", Match: v1alpha1.MatchExact, Value: "1"}
				})},
			want: router.Strategy{CanaryWeight: 100, Cohorts: []router.Cohort{{Source: router.SourceCookie, Name: "beta", Match: router.MatchExact, Value: "1"}}},
		},
		"weight out of range": {
			rollouts: []v1alpha1.Rollout{rollout("checkout", v1alpha1.ModeCanary, v1alpha1.PhaseProgressing, 10001)},
			problem:  "checkout.shop (rollout/checkout): status.currentWeight: 10001 basis points is outside 0..10000; all traffic goes to stable until it is fixed",
		},
		"unknown mode": {
			rollouts: []v1alpha1.Rollout{rollout("checkout", v1alpha1.ModeOff, v1alpha1.PhaseProgressing, 100)},
			problem:  `checkout.shop (rollout/checkout): spec.delivery.mode "off" is not one of canary, beta, ab; all traffic goes to stable until it is fixed`,
		},
		"delivery names the service": {
			rollouts: []v1alpha1.Rollout{withDelivery(rollout("web", v1alpha1.ModeCanary, v1alpha1.PhaseProgressing, 300),
				func(d *v1alpha1.Delivery) { d.Service = "checkout" })},
			want: router.Strategy{CanaryWeight: 300},
		},
		"rollout of another service": {
			rollouts: []v1alpha1.Rollout{rollout("web", v1alpha1.ModeCanary, v1alpha1.PhaseProgressing, 300)},
		},
		"active rollout wins over an idle one": {
			rollouts: []v1alpha1.Rollout{
				withDelivery(rollout("a", v1alpha1.ModeCanary, v1alpha1.PhaseIdle, 0), func(d *v1alpha1.Delivery) { d.Service = "checkout" }),
				withDelivery(rollout("b", v1alpha1.ModeCanary, v1alpha1.PhaseProgressing, 700), func(d *v1alpha1.Delivery) { d.Service = "checkout" }),
			},
			want: router.Strategy{CanaryWeight: 700},
		},
		"two active rollouts: first by name, reported": {
			rollouts: []v1alpha1.Rollout{
				withDelivery(rollout("b", v1alpha1.ModeCanary, v1alpha1.PhaseProgressing, 700), func(d *v1alpha1.Delivery) { d.Service = "checkout" }),
				withDelivery(rollout("a", v1alpha1.ModeCanary, v1alpha1.PhaseProgressing, 200), func(d *v1alpha1.Delivery) { d.Service = "checkout" }),
			},
			want:    router.Strategy{CanaryWeight: 200},
			problem: `checkout.shop (rollout/b): rollouts "a" and "b" are both active for this service; "a" steers it`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			state, problems := StateFrom(Objects{Pods: []corev1.Pod{pod("p", "checkout", "10.0.0.1")}, Rollouts: tc.rollouts})
			if len(state.Services) != 1 {
				t.Fatalf("got %d services, want 1", len(state.Services))
			}
			if diff := cmp.Diff(tc.want, state.Services[0].Strategy); diff != "" {
				t.Errorf("strategy (-want +got):\n%s", diff)
			}
			var want []string
			if tc.problem != "" {
				want = []string{tc.problem}
			}
			var got []string
			for _, p := range problems {
				got = append(got, p.String())
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if _, err := router.Build(state); err != nil {
				t.Errorf("router.Build rejects the state: %v", err)
			}
		})
	}
}
