package chaos

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/e2e/testkit"
)

// TestChaosRestartResumesAThousandStreams restarts (SIGKILL, then start) a
// replica holding 1,000 ADS streams of 4 ServiceAccounts that, like
// grpc-go and Envoy, present the version they last acknowledged when they
// open a stream again. The restarted replica serves the same contents under
// the same versions, so it counts every stream as carrying them and sends
// none of them anything.
func TestChaosRestartResumesAThousandStreams(t *testing.T) {
	s, victim := stormVictim(t)

	// Each stream that breaks is opened again presenting the version it
	// last acknowledged; answered counts the streams answered at least once.
	var answered atomic.Int64
	var got [stormStreams]atomic.Bool
	reopened := s.storm(t, victim, "resume", true, func(i int) {
		if !got[i].Swap(true) {
			answered.Add(1)
		}
	})
	testkit.Poll(t, 3*time.Minute, "1,000 streams answered", func(context.Context) error {
		if n := answered.Load(); n < stormStreams {
			return fmt.Errorf("%d of %d streams answered", n, stormStreams)
		}
		return nil
	})

	killed, ready := restart(t, victim)
	testkit.Poll(t, 5*time.Minute, "every stream connected again", func(ctx context.Context) error {
		n, err := victim.Metric(ctx, "sluice_xds_connected_proxies")
		if err != nil {
			return err
		}
		if n < stormStreams {
			return fmt.Errorf("%v of %d streams connected", n, stormStreams)
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
		victim.Name, ready.Sub(killed).Round(time.Millisecond), stormStreams, back.Sub(killed).Round(time.Millisecond), reopened.Load(), pushes)
	if pushes != 0 {
		t.Errorf("the restarted replica sent %.0f responses to streams that resumed at the contents it serves; want none", pushes)
	}
}
