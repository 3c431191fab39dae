package chaos

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/e2e/testkit"
	"github.com/sluice-dev/sluice/router"
)

// canaryDeletionWait is the fleet's --canary-deletion-wait (main_test.go).
const canaryDeletionWait = 20 * time.Second

// scriptedProxy is an ADS client of one replica, subscribed to the
// service's route configuration, that answers the n-th response (from 0)
// with answer: "" acknowledges, anything else rejects with that text. It
// runs until stop is called or the test ends.
func (s *service) scriptedProxy(t testing.TB, addr, node string, answer func(n int, rc *routev3.RouteConfiguration) string) (stop func()) {
	t.Helper()
	_, stop = s.routeProxy(t, addr, node, func(n int, resp *discovery.DiscoveryResponse) testkit.Reply {
		rc := &routev3.RouteConfiguration{}
		for _, a := range resp.GetResources() {
			if err := a.UnmarshalTo(rc); err != nil {
				t.Errorf("proxy %s: route configuration: %v", node, err)
				return testkit.Reply{Hang: true}
			}
		}
		return testkit.Reply{Nack: answer(n, rc)}
	})
	return stop
}

// routesToCanary reports whether rc sends ordinary requests (not the
// warm-up route's) to a canary cluster.
func routesToCanary(rc *routev3.RouteConfiguration) bool {
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			warm := false
			for _, h := range r.GetMatch().GetHeaders() {
				warm = warm || h.GetName() == router.WarmupHeader
			}
			if warm {
				continue
			}
			if strings.HasSuffix(r.GetRoute().GetCluster(), "/"+string(router.TrackCanary)) {
				return true
			}
			for _, cw := range r.GetRoute().GetWeightedClusters().GetClusters() {
				if strings.HasSuffix(cw.GetName(), "/"+string(router.TrackCanary)) && cw.GetWeight().GetValue() > 0 {
					return true
				}
			}
		}
	}
	return false
}

// abort asks to roll back the canary, as `sluice abort` does.
func (s *service) abort() time.Time {
	s.T.Helper()
	var at time.Time
	testkit.Poll(s.T, 30*time.Second, "abort the canary", func(ctx context.Context) error {
		ro, err := s.Rollout(ctx)
		if err != nil {
			return err
		}
		if ro.Status.CanaryRevision == "" {
			return fmt.Errorf("no canary revision yet (phase %s)", ro.Status.Phase)
		}
		at = time.Now()
		ro.Spec.Abort = &v1alpha1.RolloutAction{Revision: ro.Status.CanaryRevision, RequestedAt: metav1.NewTime(at), RequestedBy: "chaos", Reason: "test"}
		return s.Kube.Update(ctx, ro)
	})
	return at
}

// canaryGone reports whether the canary Deployment no longer exists.
func (s *service) canaryGone(ctx context.Context) (bool, error) {
	var d appsv1.Deployment
	err := s.Kube.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: v1alpha1.CanaryName("checkout")}, &d)
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, err
	}
	return d.DeletionTimestamp != nil, nil
}

// waitDeleted polls until the canary is deleted, calling each on the
// Rollout meanwhile, and returns when it saw it gone.
func (s *service) waitDeleted(timeout time.Duration, each func(*v1alpha1.Rollout)) time.Time {
	s.T.Helper()
	var gone time.Time
	testkit.Poll(s.T, timeout, "the canary deleted", func(ctx context.Context) error {
		ro, err := s.Rollout(ctx)
		if err != nil {
			return err
		}
		ok, err := s.canaryGone(ctx)
		if err != nil {
			return err
		}
		if !ok {
			each(ro)
			return fmt.Errorf("canary still there: phase %s, message %q", ro.Status.Phase, ro.Status.Message)
		}
		gone = time.Now()
		return nil
	})
	return gone
}

// events returns the reasons and messages of the Rollout's Events.
func (s *service) events(t testing.TB) []string {
	t.Helper()
	var out []string
	testkit.Poll(t, 30*time.Second, "list events", func(ctx context.Context) error {
		var list corev1.EventList
		if err := s.Kube.List(ctx, &list); err != nil {
			return err
		}
		out = nil
		for _, e := range list.Items {
			if e.Namespace == s.Namespace && e.InvolvedObject.Kind == "Rollout" {
				out = append(out, e.Reason+": "+e.Message)
			}
		}
		return nil
	})
	return out
}

// heldStep waits until the step after weight 20% is held by a rejection.
func (s *service) heldStep(t testing.TB, what string) {
	t.Helper()
	s.Wait(3*time.Minute, what, func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseProgressing || !strings.Contains(ro.Status.Message, "rejected the routes for weight") {
			return fmt.Errorf("phase %s, weight %s: not held by a rejection yet", ro.Status.Phase, ro.Status.CurrentWeightPercent)
		}
		return nil
	})
}

