package main

import (
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sluice-dev/sluice/internal/leadership"
)

// leaseName is the Lease the replicas elect their leader with.
const leaseName = "sluice-controller"

// campaign returns the leader-only work's campaign: for the Lease in
// --namespace with --leader-elect, else one term for the process's life.
func (o controllerOptions) campaign(cs kubernetes.Interface, log logr.Logger) (*leadership.Campaign, error) {
	c := &leadership.Campaign{
		LeaseDuration: o.leaseDuration,
		RenewDeadline: o.renewDeadline,
		RetryPeriod:   o.retryPeriod,
		Logger:        log.WithName("leadership"),
	}
	if err := c.Register(ctrlmetrics.Registry); err != nil {
		return nil, err
	}
	if !o.leaderElect {
		return c, nil
	}
	name := o.replicaName
	if name == "" {
		name = hostname()
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.namespace, leaseName,
		cs.CoreV1(), cs.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: name + "_" + string(uuid.NewUUID())})
	if err != nil {
		return nil, fmt.Errorf("leader lease: %w", err)
	}
	c.Lock = lock
	return c, nil
}

// electedManager is the manager the components are added to: runnables that
// need the lease go to the campaign, which starts them anew in every term
// this replica leads; the rest run on every replica.
type electedManager struct {
	manager.Manager
	campaign *leadership.Campaign
}

// Add routes r by its NeedLeaderElection (a runnable without the method
// needs the lease, as in controller-runtime).
func (m electedManager) Add(r manager.Runnable) error {
	if le, ok := r.(manager.LeaderElectionRunnable); ok && !le.NeedLeaderElection() {
		return m.Manager.Add(r)
	}
	return m.campaign.Add(r)
}

// leaseFlags are the lease timings' defaults, those of kube components.
var leaseFlags = struct{ duration, renew, retry time.Duration }{
	leadership.DefaultLeaseDuration, leadership.DefaultRenewDeadline, leadership.DefaultRetryPeriod,
}
