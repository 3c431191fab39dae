package webhook

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/policies"
)

// Reasons of the Compiled condition.
const (
	ReasonCompiled      = "Compiled"
	ReasonCompileFailed = "CompileFailed"
)

// maxConditionMessage is the longest condition message the API accepts.
const maxConditionMessage = 32768

// statusWriter writes DeploymentPolicy status in batches: the Compiled
// condition with the compile error, observedGeneration, and the violation
// counts gathered by admission since the last batch.
//
// It runs on every replica, not only the leader: kube-apiserver spreads
// admission requests over all replicas, so each replica adds its own counts
// to the stored ones. Writes carry the resourceVersion read, so concurrent
// writers never lose each other's counts; a conflicted batch is kept and
// retried at the next tick. The condition is a pure function of the policy,
// so every replica writes the same one.
type statusWriter struct {
	store    *PolicyStore
	audit    *auditor
	client   client.Client
	interval time.Duration
	now      func() time.Time
	synced   func() bool
}

// NeedLeaderElection reports false: see statusWriter.
func (w *statusWriter) NeedLeaderElection() bool { return false }

// Start flushes every interval until ctx ends.
func (w *statusWriter) Start(ctx context.Context) error {
	log := logr.FromContextOrDiscard(ctx).WithName("policy-status")
	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if w.synced() {
				w.flush(ctx, log)
			}
		}
	}
}

// flush writes one batch.
func (w *statusWriter) flush(ctx context.Context, log logr.Logger) {
	deltas := w.audit.take()
	for _, e := range w.store.Snapshot().entries {
		d := deltas[e.name]
		delete(deltas, e.name)
		if err := w.write(ctx, e, d); err != nil {
			if len(d) > 0 {
				w.audit.giveBack(e.name, d)
			}
			if apierrors.IsConflict(err) {
				log.V(1).Info("policy status conflict; retrying at the next batch", "policy", e.name)
				continue
			}
			log.Error(err, "write policy status", "policy", e.name)
		}
	}
	// What is left belongs to policies deleted since: nothing to write to.
}

// write brings one policy's status up to date.
func (w *statusWriter) write(ctx context.Context, e *storeEntry, counts []v1alpha1.ViolationCount) error {
	p := &v1alpha1.DeploymentPolicy{}
	if err := w.client.Get(ctx, types.NamespacedName{Name: e.name}, p); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("read DeploymentPolicy %s: %w", e.name, err)
	}
	if p.UID != e.uid {
		return nil
	}
	if p.Generation != e.generation {
		return fmt.Errorf("DeploymentPolicy %s generation %d is not compiled yet", e.name, p.Generation)
	}
	want := p.Status.DeepCopy()
	meta.SetStatusCondition(&want.Conditions, compiledCondition(e, w.now()))
	want.ObservedGeneration = e.generation
	if len(counts) > 0 {
		want.Violations = policies.AddCounts(want.Violations, counts)
	}
	if equality.Semantic.DeepEqual(want, &p.Status) {
		return nil
	}
	p.Status = *want
	if err := w.client.Status().Update(ctx, p); err != nil {
		return fmt.Errorf("update status of DeploymentPolicy %s: %w", e.name, err)
	}
	return nil
}

// compiledCondition is the Compiled condition of a store entry.
func compiledCondition(e *storeEntry, now time.Time) metav1.Condition {
	c := metav1.Condition{
		Type:               v1alpha1.ConditionCompiled,
		Status:             metav1.ConditionTrue,
		Reason:             ReasonCompiled,
		Message:            "every rule compiled; the policy is applied at admission",
		ObservedGeneration: e.generation,
		LastTransitionTime: metav1.NewTime(now),
	}
	if e.err != nil {
		c.Status = metav1.ConditionFalse
		c.Reason = ReasonCompileFailed
		c.Message = e.err.Error()
		if len(c.Message) > maxConditionMessage {
			c.Message = c.Message[:maxConditionMessage-3] + "..."
		}
	}
	return c
}
