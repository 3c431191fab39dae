package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/e2e/testkit"
)

// BenchmarkDetectionEndToEnd measures on the real data plane the time from
// fault onset to zero canary traffic, for the scenario that the rollout
// package's BenchmarkRollbackTimeEndToEndScenario simulates: the canary fails
// 20% of its requests (independent, seeded faults of the pod runtime) at 20
// requests a second on a 50% step, while the stable track serves the other
// 20 requests a second failing 0.5% of them; built-in analysis defaults.
//
// Onset is the first request any of the two grpc-go xDS clients got answered
// by the canary (it is faulty from its first request, and 4 in 5 of its
// answers succeed, so this is within about a request interval of its first
// request); zero is the last request they got answered by it (its last
// request may have failed, which makes this up to a few request intervals
// early). Both clients send 20 requests a second in total. Each iteration is
// a whole delivery in a namespace of its own; run it with -benchtime=Nx for
// N deliveries.
// Conditions: the local cluster and the controller on the same machine,
// shared with other work; load reports every second.
func BenchmarkDetectionEndToEnd(b *testing.B) {
	var toZero []time.Duration
	for i := 0; i < b.N; i++ {
		z := detectOnce(b, i)
		b.Logf("delivery %d: onset to zero canary traffic %s", i, z.Round(time.Millisecond))
		toZero = append(toZero, z)
	}
	reportDurations(b, "to-zero", toZero)
}

func detectOnce(b *testing.B, run int) time.Duration {
	seed := func(base int) corev1.EnvVar {
		return corev1.EnvVar{Name: "SIM_SEED", Value: fmt.Sprint(base + run)}
	}
	f := newDelivery(b, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "50", v1alpha1.AnnotationStepInterval: "10m"}, errorRate("0.005"), seed(1000))
	loads := []*testkit.Load{startLoad(b, f.Namespace, "checkout", 20), startLoad(b, f.Namespace, "checkout", 20)}
	f.Update("example.com/checkout:bad", errorRate("0.2"), seed(2000))
	f.Wait(5*time.Minute, "rolled back", testkit.PhaseIs(v1alpha1.PhaseRolledBack))
	rolloutPoll(b, time.Minute, "canary deleted", f.CanaryGone)
	var onset, last time.Time
	for _, l := range loads {
		l.Stop()
		first, end, ok := l.Seen("bad")
		if ok && (onset.IsZero() || first.Before(onset)) {
			onset = first
		}
		if end.After(last) {
			last = end
		}
	}
	if onset.IsZero() {
		b.Fatalf("the canary answered no request")
	}
	return last.Sub(onset)
}

// reportDurations reports the median and the largest of ds in seconds.
func reportDurations(b *testing.B, name string, ds []time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	b.ReportMetric(s[len(s)/2].Seconds(), name+"-p50-s")
	b.ReportMetric(s[len(s)-1].Seconds(), name+"-max-s")
}
