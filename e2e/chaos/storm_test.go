package chaos

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/sluice-dev/sluice/e2e/testkit"
	"github.com/sluice-dev/sluice/local/fleet"
	"github.com/sluice-dev/sluice/xds/auth"
	"github.com/sluice-dev/sluice/xds/translate"
)

// TestChaosRestartWithAThousandStreams restarts (SIGKILL, then start) a
// replica holding 1,000 ADS streams of 4 ServiceAccounts: every stream
// reconnects and is answered again, with a handful of TokenReviews, not one
// per stream. The time it takes is the reconnect-storm figure.
func TestChaosRestartWithAThousandStreams(t *testing.T) {
	s, victim := stormVictim(t)

	// answered[i] is when stream i last received a response.
	var mu sync.Mutex
	answered := make([]time.Time, stormStreams)
	// One stream after the other: each ACKs what it gets and, when its
	// stream breaks, opens another afresh.
	reopened := s.storm(t, victim, "storm", false, func(i int) {
		mu.Lock()
		answered[i] = time.Now()
		mu.Unlock()
	})
	allSince := func(since time.Time) func(context.Context) error {
		return func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, at := range answered {
				if at.After(since) {
					n++
				}
			}
			if n < stormStreams {
				return fmt.Errorf("%d of %d streams answered", n, stormStreams)
			}
			return nil
		}
	}
	testkit.Poll(t, 3*time.Minute, "1,000 streams answered", allSince(time.Time{}))

	killed, ready := restart(t, victim)
	testkit.Poll(t, 5*time.Minute, "every stream answered again after the restart", allSince(killed))
	converged := time.Now()
	reviews, err := victim.Metric(context.Background(), "sluice_xds_token_reviews_total")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reconnect storm: %s killed and restarted (ready %s after the kill); all %d streams answered again %s after it was ready (%s after the kill), %d streams reopened; TokenReviews by the restarted replica: %.0f for %d ServiceAccounts",
		victim.Name, ready.Sub(killed).Round(time.Millisecond), stormStreams, converged.Sub(ready).Round(time.Millisecond), converged.Sub(killed).Round(time.Millisecond), reopened.Load(), reviews, stormAccounts)
	if reviews > 2*stormAccounts {
		t.Errorf("%v TokenReviews for %d ServiceAccounts' 1,000 streams: a review storm", reviews, stormAccounts)
	}
}

// A storm is stormStreams ADS streams of stormAccounts ServiceAccounts over
// stormConns connections to one replica.
const stormStreams, stormAccounts, stormConns = 1000, 4, 20

// stormVictim deploys checkout and names the replica a storm test
// restarts; it is restarted after the test if it is down.
func stormVictim(t *testing.T) (*service, *fleet.Replica) {
	t.Helper()
	s := deploy(t, "example.com/checkout:v1", nil)
	victim := sluice.Replicas[len(sluice.Replicas)-1]
	restartAfter(t, victim)
	return s, victim
}

// storm opens a storm of streams to r, each subscribed to the service's
// route configuration with testkit.SubscribeRoutes (resume as given) until
// the test ends, calling answered(i) on each response to stream i. It
// returns the count of streams that broke and were opened again.
func (s *service) storm(t *testing.T, r *fleet.Replica, prefix string, resume bool, answered func(i int)) *atomic.Int64 {
	t.Helper()
	route := translate.GRPCListenerName(s.Namespace, "checkout", 8080)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var reopened atomic.Int64
	for a := range stormAccounts {
		token := testkit.ClientToken(t, env.Client(), s.Namespace, fmt.Sprintf("%s-%d", prefix, a), auth.DefaultAudience)
		for c := range stormConns / stormAccounts {
			client := discovery.NewAggregatedDiscoveryServiceClient(testkit.DialXDS(t, r.XDSAddr(), caFile, token))
			for k := range stormStreams / stormConns {
				i := (a*(stormConns/stormAccounts)+c)*(stormStreams/stormConns) + k
				node := &corev3.Node{Id: fmt.Sprintf("%s-%d", prefix, i)}
				wg.Add(1)
				go func() {
					defer wg.Done()
					testkit.SubscribeRoutes(ctx, client, node, route, resume,
						func(*discovery.DiscoveryResponse) { answered(i) }, func() { reopened.Add(1) })
				}()
			}
		}
	}
	// Registered after the connections' own cleanups, so it runs first.
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &reopened
}

// restart kills r (SIGKILL) and starts it again within two minutes; it
// returns when r was killed and when it was ready again.
func restart(t *testing.T, r *fleet.Replica) (killed, ready time.Time) {
	t.Helper()
	r.Kill()
	killed = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatalf("restart %s: %v", r.Name, err)
	}
	return killed, time.Now()
}
