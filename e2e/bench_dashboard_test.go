package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// Conditions of the dashboard benchmark; docs/dashboard.md reports them.
const (
	benchDashNamespaces = 10
	benchDashServices   = 10 // per namespace
	benchDashCanaries   = 10 // services with a canary under way
	benchDashPages      = 10
	benchDashPoll       = 2 * time.Second // the pages' polling interval
	benchDashWindow     = time.Minute
)

// BenchmarkDashboardHundredServicesTenPages measures what `sluice dashboard`
// costs: 100 opted-in services (10 namespaces of one team, 10 of them with a
// canary under way) and 10 open team pages, each polling the data API as
// the page's script does. It reports the process' CPU (share of one core)
// and memory (resident set at the end and its peak) over the window, and
// the data API's latency quantiles. Run with -benchtime=1x.
func BenchmarkDashboardHundredServicesTenPages(b *testing.B) {
	kube := rolloutKube(b)
	ctx := context.Background()
	team := fmt.Sprintf("bench-%d", time.Now().UnixNano()%100000)
	var all []*appsv1.Deployment
	for i := range benchDashNamespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", team, i), Labels: map[string]string{v1alpha1.LabelTeam: team}}}
		if err := kube.Create(ctx, ns); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := kube.Delete(context.Background(), ns); err != nil {
				b.Errorf("delete namespace: %v", err)
			}
		})
		for j := range benchDashServices {
			d := deployment(ns.Name, fmt.Sprintf("svc-%d", j), "example.com/svc:v1", 1)
			d.Annotations = map[string]string{v1alpha1.AnnotationRollout: "canary", v1alpha1.AnnotationStepInterval: "10m"}
			if err := kube.Create(ctx, d); err != nil {
				b.Fatal(err)
			}
			all = append(all, d)
		}
	}
	rolloutPoll(b, 5*time.Minute, "100 rollouts idle", func(ctx context.Context) error {
		var list v1alpha1.RolloutList
		if err := kube.List(ctx, &list); err != nil {
			return err
		}
		idle := 0
		for _, ro := range list.Items {
			if strings.HasPrefix(ro.Namespace, team+"-") && ro.Status.Phase == v1alpha1.PhaseIdle {
				idle++
			}
		}
		if idle != len(all) {
			return fmt.Errorf("%d of %d idle", idle, len(all))
		}
		return nil
	})
	// Some canaries under way: more status, Events and ReplicaSets to read.
	for _, d := range all[:benchDashCanaries] {
		rolloutPoll(b, 30*time.Second, "start a canary", func(ctx context.Context) error {
			var cur appsv1.Deployment
			if err := kube.Get(ctx, client.ObjectKeyFromObject(d), &cur); err != nil {
				return err
			}
			cur.Spec.Template.Spec.Containers[0].Image = "example.com/svc:v2"
			return kube.Update(ctx, &cur)
		})
	}
	url, pid := startDashboardProcess(b, "bench", env.Kubeconfig())
	path := url + "/api/teams/" + team
	if code, body, err := httpGet(ctx, path); err != nil || code != http.StatusOK || strings.Count(body, `"phase"`) != len(all) {
		b.Fatalf("team page data: %d %v, %d services", code, err, strings.Count(body, `"phase"`))
	}
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		b.Fatal(err)
	}
	rss0, _, err := residentMemory(pid)
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var lat []time.Duration
	var failures int
	wctx, cancel := context.WithTimeout(ctx, benchDashWindow)
	defer cancel()
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range benchDashPages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Pages opened a little apart, as people open them.
			time.Sleep(time.Duration(i) * benchDashPoll / benchDashPages)
			t := time.NewTicker(benchDashPoll)
			defer t.Stop()
			for {
				start := time.Now()
				code, _, err := httpGet(wctx, path)
				if wctx.Err() != nil {
					return
				}
				mu.Lock()
				lat = append(lat, time.Since(start))
				if err != nil || code != http.StatusOK {
					failures++
				}
				mu.Unlock()
				select {
				case <-wctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		b.Fatal(err)
	}
	rss, hwm, err := residentMemory(pid)
	if err != nil {
		b.Fatal(err)
	}
	if failures > 0 {
		b.Errorf("%d of %d polls failed", failures, len(lat))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	b.ReportMetric(100*(cpu1-cpu0)/benchDashWindow.Seconds(), "cpu-%-of-a-core")
	b.ReportMetric(float64(rss0)/1024, "rss-before-MiB")
	b.ReportMetric(float64(rss)/1024, "rss-MiB")
	b.ReportMetric(float64(hwm)/1024, "peak-rss-MiB")
	b.ReportMetric(float64(q(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(q(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(lat)), "polls")
	b.Logf("%d services in %d namespaces (%d canaries), %d pages polling every %s for %s: CPU %.1fs, RSS %d KiB before, %d KiB after (peak %d KiB), p50 %s, p99 %s",
		len(all), benchDashNamespaces, benchDashCanaries, benchDashPages, benchDashPoll, benchDashWindow,
		cpu1-cpu0, rss0, rss, hwm, q(0.5), q(0.99))
}

// cpuSeconds is the user+system CPU time of a process (Linux /proc).
func cpuSeconds(pid int) (float64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	const ticks = 100 // USER_HZ on Linux
	return (utime + stime) / ticks, nil
}

// residentMemory is the resident set and its peak, in KiB (Linux /proc).
func residentMemory(pid int) (rss, hwm int64, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, perr := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss, err = v, perr
		case "VmHWM:":
			hwm, err = v, perr
		}
		if err != nil {
			return 0, 0, err
		}
	}
	return rss, hwm, nil
}
