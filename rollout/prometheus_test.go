package rollout

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/rollout/metrics"
)

// exporter serves sluice_route_requests_total and sluice_route_errors_total
// as Sluice exports them from load reports, advancing 50 requests a second
// per track; the canary fails 30% of its requests.
func exporter(t *testing.T, namespace, service string) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	labels := []string{"namespace", "service", "track"}
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_route_requests_total", Help: "Requests."}, labels)
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_route_errors_total", Help: "Errors."}, labels)
	reg.MustRegister(reqs, errs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			reqs.WithLabelValues(namespace, service, v1alpha1.TrackStable).Add(5)
			reqs.WithLabelValues(namespace, service, v1alpha1.TrackCanary).Add(5)
			errs.WithLabelValues(namespace, service, v1alpha1.TrackCanary).Add(1.5)
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := srv.Close(); err != nil {
			t.Logf("close exporter: %v", err)
		}
	})
	return l.Addr().String()
}

// startPrometheus runs Debian's Prometheus scraping target every second and
// returns its base URL once ready.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		bin = "/usr/bin/prometheus"
		if _, err := os.Stat(bin); err != nil {
			t.Fatal("this test needs the Prometheus server: apt-get install -y prometheus")
		}
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: rollout\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		if err := cmd.Process.Kill(); err != nil {
			t.Logf("kill prometheus: %v", err)
		}
		_ = cmd.Wait() // killed on purpose
		logf.Close()
	})
	base := "http://" + addr
	pollUntil(t, "prometheus ready", 30*time.Second, func() error {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ready: %s", resp.Status)
		}
		return nil
	})
	return base
}

// TestControllerPrometheusSourceRollsBack drives a rollback from a real
// Prometheus alone: the controller's only metric source is PromQL over the
// scraped per-track counters.
func TestControllerPrometheusSourceRollsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local cluster and Prometheus")
	}
	ns := fmt.Sprintf("rollout-prom-%d", time.Now().UnixNano()%1_000_000)
	prom := startPrometheus(t, exporter(t, ns, "checkout"))
	src, err := metrics.NewPrometheus(metrics.PrometheusConfig{Address: prom, Timeout: 5 * time.Second, Queries: metrics.SluiceQueries()})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, src, ns)
	ctx := context.Background()
	h.deploy(ctx, "checkout", "example.com/checkout:v1", "r1")
	h.waitRollout("checkout", "first deployment stable", time.Minute, func(ro *v1alpha1.Rollout) bool {
		return ro.Status.Phase == v1alpha1.PhaseIdle
	})
	h.deploy(ctx, "checkout", "example.com/checkout:v2", "r2")
	ro := h.waitRollout("checkout", "rolled back on Prometheus' numbers", 3*time.Minute, func(ro *v1alpha1.Rollout) bool {
		return ro.Status.Phase == v1alpha1.PhaseRolledBack
	})
	t.Logf("rolled back: %s", ro.Status.FailedRevisions[0].Reason)
	pollUntil(t, "canary deleted", time.Minute, func() error {
		var d appsv1.Deployment
		err := h.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: v1alpha1.CanaryName("checkout")}, &d)
		if err == nil {
			return fmt.Errorf("canary still exists")
		}
		return nil
	})
}
