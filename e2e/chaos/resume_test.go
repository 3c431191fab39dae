package chaos

import (
	"context"
	"fmt"
	"strings"
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

// TestChaosRestartResumesAThousandStreams restarts (SIGKILL, then start) a
// replica holding 1,000 ADS streams of 4 ServiceAccounts that, like
// grpc-go and Envoy, present the version they last acknowledged when they
// open a stream again. The restarted replica serves the same contents under
// the same versions, so it counts every stream as carrying them and sends
// none of them anything.
func TestChaosRestartResumesAThousandStreams(t *testing.T) {
	const streams, accounts, conns = 1000, 4, 20
	s := deploy(t, "example.com/checkout:v1", nil)
	victim := sluice.Replicas[len(sluice.Replicas)-1]
	restartAfter(t, victim)
	route := translate.GRPCListenerName(s.Namespace, "checkout", 8080)

	var answered, reopened atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for a := range accounts {
		token := testkit.ClientToken(t, env.Client(), s.Namespace, fmt.Sprintf("resume-%d", a), auth.DefaultAudience)
		for c := range conns / accounts {
			client := discovery.NewAggregatedDiscoveryServiceClient(testkit.DialXDS(t, victim.XDSAddr(), caFile, token))
			for k := range streams / conns {
				node := &corev3.Node{Id: fmt.Sprintf("resume-%d-%d-%d", a, c, k)}
				wg.Add(1)
				go func() {
					defer wg.Done()
					// A stream that breaks is opened again presenting the
					// version last acknowledged.
					first := true
					testkit.SubscribeRoutes(ctx, client, node, route, true, func(*discovery.DiscoveryResponse) {
						if first {
							first = false
							answered.Add(1)
						}
					}, func() { reopened.Add(1) })
				}()
			}
		}
	}
	testkit.Poll(t, 3*time.Minute, "1,000 streams answered", func(context.Context) error {
		if n := answered.Load(); n < streams {
			return fmt.Errorf("%d of %d streams answered", n, streams)
		}
		return nil
	})

	victim.Kill()
	killed := time.Now()
	startCtx, cancelStart := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancelStart()
	if err := victim.Start(startCtx); err != nil {
		t.Fatalf("restart %s: %v", victim.Name, err)
	}
	ready := time.Now()
	testkit.Poll(t, 5*time.Minute, "every stream connected again", func(ctx context.Context) error {
		n, err := victim.Metric(ctx, "sluice_xds_connected_proxies")
		if err != nil {
			return err
		}
		if n < streams {
			return fmt.Errorf("%v of %d streams connected", n, streams)
		}
		return nil
	})
	back := time.Now()
	// A stream is counted connected before its first request is handled;
	// give the last ones the time to be answered, if they were to be.
	time.Sleep(2 * time.Second)
	pushes, err := victim.Metric(context.Background(), "sluice_xds_pushes_total")
	if err != nil {
		// The counter has a series per type pushed: none at all means the
		// replica sent no response yet.
		if !strings.Contains(err.Error(), "exports no") {
			t.Fatal(err)
		}
		pushes = 0
	}
	t.Logf("resumed storm: %s killed and restarted (ready %s after the kill); all %d streams connected again %s after the kill, %d streams reopened; responses the restarted replica sent: %.0f",
		victim.Name, ready.Sub(killed).Round(time.Millisecond), streams, back.Sub(killed).Round(time.Millisecond), reopened.Load(), pushes)
	if pushes != 0 {
		t.Errorf("the restarted replica sent %.0f responses to streams that resumed at the contents it serves; want none", pushes)
	}
}