// TestChaosRollbackPastANackThatNeverRoutedToTheCanary: a proxy of the
// service's own namespace rejects every route configuration since before
// the canary began, so it never sent the canary anything. It holds the
// first step; `sluice abort` then deletes the canary at once although the
// proxy also rejects the weight-0 routes.
func TestChaosRollbackPastANackThatNeverRoutedToTheCanary(t *testing.T) {
	s := deploy(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,40", v1alpha1.AnnotationStepInterval: "5s"})
	node := proxyNode("nack-never", sluice.Replicas[0].Name)
	s.scriptedProxy(t, sluice.Replicas[0].XDSAddr(), node, func(n int, rc *routev3.RouteConfiguration) string {
		if n == 0 && !routesToCanary(rc) {
			return ""
		}
		return "chaos: this proxy rejects every route configuration after its first"
	})
	s.Update("example.com/checkout:v2")
	s.heldStep(t, "the first step held by the NACK")
	at := s.abort()
	gone := s.waitDeleted(2*time.Minute, func(*v1alpha1.Rollout) {})
	t.Logf("canary deleted %v after the abort, past a NACK whose acknowledged routes never reached it", gone.Sub(at).Round(10*time.Millisecond))
	if ev := strings.Join(s.events(t), "\n"); !strings.Contains(ev, "CanaryUnrouted") {
		t.Errorf("no CanaryUnrouted Event; events:\n%s", ev)
	}
}

// TestChaosRollbackWaitsForANackingProxyThatRoutedToTheCanary: a proxy of
// the service's own namespace, connected to the replica that does not
// lead, acknowledges routes up to the first that sends the canary traffic
// and rejects everything after, weight 0 included. After `sluice abort` the
// canary's deletion waits for it, with the proxy and its replica on the
// Rollout, until --canary-deletion-wait; then the canary is deleted with a
// warning.
func TestChaosRollbackWaitsForANackingProxyThatRoutedToTheCanary(t *testing.T) {
	s := deploy(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,40", v1alpha1.AnnotationStepInterval: "5s"})
	follower := sluice.Replicas[0]
	if l := leader(t); l == follower {
		follower = sluice.Replicas[1]
	}
	// Traffic, so the analysis passes and the second step is published.
	traffic := testkit.StartLoad(t, s.dial(t), 50)
	node := proxyNode("nack-routed", follower.Name)
	var routed atomic.Bool
	s.scriptedProxy(t, follower.XDSAddr(), node, func(_ int, rc *routev3.RouteConfiguration) string {
		if routed.Load() {
			return "chaos: this proxy rejects every route configuration after the canary's"
		}
		routed.Store(routesToCanary(rc))
		return ""
	})
	s.Update("example.com/checkout:v2")
	s.heldStep(t, "the second step held by the NACK")
	if !routed.Load() {
		t.Fatal("the proxy never acknowledged routes sending the canary traffic")
	}
	at := s.abort()
	var named time.Time
	var seen string
	gone := s.waitDeleted(canaryDeletionWait+2*time.Minute, func(ro *v1alpha1.Rollout) {
		if named.IsZero() && strings.Contains(ro.Status.Message, "waiting to delete the canary") &&
			strings.Contains(ro.Status.Message, node) && strings.Contains(ro.Status.Message, follower.Name) {
			named, seen = time.Now(), ro.Status.Message
		}
	})
	if named.IsZero() {
		t.Fatalf("the canary was deleted %v after the abort without the Rollout naming %s on %s", gone.Sub(at), node, follower.Name)
	}
	t.Logf("status while waiting: %s", seen)
	t.Logf("abort → proxy named %v; abort → canary deleted %v (--canary-deletion-wait %v)",
		named.Sub(at).Round(10*time.Millisecond), gone.Sub(at).Round(10*time.Millisecond), canaryDeletionWait)
	if ev := strings.Join(s.events(t), "\n"); !strings.Contains(ev, "CanaryDeletedWhileRouted") || !strings.Contains(ev, node) {
		t.Errorf("no CanaryDeletedWhileRouted Event naming %s; events:\n%s", node, ev)
	}
	// The clients that took weight 0 lost nothing.
	traffic.Check(t)
}

// TestChaosDisconnectedProxyHoldsTheCanaryUntilItsTombstoneExpires: a
// proxy that acknowledged the canary's weight disconnects just before
// `sluice abort`. It may reconnect still routing by those routes, so the
// canary's deletion waits for it, naming it disconnected, until its
// tombstone expires (the stale bound, 5 s here).
func TestChaosDisconnectedProxyHoldsTheCanaryUntilItsTombstoneExpires(t *testing.T) {
	s := deploy(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,40", v1alpha1.AnnotationStepInterval: "1m"})
	r := sluice.Replicas[1]
	node := proxyNode("leaver", r.Name)
	var routed atomic.Bool
	stop := s.scriptedProxy(t, r.XDSAddr(), node, func(_ int, rc *routev3.RouteConfiguration) string {
		if routesToCanary(rc) {
			routed.Store(true)
		}
		return ""
	})
	s.Update("example.com/checkout:v2")
	s.Wait(3*time.Minute, "the first step confirmed", func(ro *v1alpha1.Rollout) error {
		if ro.Status.CurrentWeight == 0 {
			return fmt.Errorf("phase %s at weight 0", ro.Status.Phase)
		}
		return stepConfirmed(0)(ro)
	})
	if !routed.Load() {
		t.Fatal("the proxy never acknowledged routes sending the canary traffic")
	}
	stop()
	left := time.Now()
	s.abort()
	var named time.Time
	gone := s.waitDeleted(2*time.Minute, func(ro *v1alpha1.Rollout) {
		if named.IsZero() && strings.Contains(ro.Status.Message, node) && strings.Contains(ro.Status.Message, "disconnected") {
			named = time.Now()
		}
	})
	if named.IsZero() {
		t.Fatalf("the canary was deleted %v after the proxy left without the Rollout naming it", gone.Sub(left))
	}
	t.Logf("proxy left → named as disconnected %v; → canary deleted %v (tombstone bound 5s)",
		named.Sub(left).Round(10*time.Millisecond), gone.Sub(left).Round(10*time.Millisecond))
}
