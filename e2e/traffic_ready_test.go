package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/e2e/testkit"
)

// TestRolloutShowsWhatTrafficCannotPublish: two Deployments whose admitted
// annotations name one service both start a canary. Only one Rollout can
// steer the service; the other cannot have its weight published, and its
// Rollout says so (TrafficReady=False, reason TrafficProblem, and in
// status.message) instead of only "waiting for proxies". Once the steering
// rollout is aborted, the other's weight is published and the condition
// clears.
func TestRolloutShowsWhatTrafficCannotPublish(t *testing.T) {
	steps := map[string]string{v1alpha1.AnnotationSteps: "10,50", v1alpha1.AnnotationStepInterval: "2s"}
	first := newDelivery(t, "example.com/checkout:v1", steps)
	second := &deliveryFixture{&testkit.Delivery{T: t, Kube: first.Kube, Namespace: first.Namespace, Name: "checkout-next"}}
	d := deployment(second.Namespace, second.Name, "example.com/checkout:v1", 1)
	d.Annotations = map[string]string{v1alpha1.AnnotationRollout: "canary", v1alpha1.AnnotationService: "checkout"}
	for k, v := range steps {
		d.Annotations[k] = v
	}
	// Another first step than the steering rollout's: its weight is never
	// the published one while the other steers.
	d.Annotations[v1alpha1.AnnotationSteps] = "20,50"
	if err := second.Kube.Create(context.Background(), d); err != nil {
		t.Fatalf("create the second deployment of service checkout (admission must accept it): %v", err)
	}
	second.Wait(2*time.Minute, "second deployment stable", testkit.IdleWithStable)

	first.Update("example.com/checkout:v2")
	first.Wait(time.Minute, "first canary carries weight", func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.StepStartedAt == nil {
			return fmt.Errorf("phase %s, step confirmed %v", ro.Status.Phase, ro.Status.StepStartedAt != nil)
		}
		return nil
	})
	second.Update("example.com/checkout:v3")
	ro := second.Wait(2*time.Minute, "the second Rollout shows why its weight is not published", func(ro *v1alpha1.Rollout) error {
		c := meta.FindStatusCondition(ro.Status.Conditions, v1alpha1.ConditionTrafficReady)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "TrafficProblem" {
			return fmt.Errorf("TrafficReady %+v", c)
		}
		if !strings.Contains(c.Message, `"checkout" steers it`) {
			return fmt.Errorf("TrafficReady message %q does not name the conflict", c.Message)
		}
		if ro.Status.CurrentWeight != 2000 || !strings.Contains(ro.Status.Message, "not published as asked") {
			return fmt.Errorf("status.message %q does not say why it waits", ro.Status.Message)
		}
		return nil
	})
	t.Logf("held Rollout: message %q", ro.Status.Message)
	if ro.Status.StepStartedAt != nil {
		t.Errorf("the second rollout's step was confirmed although its weight is not published")
	}

	// The steering rollout ends: the other's weight is published, and its
	// condition and message clear without any change to its own objects.
	var steering v1alpha1.Rollout
	rolloutPoll(t, 30*time.Second, "abort the first rollout", func(ctx context.Context) error {
		if err := first.Kube.Get(ctx, types.NamespacedName{Namespace: first.Namespace, Name: first.Name}, &steering); err != nil {
			return err
		}
		steering.Spec.Abort = &v1alpha1.RolloutAction{Revision: steering.Status.CanaryRevision, RequestedBy: "e2e",
			RequestedAt: metav1.Now(), Reason: "make way"}
		return first.Kube.Update(ctx, &steering)
	})
	second.Wait(2*time.Minute, "the second Rollout's traffic is ready and its step confirmed", func(ro *v1alpha1.Rollout) error {
		c := meta.FindStatusCondition(ro.Status.Conditions, v1alpha1.ConditionTrafficReady)
		if c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("TrafficReady %+v", c)
		}
		if ro.Status.StepStartedAt == nil {
			return fmt.Errorf("step not confirmed")
		}
		if strings.Contains(ro.Status.Message, "not published as asked") {
			return fmt.Errorf("status.message %q still names the problem", ro.Status.Message)
		}
		return nil
	})
}
