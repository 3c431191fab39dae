package traffic

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/translate"
)

// BenchmarkConfirmAllStreams measures the time from a weight change (an
// urgent Rollout change seen by the controller) to the last of N ADS streams
// acknowledging the new routes, as Confirm observes it. The streams are raw
// state-of-the-world ADS streams in this process over loopback gRPC (100
// streams per connection), each subscribed to the service's route
// configuration and acknowledging every response; the xDS server, the
// controller and the clients share the machine's cores. It also reports the
// heap held per connected stream, client and server side together.
func BenchmarkConfirmAllStreams(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			srv, addr := xdsServer(b, logr.Discard())
			src := newFakeSource(canaryObjects(0))
			c := startController(b, srv, src, Options{Logger: logr.Discard()})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			confirmAll := func(w router.Weight) time.Duration {
				start := time.Now()
				cctx, ccancel := context.WithTimeout(ctx, time.Minute)
				defer ccancel()
				conf, err := c.Confirm(cctx, "shop", "checkout", w)
				if err != nil {
					b.Fatal(err)
				}
				if conf.Acked != n {
					b.Fatalf("%d streams acknowledged, want %d", conf.Acked, n)
				}
				return time.Since(start)
			}

			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			var clients []adsClient
			for i := range n {
				if i%100 == 0 {
					clients = append(clients, dialADS(b, addr))
				}
				ads := clients[len(clients)-1]
				if _, err := startProxy(ctx, ads, fmt.Sprintf("bench-%d", i), resource.RouteType, []string{checkoutRoute}, ackAll); err != nil {
					b.Fatal(err)
				}
			}
			// Wait until every stream carries the current routes.
			deadline := time.Now().Add(2 * time.Minute)
			for {
				cctx, ccancel := context.WithTimeout(ctx, time.Minute)
				conf, err := c.Confirm(cctx, "shop", "checkout", 0)
				ccancel()
				if err != nil {
					b.Fatal(err)
				}
				if conf.Acked == n {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("only %d of %d streams subscribed", conf.Acked, n)
				}
				time.Sleep(50 * time.Millisecond)
			}
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)

			durations := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				w := v1alpha1.BasisPoints(1000 + 1000*(i%2))
				src.set(canaryObjects(w), true)
				durations = append(durations, confirmAll(router.Weight(w)))
			}
			b.StopTimer()
			slices.Sort(durations)
			pct := func(p float64) float64 {
				return float64(durations[int(p*float64(len(durations)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.5), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(durations[len(durations)-1].Microseconds())/1000, "max-ms")
			b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(n), "heap-B/stream")
		})
	}
}

// BenchmarkPlanAndTranslate measures StateFrom + router.Build +
// translate.Translate for S services, each with two stable pods, one canary
// pod and an active canary Rollout at 10%.
func BenchmarkPlanAndTranslate(b *testing.B) {
	for _, s := range []int{100, 1000, 10_000} {
		b.Run(fmt.Sprintf("services=%d", s), func(b *testing.B) {
			objs := manyServices(s)
			b.ReportAllocs()
			b.ResetTimer()
			var (
				resources                  int
				stateT, buildT, translateT time.Duration
			)
			for range b.N {
				t0 := time.Now()
				state, problems := StateFrom(objs)
				if len(problems) > 0 {
					b.Fatal(problems)
				}
				t1 := time.Now()
				plan, err := router.Build(state)
				if err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				res, err := translate.Translate(plan, translate.Options{})
				if err != nil {
					b.Fatal(err)
				}
				stateT, buildT, translateT = stateT+t1.Sub(t0), buildT+t2.Sub(t1), translateT+time.Since(t2)
				resources = res.Len()
			}
			per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
			b.ReportMetric(per(stateT), "state-ms")
			b.ReportMetric(per(buildT), "build-ms")
			b.ReportMetric(per(translateT), "translate-ms")
			b.ReportMetric(float64(resources), "resources")
		})
	}
}

func manyServices(s int) Objects {
	var objs Objects
	for i := range s {
		name := fmt.Sprintf("svc-%d", i)
		ip := func(k int) string { return fmt.Sprintf("10.%d.%d.%d", i/250, i%250, k+1) }
		objs.Pods = append(objs.Pods,
			pod(name+"-a", name, ip(0)),
			pod(name+"-b", name, ip(1)),
			pod(name+"-canary", name, ip(2), canaryPod),
		)
		objs.Rollouts = append(objs.Rollouts, rollout(name, v1alpha1.ModeCanary, v1alpha1.PhaseProgressing, 1000))
	}
	objs.Services = []corev1.Service{}
	return objs
}
