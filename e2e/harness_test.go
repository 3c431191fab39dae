package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/local/cluster"
)

// sluiceNamespace is where the controller under test keeps its lease and
// certificate Secret.
const sluiceNamespace = "sluice-system"

// sluice is the controller under test: the real binary, run as a
// subprocess against the shared cluster, as `sluice dev` runs it.
var sluice *sluiceProcess

type sluiceProcess struct {
	bin, dir string
	args     []string
	// XDSAddr is host:port of the ADS and load reporting server (TLS).
	XDSAddr string
	// CAFile holds the CA bundle that signs its serving certificate.
	CAFile string
	// LegacyAddr is host:port of the plaintext listener for old clients,
	// open to namespaces labelled sluice.dev/legacy-xds=enabled.
	LegacyAddr string
	// MetricsURL serves the controller's Prometheus metrics.
	MetricsURL string
	// HealthURL serves /healthz and /readyz.
	HealthURL string
	// WebhookURL is the base URL the webhooks are registered with.
	WebhookURL string
	// PprofURL serves the controller's Go profiles.
	PprofURL string
	proc     *cluster.Process
	starts   int
}

// buildSluice compiles the sluice binary into dir.
func buildSluice(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "sluice")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "../cmd/sluice")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build sluice: %w\n%s", err, out)
	}
	return bin, nil
}

// newSluice prepares a controller on free loopback ports.
func newSluice(bin, dir, kubeconfig string) (*sluiceProcess, error) {
	ports := make([]int, 6)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		defer l.Close()
	}
	s := &sluiceProcess{
		bin:        bin,
		dir:        dir,
		XDSAddr:    "127.0.0.1:" + strconv.Itoa(ports[1]),
		LegacyAddr: "127.0.0.1:" + strconv.Itoa(ports[5]),
		MetricsURL: "http://127.0.0.1:" + strconv.Itoa(ports[2]) + "/metrics",
		HealthURL:  "http://127.0.0.1:" + strconv.Itoa(ports[3]),
		WebhookURL: "https://127.0.0.1:" + strconv.Itoa(ports[0]),
		PprofURL:   "http://127.0.0.1:" + strconv.Itoa(ports[4]) + "/debug/pprof",
	}
	s.args = []string{"controller",
		"--kubeconfig=" + kubeconfig,
		"--namespace=" + sluiceNamespace,
		"--webhook-host=127.0.0.1", "--webhook-port=" + strconv.Itoa(ports[0]),
		"--cert-ips=127.0.0.1",
		"--xds-host=127.0.0.1", "--xds-port=" + strconv.Itoa(ports[1]),
		"--metrics-addr=127.0.0.1:" + strconv.Itoa(ports[2]),
		"--health-addr=127.0.0.1:" + strconv.Itoa(ports[3]),
		"--pprof-addr=127.0.0.1:" + strconv.Itoa(ports[4]),
		"--xds-legacy-port=" + strconv.Itoa(ports[5]),
		"--leader-elect",
	}
	return s, nil
}

// Start starts the controller and waits until it reports ready.
func (s *sluiceProcess) Start(ctx context.Context) error {
	s.starts++
	p, err := cluster.StartProcess("sluice", s.bin, s.args, filepath.Join(s.dir, fmt.Sprintf("sluice-%d.log", s.starts)))
	if err != nil {
		return err
	}
	s.proc = p
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return cluster.WaitFor(ctx, "sluice controller ready", []*cluster.Process{p}, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.HealthURL+"/readyz", nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("readyz: %s", resp.Status)
		}
		return true, nil
	})
}

// Kill kills the controller as a crash would (SIGKILL).
func (s *sluiceProcess) Kill() { s.proc.Kill() }

// Stop stops the controller gracefully.
func (s *sluiceProcess) Stop() { s.proc.Stop(10 * time.Second) }

// Logs returns the end of the current controller log.
func (s *sluiceProcess) Logs(lines int) string { return s.proc.LogTail(lines) }

var xdsNode atomic.Int64

// newXDSConn returns a connection of grpc-go's own xDS client to target
// (e.g. "xds:///checkout.shop"), configured by the controller under test,
// with a node id of its own. It connects over TLS and proves a
// ServiceAccount of the target's namespace with a token.
func newXDSConn(t testing.TB, target string) *grpc.ClientConn {
	t.Helper()
	node := fmt.Sprintf("e2e-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), xdsNode.Add(1))
	return dialXDS(t, target, authBootstrap(t, sluice.XDSAddr, sluice.CAFile, targetNamespace(t, target), node))
}

// startSluice builds the controller, installs what it needs into env and
// starts it.
func startSluice(ctx context.Context, dir string) error {
	bin, err := buildSluice(ctx, dir)
	if err != nil {
		return err
	}
	s, err := newSluice(bin, dir, env.Kubeconfig())
	if err != nil {
		return err
	}
	mutating, validating, err := webhookConfigurations(s.WebhookURL)
	if err != nil {
		return err
	}
	if err := env.Install(ctx, sluiceNamespace, mutating, validating); err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	s.CAFile = filepath.Join(dir, "xds-ca.crt")
	if err := certs.WriteCAFile(ctx, env.Client(), sluiceNamespace, "sluice-webhook-tls", s.CAFile); err != nil {
		return err
	}
	sluice = s
	return nil
}
