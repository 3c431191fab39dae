package translate

import (
	"fmt"
	"testing"

	"github.com/sluice-dev/sluice/router"
)

// benchState is n services, each with a gRPC and an HTTP port, ten stable
// and two canary pods, a 5% canary step, a cohort and a sticky split.
func benchState(n int) router.State {
	var st router.State
	for i := 0; i < n; i++ {
		s := router.Service{
			Namespace: fmt.Sprintf("ns-%d", i%20),
			Name:      fmt.Sprintf("svc-%d", i),
			Ports: []router.Port{
				{Name: "grpc", Number: 9090, Protocol: router.ProtocolGRPC},
				{Name: "http", Number: 8080, Protocol: router.ProtocolHTTP},
			},
			Strategy: router.Strategy{
				CanaryWeight: 500,
				Cohorts:      []router.Cohort{{Source: router.SourceHeader, Name: "x-cohort", Match: router.MatchExact, Value: "beta"}},
				Sticky:       &router.Sticky{Source: router.SourceHeader, Name: "x-user", Share: 1000},
			},
		}
		for j := 0; j < 12; j++ {
			track := router.TrackStable
			if j >= 10 {
				track = router.TrackCanary
			}
			s.Endpoints = append(s.Endpoints, router.Endpoint{
				Pod: fmt.Sprintf("svc-%d-%d", i, j), IP: fmt.Sprintf("10.%d.%d.%d", i/256, i%256, j+1),
				Ports: map[string]uint32{"grpc": 9090, "http": 8080}, Ready: true, Track: track,
			})
		}
		st.Services = append(st.Services, s)
	}
	return st
}

// BenchmarkBuildTranslate reports the cost of turning a whole cluster's
// state into versioned resources, the work done once per change.
func BenchmarkBuildTranslate(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		st := benchState(n)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var resources int
			for b.Loop() {
				p, err := router.Build(st)
				if err != nil {
					b.Fatal(err)
				}
				res, err := Translate(p, Options{})
				if err != nil {
					b.Fatal(err)
				}
				resources = res.Len()
			}
			b.ReportMetric(float64(resources), "resources")
		})
	}
}
