package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/e2e/testkit"
)

// TestLeaseLossStopsOnlyTheLeaderWork takes the leader lease away from the
// running controller, as a partition from the API server or a slow renewal
// would: the controller stops driving rollouts but keeps serving webhooks and
// xDS in the same process, and when the lease is free again it leads again
// and the rollout it left goes on to the end.
func TestLeaseLossStopsOnlyTheLeaderWork(t *testing.T) {
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "50", v1alpha1.AnnotationStepInterval: "5s"})
	load := startLoad(t, f.Namespace, "checkout", 20)
	starts := sluice.starts
	leading := func(want float64) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			v, err := metricWith(ctx, sluice.MetricsURL, "sluice_leader", "")
			if err != nil {
				return err
			}
			if v != want {
				return fmt.Errorf("sluice_leader = %v, want %v", v, want)
			}
			return nil
		}
	}
	rolloutPoll(t, time.Minute, "the controller leads", leading(1))
	termsBefore, err := metricWith(context.Background(), sluice.MetricsURL, "sluice_leader_terms_total", "")
	if err != nil {
		t.Fatal(err)
	}

	// Another holder takes the lease and renews it until released.
	thief, release := context.WithCancel(context.Background())
	stolen := make(chan error, 1)
	go func() { stolen <- holdLease(thief, f, "e2e-thief") }()
	defer func() {
		release()
		if err := <-stolen; err != nil {
			t.Errorf("hold the lease: %v", err)
		}
	}()
	rolloutPoll(t, 2*time.Minute, "the controller to give up the lost lease", leading(0))

	// No leader: a new version is admitted (the webhook serves, and
	// mutates) but no canary is started.
	f.Update("example.com/checkout:v2")
	probe := deployment(f.Namespace, "probe", "example.com/probe:v1", 1)
	probe.Annotations = map[string]string{v1alpha1.AnnotationRollout: "canary"}
	if err := f.Kube.Create(context.Background(), probe); err != nil {
		t.Fatalf("create a Deployment without a leader: %v", err)
	}
	if probe.Spec.Template.Labels[v1alpha1.LabelRevision] == "" {
		t.Errorf("a Deployment was admitted without the webhook's labels: %v", probe.Spec.Template.Labels)
	}
	// A client that connects now gets its configuration: xDS serves.
	fresh := startLoad(t, f.Namespace, "checkout", 5)
	time.Sleep(3 * time.Second) // a leader would have started the canary by now
	if err := f.CanaryGone(context.Background()); err != nil {
		t.Errorf("a replica without the lease started a canary: %v", err)
	}
	if sluice.starts != starts {
		t.Fatalf("the controller was restarted")
	}
	if exited, err := sluice.proc.Exited(); exited {
		t.Fatalf("the controller exited after losing the lease: %v\n%s", err, sluice.Logs(40))
	}
	if err := get(sluice.HealthURL + "/readyz"); err != nil {
		t.Errorf("not ready without the lease: %v", err)
	}

	release()
	if err := <-stolen; err != nil {
		t.Fatalf("hold the lease: %v", err)
	}
	stolen <- nil // for the deferred check
	rolloutPoll(t, 2*time.Minute, "the controller to lead again", leading(1))
	f.Wait(4*time.Minute, "the rollout promoted after leading again", testkit.PhaseIs(v1alpha1.PhaseSucceeded))
	termsAfter, err := metricWith(context.Background(), sluice.MetricsURL, "sluice_leader_terms_total", "")
	if err != nil {
		t.Fatal(err)
	}
	if termsAfter != termsBefore+1 {
		t.Errorf("leader terms went from %v to %v, want one more", termsBefore, termsAfter)
	}
	checkLoads(t, "across the failover", map[string]*testkit.Load{"steady load": load, "load connected without a leader": fresh}, "v2")
}

// holdLease takes the controller's lease for holder and renews it every
// second until ctx ends, then leaves it expired, as a holder that stopped
// would, so the controller need not wait out the lease.
func holdLease(ctx context.Context, f *deliveryFixture, holder string) error {
	key := types.NamespacedName{Namespace: sluiceNamespace, Name: "sluice-controller"}
	update := func(ctx context.Context, held bool) error {
		var l coordinationv1.Lease
		if err := f.Kube.Get(ctx, key, &l); err != nil {
			return err
		}
		now := time.Now()
		l.Spec.HolderIdentity = ptr.To(holder)
		l.Spec.RenewTime = &metav1.MicroTime{Time: now}
		l.Spec.LeaseDurationSeconds = ptr.To[int32](15)
		if !held {
			l.Spec.RenewTime = &metav1.MicroTime{Time: now.Add(-time.Minute)}
			l.Spec.LeaseDurationSeconds = ptr.To[int32](1)
		}
		return f.Kube.Update(ctx, &l)
	}
	for ctx.Err() == nil {
		if err := update(ctx, true); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	for {
		err := update(context.Background(), false)
		if !apierrors.IsConflict(err) {
			return err
		}
	}
}

// get fails unless url answers 200.
func get(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}
