package interop

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/local/cluster"
	"github.com/sluice-dev/sluice/local/fleet"
	"github.com/sluice-dev/sluice/webhook"
)

// sluiceNamespace is where the controller under test keeps its lease and
// certificates.
const sluiceNamespace = "sluice-system"

// controllerEnv is a local cluster of this package's own with one real
// `sluice controller` process on it (through local/fleet, as `sluice dev`
// runs it): its TLS xDS port behind the fleet's front, and its plaintext
// legacy listener for the namespaces labelled sluice.dev/legacy-xds=enabled.
type controllerEnv struct {
	dir     string
	cluster *cluster.Cluster
	fleet   *fleet.Fleet
	// caFile verifies the xDS serving certificate.
	caFile string
}

// LegacyAddr is the controller's plaintext legacy listener.
func (e *controllerEnv) LegacyAddr() string {
	return fmt.Sprintf("127.0.0.1:%d", e.fleet.Replicas[0].Legacy)
}

var (
	ctlReady = make(chan struct{})
	ctl      *controllerEnv
	ctlErr   error
	ctlStart sync.Once
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	if !testing.Short() {
		// The cluster starts while the in-process tests run; the
		// controller rollout tests wait for it.
		startControllerEnv()
	}
	code := m.Run()
	reportMatrix()
	if oldGRPCBin != "" {
		os.RemoveAll(filepath.Dir(oldGRPCBin))
	}
	if !testing.Short() {
		<-ctlReady
		if ctl != nil {
			if code != 0 && ctl.fleet != nil {
				for _, r := range ctl.fleet.Replicas {
					if r.Pid() != 0 {
						fmt.Fprintf(os.Stderr, "interop: %s log:\n%s\n", r.Name, r.Logs(60))
					}
				}
			}
			ctl.stop(code != 0)
		}
	}
	return code
}

func startControllerEnv() {
	ctlStart.Do(func() {
		go func() {
			defer close(ctlReady)
			start := time.Now()
			ctl, ctlErr = newControllerEnv()
			if ctlErr == nil {
				fmt.Fprintf(os.Stderr, "interop: local cluster and controller up in %s\n", time.Since(start).Round(time.Millisecond))
			}
		}()
	})
}

// controller returns the cluster and controller, waiting for them to start.
func controller(t *testing.T) *controllerEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the local cluster")
	}
	<-ctlReady
	if ctlErr != nil {
		t.Fatalf("local cluster and controller: %v", ctlErr)
	}
	return ctl
}

func newControllerEnv() (_ *controllerEnv, err error) {
	dir, err := os.MkdirTemp("", "sluice-interop-")
	if err != nil {
		return nil, err
	}
	e := &controllerEnv{dir: dir}
	defer func() {
		if err != nil {
			e.stop(true)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	e.cluster, err = cluster.Start(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster"), Progress: os.Stderr, Log: logr.Discard()})
	if err != nil {
		return e, fmt.Errorf("start local cluster: %w", err)
	}
	bin := filepath.Join(dir, "sluice")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../../cmd/sluice").CombinedOutput(); err != nil {
		return e, fmt.Errorf("build sluice: %w\n%s", err, out)
	}
	f, err := fleet.New(fleet.Options{Binary: bin, Kubeconfig: e.cluster.Kubeconfig(), Dir: dir, Replicas: 1, Namespace: sluiceNamespace})
	if err != nil {
		return e, err
	}
	e.fleet = f
	mutating, validating, err := webhook.Configurations(webhook.ConfigOptions{URL: "https://" + f.Webhook.Addr(), OwnNamespace: sluiceNamespace})
	if err != nil {
		return e, err
	}
	if err := e.cluster.Install(ctx, sluiceNamespace, mutating, validating); err != nil {
		return e, err
	}
	if err := f.Start(ctx); err != nil {
		return e, err
	}
	e.caFile = filepath.Join(dir, "xds-ca.crt")
	if err := certs.WriteCAFile(ctx, e.cluster.Client(), sluiceNamespace, "sluice-webhook-tls", e.caFile); err != nil {
		return e, err
	}
	return e, nil
}

// stop stops the controller and the cluster; keep leaves their logs on disk
// (for a failed run) and says where.
func (e *controllerEnv) stop(keep bool) {
	if e.fleet != nil {
		e.fleet.Stop()
	}
	if e.cluster != nil {
		e.cluster.Stop()
	}
	if keep {
		fmt.Fprintf(os.Stderr, "interop: controller and cluster logs kept in %s\n", e.dir)
		return
	}
	os.RemoveAll(e.dir)
}
