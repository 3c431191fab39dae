package translate

import (
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/sluice-dev/sluice/router"
)

// traffic is continuous load on the harness's client: a few goroutines
// making RPCs back to back, recording every failure and the tracks of the
// most recent answers.
type traffic struct {
	stop chan struct{}
	done sync.WaitGroup

	mu       sync.Mutex
	ok       int
	failures []error
	// recent is a ring of the last len(recent) answering tracks; next is
	// where the next one goes, filled counts the valid entries.
	recent       [200]router.Track
	next, filled int
	// canarySince counts canary answers since the last mark.
	canarySince int
}

func startTraffic(h *xdsHarness, workers int) *traffic {
	tr := &traffic{stop: make(chan struct{})}
	for range workers {
		tr.done.Add(1)
		go func() {
			defer tr.done.Done()
			for {
				select {
				case <-tr.stop:
					return
				default:
				}
				track, err := h.call()
				tr.record(track, err)
			}
		}()
	}
	return tr
}

func (tr *traffic) record(track router.Track, err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if err != nil {
		tr.failures = append(tr.failures, err)
		return
	}
	tr.ok++
	tr.recent[tr.next] = track
	tr.next = (tr.next + 1) % len(tr.recent)
	tr.filled = min(tr.filled+1, len(tr.recent))
	if track == router.TrackCanary {
		tr.canarySince++
	}
}

// mark forgets the recent answers, so conditions only see answers given
// after it.
func (tr *traffic) mark() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.filled, tr.canarySince = 0, 0
}

// recentCanary returns how many of the last full window of answers came
// from the canary, and false while fewer answers than a window came since
// the last mark.
func (tr *traffic) recentCanary() (int, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.filled < len(tr.recent) {
		return 0, false
	}
	n := 0
	for _, t := range tr.recent {
		if t == router.TrackCanary {
			n++
		}
	}
	return n, true
}

func (tr *traffic) finish() (ok int, failures []error) {
	close(tr.stop)
	tr.done.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.ok, tr.failures
}

// waitFor polls cond every few milliseconds until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached before the deadline", what)
		}
		<-tick.C
	}
}

// TestProxylessGRPCWarmup shows make before break with grpc-go's own xDS
// client: because the plan's warm-up route names the canary cluster as soon
// as a canary pod exists, the client loads that cluster and connects to the
// canary pod before any weight moves, and moving the canary weight from 0%
// to 1%, 50%, 100% and back to 0% under continuous traffic fails no RPC.
// Without the warm-up route the first RPCs picked for the canary fail with
// "unknown cluster selected for RPC" while the client loads the cluster.
func TestProxylessGRPCWarmup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and a grpc-go xDS client")
	}
	h := newXDSHarness(t)
	canary := router.ClusterName("shop", "checkout", 9090, router.TrackCanary)
	canaryPod := h.backends[router.TrackCanary]

	// 1. A canary pod exists, the weight is 0%: all traffic on stable, but
	// the client loads the canary cluster through the warm-up route alone.
	h.publish(1, router.Strategy{})
	h.eventually("first RPC", func() (bool, error) {
		tr, err := h.call()
		return tr == router.TrackStable, err
	})
	waitFor(t, "client subscribed to the canary cluster's CDS and EDS", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.requested[resource.ClusterType][canary] && h.requested[resource.EndpointType][canary]
	})
	waitFor(t, "client connected to the canary pod", func() bool { return canaryPod.accepted.Load() > 0 })
	if n := canaryPod.served.Load(); n != 0 {
		t.Fatalf("at 0%% the canary served %d RPCs, want none", n)
	}

	// 2. Move the weight under continuous traffic; each step waits until the
	// answers show the client applied it.
	load := startTraffic(h, 4)
	steps := []struct {
		weight router.Weight
		what   string
		done   func() bool
	}{
		{100, "1% step reaches the canary", func() bool {
			load.mu.Lock()
			defer load.mu.Unlock()
			return load.canarySince > 0
		}},
		{5000, "50% step splits the last 200 answers", func() bool {
			// At 1% more than 50 of 200 is beyond 30 standard deviations.
			n, full := load.recentCanary()
			return full && n > 50 && n < 150
		}},
		{router.TotalWeight, "100% step sends the last 200 answers to the canary", func() bool {
			n, full := load.recentCanary()
			return full && n == 200
		}},
		{0, "rollback to 0% sends the last 200 answers to stable", func() bool {
			n, full := load.recentCanary()
			return full && n == 0
		}},
	}
	for i, step := range steps {
		load.mark()
		h.publish(2+i, router.Strategy{CanaryWeight: step.weight})
		waitFor(t, step.what, step.done)
	}
	ok, failures := load.finish()
	if len(failures) > 0 {
		t.Errorf("%d of %d RPCs failed while the weight moved; first: %v", len(failures), ok+len(failures), failures[0])
	}
	t.Logf("%d RPCs while the weight moved 0%% → 1%% → 50%% → 100%% → 0%%, %d failed", ok+len(failures), len(failures))
}
