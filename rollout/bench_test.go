package rollout

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/rollout/analysis"
	"github.com/sluice-dev/sluice/rollout/metrics"
)

// BenchmarkRollbackTime measures, in simulated time, how long after a fault
// starts the state machine stores canary weight 0 ("to zero") and deletes the
// canary once the proxies confirmed it ("to deleted"), for canary error rates
// of 5, 20 and 100% and canary traffic of 5, 20 and 100 requests a second.
//
// The path is the production one except the data plane: requests are drawn
// at random (Poisson arrivals, Bernoulli errors) into cumulative per-track
// totals, metrics.LoadReports snapshots them every second as the controller
// does, the controller's analysis inputs (10 s recent window, step-long
// cumulative window) go through analysis.Evaluate and Step once a second, and
// every proxy confirms a weight by the next evaluation. The stable track gets
// ten times the canary's traffic without errors; the delivery is the built-in
// default (1% ceiling, 95% confidence, 20% critical tier, 100 samples).
// Reported: the median, 95th percentile and maximum over 40 runs.
func BenchmarkRollbackTime(b *testing.B) {
	for _, errRate := range []float64{0.05, 0.2, 1} {
		for _, rps := range []float64{5, 20, 100} {
			b.Run(fmt.Sprintf("errors=%g%%/canary=%greq/s", errRate*100, rps), func(b *testing.B) {
				var zero, deleted []time.Duration
				for i := 0; i < b.N; i++ {
					for run := 0; run < 40; run++ {
						z, d, err := simulateRollback(uint64(run), errRate, rps, 10*rps, 0)
						if err != nil {
							b.Fatal(err)
						}
						zero, deleted = append(zero, z), append(deleted, d)
					}
				}
				report(b, "to-zero", zero)
				report(b, "to-deleted", deleted)
			})
		}
	}
}

func report(b *testing.B, name string, ds []time.Duration) {
	slices.Sort(ds)
	q := func(p float64) float64 { return ds[min(int(p*float64(len(ds))), len(ds)-1)].Seconds() }
	b.ReportMetric(q(0.5), name+"-p50-s")
	b.ReportMetric(q(0.95), name+"-p95-s")
	b.ReportMetric(ds[len(ds)-1].Seconds(), name+"-max-s")
}

// BenchmarkRollbackTimeEndToEndScenario is BenchmarkRollbackTime for the
// scenario that e2e's BenchmarkDetectionEndToEnd runs on the real data plane:
// the canary at 20% errors and 20 requests a second on a 50% step, the stable
// track at 0.5% errors and the same 20 requests a second. 400 runs; the
// median, 95th percentile and maximum of the time to weight 0 (the decision:
// the simulated proxies stop at once).
func BenchmarkRollbackTimeEndToEndScenario(b *testing.B) {
	var zero []time.Duration
	for i := 0; i < b.N; i++ {
		for run := 0; run < 400; run++ {
			z, _, err := simulateRollback(uint64(run), 0.2, 20, 20, 0.005)
			if err != nil {
				b.Fatal(err)
			}
			zero = append(zero, z)
		}
	}
	report(b, "to-zero", zero)
}

// simulateRollback runs one faulty canary from its first confirmed step and
// returns the time from fault onset to weight 0 and to the canary's deletion.
// The stable track serves stableRPS requests a second failing at stableErr.
func simulateRollback(seed uint64, errRate, canaryRPS, stableRPS, stableErr float64) (toZero, toDeleted time.Duration, err error) {
	rng := rand.New(rand.NewPCG(seed, 7))
	totals := map[metrics.Key]metrics.Totals{}
	stableKey := metrics.Key{Namespace: "shop", Service: "checkout", Track: v1alpha1.TrackStable}
	canaryKey := metrics.Key{Namespace: "shop", Service: "checkout", Track: v1alpha1.TrackCanary}
	lr, err := metrics.NewLoadReports(func() map[metrics.Key]metrics.Totals { return totals }, 10*time.Minute)
	if err != nil {
		return 0, 0, err
	}
	spec := testSpec(v1alpha1.ModeCanary)
	onset := t0
	w := &world{
		dep:    DeploymentView{TemplateRevision: "b", PendingRevision: "b", Paused: true, Replicas: 10},
		spec:   spec,
		status: progressingAt(0, 100, &metav1.Time{Time: onset}),
		canary: readyCanary("b", 1),
		now:    onset,
	}
	if err := lr.Record(onset); err != nil {
		return 0, 0, err
	}
	const tick = 100 * time.Millisecond
	for now := onset.Add(tick); now.Sub(onset) < 10*time.Minute; now = now.Add(tick) {
		if w.status.CurrentWeight > 0 || (w.status.Phase == v1alpha1.PhaseRolledBack && w.status.StepStartedAt == nil) {
			// Proxies keep sending canary traffic until weight 0 is confirmed.
			add(rng, totals, canaryKey, canaryRPS*tick.Seconds(), errRate)
		}
		add(rng, totals, stableKey, stableRPS*tick.Seconds(), stableErr)
		if now.Sub(onset)%time.Second != 0 {
			continue
		}
		if err := lr.Record(now); err != nil {
			return 0, 0, err
		}
		w.now = now
		o := w.observe(nil)
		if n := NeedsOf(o); n.Analyse {
			in := analysis.Input{
				Recent:     tracks(lr, RecentWindow),
				Cumulative: tracks(lr, n.Cumulative),
			}
			o.Samples = &in
		}
		r := Step(o)
		w.store(r.Status)
		w.act(r.Actions)
		if r.Status.Phase == v1alpha1.PhaseRolledBack && toZero == 0 {
			toZero = now.Sub(onset)
		}
		if w.canary == nil {
			return toZero, now.Sub(onset), nil
		}
	}
	return 0, 0, fmt.Errorf("no rollback within 10 minutes at %g errors, %g req/s: %s", errRate, canaryRPS, w.status.Message)
}

// add draws a Poisson number of requests with mean and Bernoulli errors.
func add(rng *rand.Rand, totals map[metrics.Key]metrics.Totals, k metrics.Key, mean, errRate float64) {
	n := poisson(rng, mean)
	t := totals[k]
	t.Requests += n
	for range n {
		if rng.Float64() < errRate {
			t.Errors++
		}
	}
	totals[k] = t
}

func poisson(rng *rand.Rand, mean float64) uint64 {
	var n uint64
	for t := rng.ExpFloat64(); t < mean; t += rng.ExpFloat64() {
		n++
	}
	return n
}

func tracks(lr *metrics.LoadReports, window time.Duration) analysis.Tracks {
	q := func(track string) analysis.TrackSample {
		return metrics.Observe(context.Background(), lr, metrics.Query{Namespace: "shop", Service: "checkout", Track: track,
			Window: max(window.Truncate(time.Second), time.Second)})
	}
	return analysis.Tracks{Stable: q(v1alpha1.TrackStable), Canary: q(v1alpha1.TrackCanary)}
}
