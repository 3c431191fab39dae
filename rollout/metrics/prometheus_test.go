package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// prometheusBinary finds the Prometheus server: Debian's package installs /usr/bin/prometheus.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/prometheus"); err == nil {
		return "/usr/bin/prometheus"
	}
	t.Fatal("the Prometheus server is required by this test and was not found in $PATH or /usr/bin/prometheus: " +
		"install Debian's package with `apt-get install -y prometheus` (the Makefile's test target does this)")
	return ""
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// syncBuffer collects a process's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startPrometheus runs a Prometheus server on a free loopback port scraping target every second, and returns
// its base URL once it is ready.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin := prometheusBinary(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"+
		"  - job_name: sluice-test\n    static_configs:\n      - targets: [%q]\n", target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	out := &syncBuffer{}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		if err := cmd.Process.Kill(); err != nil {
			t.Logf("kill prometheus: %v", err)
		}
		if err := cmd.Wait(); err != nil && !strings.Contains(err.Error(), "killed") {
			t.Logf("prometheus exited: %v", err)
		}
	})
	base := "http://" + addr
	poll(t, 30*time.Second, func() error {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ready: %s", resp.Status)
		}
		return nil
	}, out.String)
	return base
}

// poll calls cond until it returns nil or the deadline passes; then it fails with the last error and logs.
func poll(t *testing.T, timeout time.Duration, cond func() error, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v\nprometheus output:\n%s", timeout, err, logs())
		}
		<-tick.C
	}
}

// fixture exposes Sluice's per-route counters and Envoy-named per-cluster statistics, as the real exporters do.
type fixture struct {
	requests, errs   *prometheus.CounterVec
	envoyRq, envoyXX *prometheus.CounterVec
	envoyTime        *prometheus.HistogramVec
}

func newFixture(t *testing.T) (*fixture, string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	f := &fixture{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_route_requests_total", Help: "Requests."},
			[]string{"namespace", "service", "track"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_route_errors_total", Help: "Errors."},
			[]string{"namespace", "service", "track"}),
		envoyRq: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "envoy_cluster_upstream_rq_total", Help: "Requests."},
			[]string{"envoy_cluster_name"}),
		envoyXX: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "envoy_cluster_upstream_rq_xx", Help: "By class."},
			[]string{"envoy_cluster_name", "envoy_response_code_class"}),
		envoyTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "envoy_cluster_upstream_rq_time", Help: "Ms.",
			Buckets: []float64{10, 25, 50, 100, 250, 1000}}, []string{"envoy_cluster_name"}),
	}
	reg.MustRegister(f.requests, f.errs, f.envoyRq, f.envoyXX, f.envoyTime)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return f, strings.TrimPrefix(srv.URL, "http://")
}

