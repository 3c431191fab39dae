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

	"github.com/sluice-dev/sluice/local/testkit"
	"github.com/sluice-dev/sluice/xds/auth"
	"github.com/sluice-dev/sluice/xds/translate"
)

// TestChaosRestartWithAThousandStreams restarts (SIGKILL, then start) a
// replica holding 1,000 ADS streams of 4 ServiceAccounts: every stream
// reconnects and is answered again, with a handful of TokenReviews, not one
// per stream. The time it takes is the reconnect-storm figure.
func TestChaosRestartWithAThousandStreams(t *testing.T) {
	const streams, accounts, conns = 1000, 4, 20
	s := deploy(t, "example.com/checkout:v1", nil)
	victim := sluice.Replicas[len(sluice.Replicas)-1]
	restartAfter(t, victim)
	route := translate.GRPCListenerName(s.Namespace, "checkout", 8080)

	// answered[i] is when stream i last received a response.
	var mu sync.Mutex
	answered := make([]time.Time, streams)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var reopened atomic.Int64 // streams that broke and were opened again
	for a := range accounts {
		token := testkit.ClientToken(t, env.Client(), s.Namespace, fmt.Sprintf("storm-%d", a), auth.DefaultAudience)
		for c := range conns / accounts {
			client := discovery.NewAggregatedDiscoveryServiceClient(testkit.DialXDS(t, victim.XDSAddr(), caFile, token))
			for k := range streams / conns {
				i := (a*(conns/accounts)+c)*(streams/conns) + k
				node := &corev3.Node{Id: fmt.Sprintf("storm-%d", i)}
				wg.Add(1)
				go func() {
					defer wg.Done()
					// One stream after the other: each ACKs what it gets
					// and, when its stream breaks, opens another afresh.
					testkit.SubscribeRoutes(ctx, client, node, route, false, func(*discovery.DiscoveryResponse) {
						mu.Lock()
						answered[i] = time.Now()
						mu.Unlock()
					}, func() { reopened.Add(1) })
				}()
			}
		}
	}
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
			if n < streams {
				return fmt.Errorf("%d of %d streams answered", n, streams)
			}
			return nil
		}
	}
	testkit.Poll(t, 3*time.Minute, "1,000 streams answered", allSince(time.Time{}))

	victim.Kill()
	killed := time.Now()
	startCtx, cancelStart := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancelStart()
	if err := victim.Start(startCtx); err != nil {
		t.Fatalf("restart %s: %v", victim.Name, err)
	}
	ready := time.Now()
	testkit.Poll(t, 5*time.Minute, "every stream answered again after the restart", allSince(killed))
	converged := time.Now()
	reviews, err := victim.Metric(context.Background(), "sluice_xds_token_reviews_total")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reconnect storm: %s killed and restarted (ready %s after the kill); all %d streams answered again %s after it was ready (%s after the kill), %d streams reopened; TokenReviews by the restarted replica: %.0f for %d ServiceAccounts",
		victim.Name, ready.Sub(killed).Round(time.Millisecond), streams, converged.Sub(ready).Round(time.Millisecond), converged.Sub(killed).Round(time.Millisecond), reopened.Load(), reviews, accounts)
	if reviews > 2*accounts {
		t.Errorf("%v TokenReviews for %d ServiceAccounts' 1,000 streams: a review storm", reviews, accounts)
	}
}
