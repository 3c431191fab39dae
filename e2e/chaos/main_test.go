// Package chaos holds the failure tests of a Sluice fleet: two controller
// replicas (package local/fleet) on a local cluster of their own, so that
// pausing its API server disturbs no other test, with grpc-go xDS clients
// under continuous traffic reaching the replicas through one address in
// front of them, as a Service would. Replicas are killed, restarted and
// paused while rollouts run; each test states what must still hold.
//
// `make soak` runs them repeatedly (SOAK_COUNT times).
package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sluice-dev/sluice/local/cluster"
	"github.com/sluice-dev/sluice/local/fleet"
	"github.com/sluice-dev/sluice/webhook"
)

// sluiceNamespace is where the replicas keep their lease and certificates.
const sluiceNamespace = "sluice-system"

// Lease timings of the fleet under test: short, so failovers are quick.
var leaseArgs = []string{
	"--leader-elect-lease-duration=4s",
	"--leader-elect-renew-deadline=3s",
	"--leader-elect-retry-period=500ms",
	"--proxy-stale-after=5s",
	"--canary-deletion-wait=20s",
}

var (
	env    *cluster.Cluster
	sluice *fleet.Fleet
	caFile string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Fprintln(os.Stderr, "chaos: not run with -short (they need a local cluster)")
		return 0
	}
	ctrllog.SetLogger(logr.Discard())
	dir, err := os.MkdirTemp("", "sluice-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	env, err = cluster.Start(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster"), Progress: os.Stderr, Log: logr.Discard()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: start local cluster:", err)
		return 1
	}
	defer env.Stop()
	if err := startFleet(ctx, dir); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: start the fleet:", err)
		if sluice != nil {
			for _, r := range sluice.Replicas {
				if r.Pid() != 0 {
					fmt.Fprintf(os.Stderr, "chaos: %s log:\n%s\n", r.Name, r.Logs(40))
				}
			}
		}
		return 1
	}
	defer sluice.Stop()
	code := m.Run()
	if code != 0 {
		for _, r := range sluice.Replicas {
			fmt.Fprintf(os.Stderr, "chaos: %s log:\n%s\n", r.Name, r.Logs(60))
		}
	}
	return code
}

// startFleet builds sluice, installs it and starts two replicas.
func startFleet(ctx context.Context, dir string) error {
	bin := filepath.Join(dir, "sluice")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../../cmd/sluice").CombinedOutput(); err != nil {
		return fmt.Errorf("build sluice: %w\n%s", err, out)
	}
	f, err := fleet.New(fleet.Options{
		Binary: bin, Kubeconfig: env.Kubeconfig(), Dir: dir, Replicas: 2,
		Namespace: sluiceNamespace, Args: leaseArgs,
	})
	if err != nil {
		return err
	}
	sluice = f
	mutating, validating, err := webhook.Configurations(webhook.ConfigOptions{URL: "https://" + f.Webhook.Addr(), OwnNamespace: sluiceNamespace})
	if err != nil {
		return err
	}
	if err := env.Install(ctx, sluiceNamespace, mutating, validating); err != nil {
		return err
	}
	if err := f.Start(ctx); err != nil {
		return err
	}
	caFile = filepath.Join(dir, "xds-ca.crt")
	return certsCAFile(ctx, caFile)
}
