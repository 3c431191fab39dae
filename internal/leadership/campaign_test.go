package leadership

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// work records the terms it runs in.
type work struct {
	mu     sync.Mutex
	starts int
	ends   int
	start  chan struct{}
	end    chan struct{}
}

func newWork() *work { return &work{start: make(chan struct{}, 8), end: make(chan struct{}, 8)} }

func (w *work) Start(ctx context.Context) error {
	w.mu.Lock()
	w.starts++
	w.mu.Unlock()
	w.start <- struct{}{}
	<-ctx.Done()
	w.mu.Lock()
	w.ends++
	w.mu.Unlock()
	w.end <- struct{}{}
	return nil
}

// leases is a fake API server for Leases that, like the real one, refuses
// an update carrying a stale resourceVersion (the client-go fake does not).
func leases() *fake.Clientset {
	cs := fake.NewClientset()
	var mu sync.Mutex
	cs.PrependReactor("*", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		tr := cs.Tracker()
		gvr := coordinationv1.SchemeGroupVersion.WithResource("leases")
		obj, ok := a.(interface{ GetObject() runtime.Object })
		if !ok {
			return false, nil, nil // reads: the tracker answers
		}
		l := obj.GetObject().(*coordinationv1.Lease).DeepCopy()
		switch a.GetVerb() {
		case "create":
			l.ResourceVersion = "1"
			if err := tr.Create(gvr, l, a.GetNamespace()); err != nil {
				return true, nil, err
			}
			return true, l, nil
		case "update":
			cur, err := tr.Get(gvr, a.GetNamespace(), l.Name)
			if err != nil {
				return true, nil, err
			}
			rv, err := strconv.Atoi(cur.(*coordinationv1.Lease).ResourceVersion)
			if err != nil || l.ResourceVersion != strconv.Itoa(rv) {
				return true, nil, apierrors.NewConflict(gvr.GroupResource(), l.Name, errors.New("stale resourceVersion"))
			}
			l.ResourceVersion = strconv.Itoa(rv + 1)
			if err := tr.Update(gvr, l, a.GetNamespace()); err != nil {
				return true, nil, err
			}
			return true, l, nil
		}
		return false, nil, nil
	})
	return cs
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestLosingTheLeaseEndsTheTermNotTheCampaign steals the lease from a
// leading campaign: its work stops, the campaign goes on, and when the thief
// stops renewing it leads again with its work started anew.
func TestLosingTheLeaseEndsTheTermNotTheCampaign(t *testing.T) {
	cs := leases()
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, "sluice-system", "sluice-controller",
		cs.CoreV1(), cs.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: "replica-a"})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c := &Campaign{Lock: lock, LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond, Logger: testr.New(t)}
	if err := c.Register(reg); err != nil {
		t.Fatal(err)
	}
	w := newWork()
	if err := c.Add(w); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()

	wait(t, w.start, "the first term")
	if !c.Leading() {
		t.Fatal("work runs but the campaign does not say it leads")
	}

	// Another holder takes the lease and keeps renewing it.
	thief, stopThief := context.WithCancel(context.Background())
	stolen := make(chan struct{})
	go func() {
		first := true
		for thief.Err() == nil {
			l, err := cs.CoordinationV1().Leases("sluice-system").Get(thief, "sluice-controller", metav1.GetOptions{})
			if err == nil {
				now := metav1.NewMicroTime(time.Now())
				l.Spec.HolderIdentity = ptr.To("thief")
				l.Spec.RenewTime = &now
				l.Spec.LeaseDurationSeconds = ptr.To[int32](2)
				if _, err := cs.CoordinationV1().Leases("sluice-system").Update(thief, l, metav1.UpdateOptions{}); err == nil && first {
					close(stolen)
					first = false
				}
			}
			select {
			case <-thief.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	wait(t, stolen, "the lease to be stolen")
	wait(t, w.end, "the term to end after losing the lease")
	// The term ends once all its work has returned.
	for deadline := time.Now().Add(time.Minute); c.Leading(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the campaign still says it leads a minute after its work stopped")
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the campaign ended with the lease: %v", err)
	default:
	}

	stopThief()
	wait(t, w.start, "a second term once the thief stopped renewing")
	if got := testutil.ToFloat64(c.terms); got != 2 {
		t.Fatalf("sluice_leader_terms_total = %v, want 2", got)
	}
	if got := testutil.ToFloat64(c.gauge); got != 1 {
		t.Fatalf("sluice_leader = %v while leading", got)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Start = %v after its context ended", err)
	}
	l, err := cs.CoordinationV1().Leases("sluice-system").Get(context.Background(), "sluice-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := ptr.Deref(l.Spec.HolderIdentity, ""); h != "" {
		t.Fatalf("lease still held by %q after the campaign stopped (want released)", h)
	}
}

type failing struct{}

func (failing) Start(context.Context) error { return errors.New("cannot watch") }

// TestFailingWorkEndsTheCampaign: an error of leader-only work is the
// process's error, as it is for any runnable, and the lease is given up.
func TestFailingWorkEndsTheCampaign(t *testing.T) {
	cs := leases()
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, "ns", "l", cs.CoreV1(), cs.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: "a"})
	if err != nil {
		t.Fatal(err)
	}
	c := &Campaign{Lock: lock, RetryPeriod: 50 * time.Millisecond, Logger: testr.New(t)}
	w := newWork()
	for _, r := range []manager.Runnable{w, failing{}} {
		if err := c.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	err = c.Start(context.Background())
	if err == nil || err.Error() != "cannot watch" {
		t.Fatalf("Start = %v, want the work's error", err)
	}
	if w.ends != w.starts {
		t.Fatalf("work started %d times, stopped %d", w.starts, w.ends)
	}
	if err := c.Add(w); err == nil {
		t.Fatal("Add after Start succeeded")
	}
}

// TestWithoutElectionOneTerm: without a lock the work runs once, for the
// campaign's life.
func TestWithoutElectionOneTerm(t *testing.T) {
	c := &Campaign{Logger: testr.New(t)}
	w := newWork()
	if err := c.Add(w); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	wait(t, w.start, "the term")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if w.starts != 1 || w.ends != 1 {
		t.Fatalf("starts %d ends %d", w.starts, w.ends)
	}
}