func TestPrometheusAgainstRealServer(t *testing.T) {
	fx, target := newFixture(t)
	// Series exist at zero before Prometheus' first scrape, so increase() sees the whole later growth.
	fx.requests.WithLabelValues("shop", "checkout", "canary").Add(0)
	fx.errs.WithLabelValues("shop", "checkout", "canary").Add(0)
	fx.requests.WithLabelValues("shop", "checkout", "stable").Add(0)
	fx.envoyRq.WithLabelValues("shop/checkout/canary").Add(0)
	fx.envoyXX.WithLabelValues("shop/checkout/canary", "2").Add(0)
	fx.envoyXX.WithLabelValues("shop/checkout/canary", "5").Add(0)
	fx.envoyTime.WithLabelValues("shop/checkout/canary") // exports the empty histogram
	fx.envoyRq.WithLabelValues("shop/checkout/stable").Add(0)
	fx.envoyTime.WithLabelValues("shop/checkout/stable")
	base := startPrometheus(t, target)

	sluice, err := NewPrometheus(PrometheusConfig{Address: base, Timeout: 5 * time.Second, Queries: SluiceQueries()})
	if err != nil {
		t.Fatal(err)
	}
	envoy, err := NewPrometheus(PrometheusConfig{Address: base, Timeout: 5 * time.Second,
		Queries: EnvoyQueries("{{.Namespace}}/{{.Service}}/{{.Track}}")})
	if err != nil {
		t.Fatal(err)
	}
	// The fixture's histogram has buckets of its own; Envoy's defaults are what EnvoyQueries assumes.
	envoyQueries := EnvoyQueries("{{.Namespace}}/{{.Service}}/{{.Track}}")
	envoyQueries.LatencyBuckets = []float64{10, 25, 50, 100, 250, 1000}
	envoyBuckets, err := NewPrometheus(PrometheusConfig{Address: base, Timeout: 5 * time.Second, Queries: envoyQueries})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	noLogs := func() string { return "" }
	// Wait for two scrapes of the zero values.
	twoScrapes, err := NewCustomQuery("scrapes", `count_over_time(sluice_route_requests_total{track="canary"}[1m])`)
	if err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, func() error {
		if s := sluice.Custom(ctx, twoScrapes, query("canary", time.Minute)); !s.Present || s.Value < 2 {
			return fmt.Errorf("scrapes so far: %+v", s)
		}
		return nil
	}, noLogs)

	fx.requests.WithLabelValues("shop", "checkout", "canary").Add(200)
	fx.errs.WithLabelValues("shop", "checkout", "canary").Add(10)
	fx.requests.WithLabelValues("shop", "checkout", "stable").Add(1000)
	fx.envoyRq.WithLabelValues("shop/checkout/canary").Add(200)
	fx.envoyXX.WithLabelValues("shop/checkout/canary", "2").Add(190)
	fx.envoyXX.WithLabelValues("shop/checkout/canary", "5").Add(10)
	for range 200 {
		fx.envoyTime.WithLabelValues("shop/checkout/canary").Observe(40)
	}
	// Stable: 100 requests, 3 of them slower than 250 ms.
	fx.envoyRq.WithLabelValues("shop/checkout/stable").Add(100)
	for i := range 100 {
		ms := 40.0
		if i%33 == 0 && i > 0 {
			ms = 300
		}
		fx.envoyTime.WithLabelValues("shop/checkout/stable").Observe(ms)
	}
	poll(t, 30*time.Second, func() error {
		s, err := envoy.Sample(ctx, query("canary", time.Minute))
		if err != nil {
			return err
		}
		if s.Requests < 200 || s.LatencyP99 == nil {
			return fmt.Errorf("envoy canary sample so far: %+v", s)
		}
		c, err := sluice.Sample(ctx, query("stable", time.Minute))
		if err != nil || c.Requests < 1000 {
			return fmt.Errorf("sluice stable sample so far: %+v, %v", c, err)
		}
		q := query("stable", time.Minute)
		q.SlowerThan = 100 * time.Millisecond
		if e, err := envoyBuckets.Sample(ctx, q); err != nil || e.Requests < 100 || e.SlowRequests == nil || *e.SlowRequests < 3 {
			return fmt.Errorf("envoy stable sample so far: %+v, %v", e, err)
		}
		return nil
	}, noLogs)

	// increase() extrapolates to the window's edges, so counts are at least the true growth and within a
	// scrape interval's worth of it; errors/requests is exact up to rounding because both series share scrapes.
	checkCounts := func(t *testing.T, s Sample, requests, errs uint64) {
		t.Helper()
		if s.Requests < requests || s.Requests > requests*3/2 {
			t.Errorf("requests = %d, want about %d", s.Requests, requests)
		}
		wantErrs := float64(s.Requests) * float64(errs) / float64(requests)
		if diff := float64(s.Errors) - wantErrs; diff < -1 || diff > 1 {
			t.Errorf("errors = %d of %d requests, want %.1f", s.Errors, s.Requests, wantErrs)
		}
	}
	t.Run("sluice counters", func(t *testing.T) {
		s, err := sluice.Sample(ctx, query("canary", time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		checkCounts(t, s, 200, 10)
		if s.LatencyP99 != nil {
			t.Errorf("sluice counters carry no latency, got %v", *s.LatencyP99)
		}
	})
	t.Run("stable without an error series has zero errors", func(t *testing.T) {
		s, err := sluice.Sample(ctx, query("stable", time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		checkCounts(t, s, 1000, 0)
	})
	t.Run("envoy cluster stats with p99", func(t *testing.T) {
		s, err := envoy.Sample(ctx, query("canary", time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		checkCounts(t, s, 200, 10)
		// All observations are 40 ms, in the (25, 50] bucket; histogram_quantile interpolates within it.
		if s.LatencyP99 == nil || *s.LatencyP99 <= 25*time.Millisecond || *s.LatencyP99 > 50*time.Millisecond {
			t.Errorf("p99 = %v, want within the (25ms, 50ms] bucket", s.LatencyP99)
		}
	})
	t.Run("slow requests counted at the bucket at or above the limit", func(t *testing.T) {
		cases := map[string]struct {
			track      string
			slowerThan time.Duration
			want       *uint64 // nil: not counted
			wantBound  time.Duration
		}{
			"limit on a bucket bound":               {track: "stable", slowerThan: 250 * time.Millisecond, want: ptrTo(3), wantBound: 250 * time.Millisecond},
			"limit between bounds: the next one up": {track: "stable", slowerThan: 60 * time.Millisecond, want: ptrTo(3), wantBound: 100 * time.Millisecond},
			"every request above a low limit":       {track: "canary", slowerThan: 20 * time.Millisecond, want: ptrTo(200), wantBound: 25 * time.Millisecond},
			"no request above":                      {track: "canary", slowerThan: 50 * time.Millisecond, want: ptrTo(0), wantBound: 50 * time.Millisecond},
			"limit above every bucket: not counted": {track: "stable", slowerThan: 5 * time.Second},
			"not asked: not counted":                {track: "stable"},
		}
		for name, tc := range cases {
			t.Run(name, func(t *testing.T) {
				q := query(tc.track, time.Minute)
				q.SlowerThan = tc.slowerThan
				s, err := envoyBuckets.Sample(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case tc.want == nil && s.SlowRequests != nil:
					t.Fatalf("slow requests = %d, want not counted", *s.SlowRequests)
				case tc.want == nil:
					return
				case s.SlowRequests == nil:
					t.Fatalf("slow requests not counted, want about %d", *tc.want)
				}
				// increase() extrapolates like the counts: the slow share is what must hold.
				got := float64(*s.SlowRequests) / float64(s.Requests)
				wantShare := float64(*tc.want) / map[string]float64{"stable": 100, "canary": 200}[tc.track]
				if diff := got - wantShare; diff < -0.01 || diff > 0.01 {
					t.Errorf("slow share = %d/%d, want %.2f", *s.SlowRequests, s.Requests, wantShare)
				}
				if s.SlowerThan != tc.wantBound {
					t.Errorf("counted above %v, want the bucket bound %v", s.SlowerThan, tc.wantBound)
				}
				ts := Observe(ctx, envoyBuckets, q)
				// A second query extrapolates to another instant: the share is what must agree.
				if ts.SlowRequests == nil || ts.SlowerThan != tc.wantBound ||
					math.Abs(float64(*ts.SlowRequests)/float64(ts.Requests)-wantShare) > 0.01 {
					t.Errorf("Observe = %+v, want the slow count and its bound passed on", ts)
				}
			})
		}
	})
	t.Run("unknown track is no data, not a failure", func(t *testing.T) {
		_, err := sluice.Sample(ctx, query("preview", time.Minute))
		if !errors.Is(err, ErrNoData) {
			t.Fatalf("got %v, want ErrNoData", err)
		}
		got := Observe(ctx, sluice, query("preview", time.Minute))
		if got.Present || got.SourceFailed || !strings.Contains(got.Problem, "empty result") {
			t.Errorf("Observe = %+v, want absent, not failed, saying the result is empty", got)
		}
	})
	customs := map[string]struct {
		promql      string
		wantPresent bool
		wantFailed  bool
		wantProblem string
		wantValue   float64
	}{
		"value":             {promql: `sum(sluice_route_errors_total{service="{{.Service}}",track="{{.Track}}"})`, wantPresent: true, wantValue: 10},
		"NaN is no data":    {promql: `0 / 0`, wantProblem: "NaN"},
		"several series":    {promql: `sluice_route_requests_total`, wantFailed: true, wantProblem: "want one"},
		"syntax error":      {promql: `sum(`, wantFailed: true, wantProblem: "bad_data"},
		"negative is valid": {promql: `-1 * sum(sluice_route_errors_total{track="{{.Track}}"})`, wantPresent: true, wantValue: -10},
	}
	for name, tc := range customs {
		t.Run("custom "+name, func(t *testing.T) {
			cq, err := NewCustomQuery(name, tc.promql)
			if err != nil {
				t.Fatal(err)
			}
			got := sluice.Custom(ctx, cq, query("canary", time.Minute))
			if got.Name != name || got.Present != tc.wantPresent || got.SourceFailed != tc.wantFailed ||
				!strings.Contains(got.Problem, tc.wantProblem) || got.Value != tc.wantValue {
				t.Errorf("Custom = %+v, want present=%v failed=%v value=%v problem containing %q",
					got, tc.wantPresent, tc.wantFailed, tc.wantValue, tc.wantProblem)
			}
		})
	}
}

func TestPrometheusDeadAddress(t *testing.T) {
	addr := freeAddr(t) // nothing listens there any more
	p, err := NewPrometheus(PrometheusConfig{Address: "http://" + addr, Timeout: 5 * time.Second, Queries: SluiceQueries()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Sample(context.Background(), query("canary", 10*time.Second))
	if err == nil {
		t.Fatal("got nil error from a dead address")
	}
	if errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q: want a failure (not no-data) naming %s and the refused connection", err, addr)
	}
	got := Observe(context.Background(), p, query("canary", 10*time.Second))
	if got.Present || !got.SourceFailed || !strings.Contains(got.Problem, addr) {
		t.Errorf("Observe = %+v, want a failed source naming the address", got)
	}
}

func TestNewPrometheusRejectsBadConfig(t *testing.T) {
	good := SluiceQueries()
	cases := map[string]struct {
		cfg  PrometheusConfig
		want string
	}{
		"no address":      {cfg: PrometheusConfig{Timeout: time.Second, Queries: good}, want: "address is empty"},
		"no timeout":      {cfg: PrometheusConfig{Address: "http://x:9090", Queries: good}, want: "timeout"},
		"no queries":      {cfg: PrometheusConfig{Address: "http://x:9090", Timeout: time.Second}, want: "requests query is empty"},
		"unknown field":   {cfg: PrometheusConfig{Address: "http://x:9090", Timeout: time.Second, Queries: QuerySet{Requests: "{{.Pod}}", Errors: "x"}}, want: ".Namespace"},
		"broken template": {cfg: PrometheusConfig{Address: "http://x:9090", Timeout: time.Second, Queries: QuerySet{Requests: "{{", Errors: "x"}}, want: "requests query"},
		"latency without unit": {cfg: PrometheusConfig{Address: "http://x:9090", Timeout: time.Second,
			Queries: QuerySet{Requests: "a", Errors: "b", LatencyP99: "c"}}, want: "latency unit"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := NewPrometheus(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestQueryTemplatesRender(t *testing.T) {
	c, err := EnvoyQueries("{{.Namespace}}/{{.Service}}/[0-9]+/{{.Track}}").compile()
	if err != nil {
		t.Fatal(err)
	}
	got, err := render(c.errors, query("canary", 1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	want := `sum(increase(envoy_cluster_upstream_rq_xx{envoy_cluster_name=~"shop/checkout/[0-9]+/canary",envoy_response_code_class="5"}[2s]))`
	if got != want {
		t.Errorf("rendered\n%s\nwant\n%s", got, want)
	}
}

func ptrTo(v uint64) *uint64 { return &v }
