package traffic

import (
	"context"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// TestBetaWeightZeroWaitsForTheCohortRoute forces the race that let a beta
// rollout's weight 0 be confirmed before its cohort route existed: the
// canary pod exists but is not ready yet, so the routes published at weight
// 0 send the cohort to stable. Confirm must not return on those routes; once
// the canary is ready and the cohort route is published and acknowledged,
// it does.
func TestBetaWeightZeroWaitsForTheCohortRoute(t *testing.T) {
	log := testr.New(t)
	srv, addr := xdsServer(t, log)
	beta := func(canaryReady bool) Objects {
		canary := pod("canary-0", "checkout", "127.0.0.2", canaryPod)
		if !canaryReady {
			notReady(&canary)
		}
		return Objects{
			Pods: []corev1.Pod{pod("stable-0", "checkout", "127.0.0.1"), canary},
			Rollouts: []v1alpha1.Rollout{withDelivery(rollout("checkout", v1alpha1.ModeBeta, v1alpha1.PhaseProgressing, 0),
				func(d *v1alpha1.Delivery) { d.Cohort = betaCohort })},
		}
	}
	src := newFakeSource(beta(false))
	c := startController(t, srv, src, Options{Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := startProxy(ctx, dialADS(t, addr), "proxy-a", resource.RouteType, []string{checkoutRoute}, ackAll); err != nil {
		t.Fatal(err)
	}
	// The routes without the cohort are published (and acknowledged).
	deadline := time.Now().Add(20 * time.Second)
	for {
		c.mu.Lock()
		ps, ok := c.published.services[ServiceKey{"shop", "checkout"}]
		c.mu.Unlock()
		if ok && ps.cohortPending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the routes of the not-ready canary were never published")
		}
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan Confirmation, 1)
	go func() { done <- confirm(t, c, 0) }()
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := c.Confirm(short, "shop", "checkout", 0)
	cancelShort()
	if err == nil {
		t.Fatal("weight 0 of a beta rollout was confirmed while its cohort route did not exist")
	}
	t.Logf("while the canary is not ready: %v", err)
	select {
	case got := <-done:
		t.Fatalf("Confirm returned %+v before the cohort route was published", got)
	default:
	}

	src.set(beta(true), true)
	got := <-done
	if got.Acked != 1 {
		t.Fatalf("confirmation %+v, want the proxy's ACK of the routes with the cohort", got)
	}
	c.mu.Lock()
	pending := c.published.services[ServiceKey{"shop", "checkout"}].cohortPending
	c.mu.Unlock()
	if pending {
		t.Fatal("confirmed while the published routes still lack the cohort")
	}
}
