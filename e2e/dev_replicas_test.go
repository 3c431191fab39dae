package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// replicaLine is what `sluice dev --replicas N` prints about each replica.
var replicaLine = regexp.MustCompile(`sluice: replica (\S+) pid (\d+): .* metrics (http://\S+/metrics)`)

// TestDevReplicasGoOnWhenOneIsKilled runs `sluice dev --replicas 2` on a
// cluster of its own: it prints each replica's process id and ports and
// writes a bootstrap per replica next to the one listing them all; after
// the leader is killed (SIGKILL), the other replica leads.
func TestDevReplicasGoOnWhenOneIsKilled(t *testing.T) {
	dir := t.TempDir()
	devDir := filepath.Join(dir, "dev")
	dev := startDev(t, dir, "--replicas", "2", "--dir", devDir, "--dashboard-port", "0")
	terminal := dev.terminal
	type replica struct {
		pid     int
		metrics string
	}
	replicas := map[string]replica{}
	rolloutPoll(t, 5*time.Minute, "both replicas printed and the bootstraps written", func(context.Context) error {
		dev.checkRunning()
		text := terminal()
		if !strings.Contains(text, "export GRPC_XDS_BOOTSTRAP=") {
			return errors.New("no bootstrap printed yet")
		}
		for _, m := range replicaLine.FindAllStringSubmatch(text, -1) {
			pid, err := strconv.Atoi(m[2])
			if err != nil {
				return err
			}
			replicas[m[1]] = replica{pid: pid, metrics: m[3]}
		}
		if len(replicas) != 2 {
			return fmt.Errorf("%d replicas printed:\n%s", len(replicas), tail(text, 10))
		}
		return nil
	})
	all, err := os.ReadFile(filepath.Join(devDir, "xds-bootstrap.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name := range replicas {
		one, err := os.ReadFile(filepath.Join(devDir, "xds-bootstrap-"+name+".json"))
		if err != nil {
			t.Fatalf("no bootstrap of replica %s: %v", name, err)
		}
		if strings.Count(string(one), "server_uri") != 1 {
			t.Errorf("replica %s's bootstrap names other servers:\n%s", name, one)
		}
	}
	if n := strings.Count(string(all), "server_uri"); n != 2 {
		t.Errorf("the printed bootstrap lists %d servers, want both replicas:\n%s", n, all)
	}

	leading := func(name string) (bool, error) {
		v, err := metricWith(context.Background(), replicas[name].metrics, "sluice_leader", "")
		return v == 1, err
	}
	var leader string
	rolloutPoll(t, time.Minute, "one replica leads", func(context.Context) error {
		for name := range replicas {
			if ok, err := leading(name); err == nil && ok {
				leader = name
				return nil
			}
		}
		return errors.New("no replica says it leads")
	})
	if err := syscall.Kill(replicas[leader].pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the leader %s: %v", leader, err)
	}
	rolloutPoll(t, 2*time.Minute, "the other replica leads", func(context.Context) error {
		for name := range replicas {
			if name == leader {
				continue
			}
			ok, err := leading(name)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s does not lead yet", name)
			}
		}
		return nil
	})
}
