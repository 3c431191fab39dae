package podruntime

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"pgregory.net/rapid"
)

func TestImageVersion(t *testing.T) {
	digest := "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := map[string]struct {
		image   string
		want    string
		wantErr string
	}{
		"tag":                      {image: "registry.example/shop/checkout:v2", want: "v2"},
		"no tag":                   {image: "registry.example/shop/checkout", want: "latest"},
		"bare name":                {image: "checkout", want: "latest"},
		"bare name with tag":       {image: "checkout:1.4.0-rc.1", want: "1.4.0-rc.1"},
		"registry port, no tag":    {image: "localhost:5000/checkout", want: "latest"},
		"registry port and tag":    {image: "localhost:5000/checkout:v3", want: "v3"},
		"digest":                   {image: "registry.example/checkout@" + digest, want: "sha256:0123456789ab"},
		"tag and digest":           {image: "checkout:v2@" + digest, want: "sha256:0123456789ab"},
		"empty":                    {image: "", wantErr: "empty image reference"},
		"empty tag":                {image: "checkout:", wantErr: "want repository[:tag]"},
		"trailing slash":           {image: "registry.example/", wantErr: "ends with '/'"},
		"spaces":                   {image: " checkout:v1", wantErr: "surrounding spaces"},
		"bad tag characters":       {image: "checkout:v1/x:y!", wantErr: "want repository[:tag]"},
		"short digest":             {image: "checkout@sha256:abc", wantErr: "want name@algorithm:hex"},
		"digest without algorithm": {image: "checkout@0123456789abcdef", wantErr: "want name@algorithm:hex"},
		"digest without name":      {image: "@" + digest, wantErr: "want name@algorithm:hex"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ImageVersion(tc.image)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ImageVersion(%q) = %q, %v; want error containing %q", tc.image, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ImageVersion(%q) = %q, %v; want %q", tc.image, got, err, tc.want)
			}
		})
	}
}

func TestParseBehavior(t *testing.T) {
	tests := map[string]struct {
		env         []corev1.EnvVar
		want        Behavior
		wantProblem []string // substrings of Problem
		wantNotes   int
	}{
		"unset":         {want: Behavior{}},
		"other vars":    {env: env("FOO", "bar"), want: Behavior{}},
		"rate":          {env: env(EnvErrorRate, "0.25"), want: Behavior{ErrorRate: 0.25}},
		"rate bounds":   {env: env(EnvErrorRate, "1"), want: Behavior{ErrorRate: 1}},
		"rate spaces":   {env: env(EnvErrorRate, " 0.5 "), want: Behavior{ErrorRate: 0.5}},
		"latency":       {env: env(EnvLatency, "150ms"), want: Behavior{Latency: FixedLatency(150 * time.Millisecond)}},
		"exp latency":   {env: env(EnvLatency, "exp:20ms"), want: Behavior{Latency: Latency{Mean: 20 * time.Millisecond}}},
		"percentiles":   {env: env(EnvLatency, "p50=10ms, p99=200ms"), want: Behavior{Latency: Latency{P50: 10 * time.Millisecond, P99: 200 * time.Millisecond}}},
		"even mode":     {env: env(EnvErrorRate, "0.1", EnvErrorMode, "even"), want: Behavior{ErrorRate: 0.1, EvenErrors: true}},
		"random mode":   {env: env(EnvErrorMode, "random"), want: Behavior{}},
		"seed":          {env: env(EnvSeed, "42"), want: Behavior{Seed: 42, Seeded: true}},
		"bad mode":      {env: env(EnvErrorMode, "burst"), wantProblem: []string{`SIM_ERROR_MODE="burst"`, `"random" or "even"`}},
		"bad seed":      {env: env(EnvSeed, "-3"), wantProblem: []string{`SIM_SEED="-3"`, "decimal"}},
		"exp no mean":   {env: env(EnvLatency, "exp:"), wantProblem: []string{`SIM_LATENCY="exp:"`, "positive"}},
		"p99 below p50": {env: env(EnvLatency, "p50=20ms,p99=10ms"), wantProblem: []string{`SIM_LATENCY="p50=20ms,p99=10ms"`, "at least p50"}},
		"p99 missing":   {env: env(EnvLatency, "p50=20ms"), wantProblem: []string{"p99 must be set"}},
		"unknown pct":   {env: env(EnvLatency, "p50=1ms,p90=2ms"), wantProblem: []string{`unknown percentile "p90"`}},
		"both":          {env: env(EnvErrorRate, "0", EnvLatency, "0s"), want: Behavior{}},
		"last wins":     {env: env(EnvErrorRate, "abc", EnvErrorRate, "0.1"), want: Behavior{ErrorRate: 0.1}},
		"rate percent":  {env: env(EnvErrorRate, "10%"), wantProblem: []string{`SIM_ERROR_RATE="10%"`, "from 0 to 1"}},
		"rate too high": {env: env(EnvErrorRate, "1.5"), wantProblem: []string{`SIM_ERROR_RATE="1.5"`}},
		"rate negative": {env: env(EnvErrorRate, "-0.1"), wantProblem: []string{`SIM_ERROR_RATE="-0.1"`}},
		"rate NaN":      {env: env(EnvErrorRate, "NaN"), wantProblem: []string{`SIM_ERROR_RATE="NaN"`}},
		"rate empty":    {env: env(EnvErrorRate, ""), wantProblem: []string{`SIM_ERROR_RATE=""`}},
		"latency unit":  {env: env(EnvLatency, "150"), wantProblem: []string{`SIM_LATENCY="150"`, "Go duration"}},
		"latency neg":   {env: env(EnvLatency, "-1s"), wantProblem: []string{`SIM_LATENCY="-1s"`, "zero or more"}},
		"both bad": {env: env(EnvErrorRate, "x", EnvLatency, "y"),
			wantProblem: []string{`SIM_ERROR_RATE="x"`, `SIM_LATENCY="y"`}},
		"valueFrom ignored": {
			env:       []corev1.EnvVar{{Name: EnvErrorRate, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			want:      Behavior{},
			wantNotes: 1,
		},
		"valueFrom overrides earlier literal": {
			env: append(env(EnvErrorRate, "1"),
				corev1.EnvVar{Name: EnvErrorRate, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}),
			want:      Behavior{},
			wantNotes: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, notes := ParseBehavior(tc.env)
			if len(notes) != tc.wantNotes {
				t.Errorf("notes = %q, want %d", notes, tc.wantNotes)
			}
			if len(tc.wantProblem) > 0 {
				if got.ErrorRate != 0 || got.Latency != (Latency{}) {
					t.Errorf("misconfigured behavior kept settings: %+v", got)
				}
				for _, sub := range tc.wantProblem {
					if !strings.Contains(got.Problem, sub) {
						t.Errorf("Problem = %q, want it to contain %q", got.Problem, sub)
					}
				}
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseBehavior mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	now := metav1.Now()
	appBehavior := Behavior{Seed: SeedFor("shop", "checkout-1", "app")}
	tests := map[string]struct {
		mutate     func(*corev1.Pod)
		wantReason string
		wantRefuse bool
		wantPorts  []PortSpec
		wantNotes  int
	}{
		"running": {
			wantPorts: []PortSpec{
				{Port: 8080, Container: "app", Image: "shop/checkout:v1", Version: "v1", Behavior: appBehavior},
				{Port: 9090, Container: "app", Image: "shop/checkout:v1", Version: "v1", Behavior: appBehavior},
			},
		},
		"pending":       {mutate: func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }, wantReason: `"Pending", not Running`},
		"succeeded":     {mutate: func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }, wantReason: "not Running"},
		"terminating":   {mutate: func(p *corev1.Pod) { p.DeletionTimestamp = &now }, wantReason: "being deleted"},
		"host network":  {mutate: func(p *corev1.Pod) { p.Spec.HostNetwork = true }, wantReason: "host network", wantRefuse: true},
		"no IP":         {mutate: func(p *corev1.Pod) { p.Status.PodIP = "" }, wantReason: "no IP"},
		"bad IP":        {mutate: func(p *corev1.Pod) { p.Status.PodIP = "127.1" }, wantReason: "does not parse", wantRefuse: true},
		"not loopback":  {mutate: func(p *corev1.Pod) { p.Status.PodIP = "10.0.0.7" }, wantReason: "outside 127.0.0.0/8", wantRefuse: true},
		"ipv6 loopback": {mutate: func(p *corev1.Pod) { p.Status.PodIP = "::1" }, wantReason: "outside 127.0.0.0/8", wantRefuse: true},
		"second container, duplicate and UDP ports": {
			mutate: func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{
					Name: "sidecar", Image: "proxy@sha256:0123456789abcdef0123456789abcdef",
					Env: env(EnvLatency, "5ms"),
					Ports: []corev1.ContainerPort{
						{ContainerPort: 7070},
						{ContainerPort: 8080},
						{ContainerPort: 5353, Protocol: corev1.ProtocolUDP},
					},
				})
			},
			wantPorts: []PortSpec{
				{Port: 7070, Container: "sidecar", Image: "proxy@sha256:0123456789abcdef0123456789abcdef", Version: "sha256:0123456789ab", Behavior: Behavior{Latency: FixedLatency(5 * time.Millisecond), Seed: SeedFor("shop", "checkout-1", "sidecar")}},
				{Port: 8080, Container: "app", Image: "shop/checkout:v1", Version: "v1", Behavior: appBehavior},
				{Port: 9090, Container: "app", Image: "shop/checkout:v1", Version: "v1", Behavior: appBehavior},
			},
			wantNotes: 2,
		},
		"malformed image": {
			mutate: func(p *corev1.Pod) { p.Spec.Containers[0].Image = "shop/checkout:" },
			wantPorts: []PortSpec{
				{Port: 8080, Container: "app", Image: "shop/checkout:", Behavior: Behavior{Seed: appBehavior.Seed, Problem: `container "app": image reference "shop/checkout:": want repository[:tag] with a tag of letters, digits, '_', '.', '-'`}},
				{Port: 9090, Container: "app", Image: "shop/checkout:", Behavior: Behavior{Seed: appBehavior.Seed, Problem: `container "app": image reference "shop/checkout:": want repository[:tag] with a tag of letters, digits, '_', '.', '-'`}},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			pod := testPod("shop", "checkout-1", "127.0.0.9", container("app", "shop/checkout:v1", nil, 9090, 8080))
			if tc.mutate != nil {
				tc.mutate(pod)
			}
			got := Plan(pod)
			if tc.wantReason != "" {
				if got.Serve || !strings.Contains(got.Reason, tc.wantReason) {
					t.Fatalf("Plan = serve %v reason %q, want not served because %q", got.Serve, got.Reason, tc.wantReason)
				}
				if got.Refused != tc.wantRefuse {
					t.Errorf("Plan.Refused = %v, want %v", got.Refused, tc.wantRefuse)
				}
				return
			}
			if !got.Serve {
				t.Fatalf("Plan did not serve: %s", got.Reason)
			}
			want := PodSpec{Namespace: "shop", Name: "checkout-1", UID: pod.UID, IP: "127.0.0.9", Ports: tc.wantPorts}
			if diff := cmp.Diff(want, got.Spec); diff != "" {
				t.Errorf("Plan spec mismatch (-want +got):\n%s", diff)
			}
			if len(got.Notes) != tc.wantNotes {
				t.Errorf("notes = %q, want %d", got.Notes, tc.wantNotes)
			}
		})
	}
}

func TestPodSpecEqual(t *testing.T) {
	base := Plan(testPod("shop", "a", "127.0.0.9", container("app", "x:v1", nil, 80))).Spec
	changed := map[string]func(*corev1.Pod){
		"image":   func(p *corev1.Pod) { p.Spec.Containers[0].Image = "x:v2" },
		"env":     func(p *corev1.Pod) { p.Spec.Containers[0].Env = env(EnvLatency, "1s") },
		"port":    func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 81 },
		"IP":      func(p *corev1.Pod) { p.Status.PodIP = "127.0.0.10" },
		"UID":     func(p *corev1.Pod) { p.UID = "other" },
		"no port": func(p *corev1.Pod) { p.Spec.Containers[0].Ports = nil },
	}
	if same := Plan(testPod("shop", "a", "127.0.0.9", container("app", "x:v1", nil, 80))).Spec; !base.Equal(same) {
		t.Fatalf("identical pods give unequal specs: %+v vs %+v", base, same)
	}
	for name, mutate := range changed {
		t.Run(name, func(t *testing.T) {
			pod := testPod("shop", "a", "127.0.0.9", container("app", "x:v1", nil, 80))
			mutate(pod)
			if base.Equal(Plan(pod).Spec) {
				t.Errorf("changing the %s leaves the spec equal", name)
			}
		})
	}
}

// TestFailsSpreadsErrorsExactly checks that exactly floor(n×rate) of the
// first n calls fail, for any rate and n.
func TestFailsSpreadsErrorsExactly(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rate := rapid.Float64Range(0, 1).Draw(t, "rate")
		n := rapid.Uint64Range(0, 2000).Draw(t, "n")
		b := Behavior{ErrorRate: rate, EvenErrors: true}
		var failed uint64
		for i := uint64(1); i <= n; i++ {
			if b.Fails(i) {
				failed++
			}
		}
		if want := uint64(math.Floor(float64(n) * rate)); failed != want {
			t.Fatalf("rate %v: %d of %d calls failed, want %d", rate, failed, n, want)
		}
	})
}

// Random failures are independent draws at the configured rate: over 100,000 calls the count is within five
// standard deviations of the mean, failures come in runs as independent ones do (some of length ≥ 3 at 10%),
// the same seed fails the same calls, and another seed fails others.
func TestFailsDrawsIndependently(t *testing.T) {
	const calls, rate = 100_000, 0.1
	b := Behavior{ErrorRate: rate, Seed: 7}
	failed, run, longest, same := 0, 0, 0, 0
	other := Behavior{ErrorRate: rate, Seed: 8}
	for n := uint64(1); n <= calls; n++ {
		f := b.Fails(n)
		if f != b.Fails(n) {
			t.Fatalf("call %d: two answers for the same seed", n)
		}
		if f && other.Fails(n) {
			same++
		}
		if f {
			failed++
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	mean, sd := calls*rate, math.Sqrt(calls*rate*(1-rate))
	if math.Abs(float64(failed)-mean) > 5*sd {
		t.Errorf("%d of %d calls failed, want about %.0f (sd %.0f)", failed, calls, mean, sd)
	}
	if longest < 3 {
		t.Errorf("longest run of failures %d, want bursts of at least 3 as independent draws give", longest)
	}
	// Two independent seeds share about rate² of the calls as failures.
	if want := calls * rate * rate; math.Abs(float64(same)-want) > 5*math.Sqrt(want) {
		t.Errorf("seeds 7 and 8 both failed %d calls, want about %.0f: the seeds are not independent", same, want)
	}
}

// The latency distributions have the configured mean or percentiles.
func TestLatencyDistributions(t *testing.T) {
	const calls = 100_000
	draw := func(l Latency) []time.Duration {
		b := Behavior{Latency: l, Seed: 3}
		ds := make([]time.Duration, calls)
		for n := range ds {
			ds[n] = b.Delay(uint64(n + 1))
		}
		slices.Sort(ds)
		return ds
	}
	within := func(name string, got, want time.Duration, tol float64) {
		if math.Abs(float64(got-want)) > tol*float64(want) {
			t.Errorf("%s = %v, want %v ± %.0f%%", name, got, want, tol*100)
		}
	}
	exp := draw(Latency{Mean: 20 * time.Millisecond})
	var sum time.Duration
	for _, d := range exp {
		sum += d
	}
	within("exponential mean", sum/calls, 20*time.Millisecond, 0.02)
	within("exponential median", exp[calls/2], 13862944*time.Nanosecond, 0.03) // ln 2 × 20ms
	logn := draw(Latency{P50: 10 * time.Millisecond, P99: 200 * time.Millisecond})
	within("log-normal p50", logn[calls/2], 10*time.Millisecond, 0.03)
	within("log-normal p99", logn[calls*99/100], 200*time.Millisecond, 0.06)
	if fixed := draw(FixedLatency(5 * time.Millisecond)); fixed[0] != 5*time.Millisecond || fixed[calls-1] != 5*time.Millisecond {
		t.Errorf("fixed latency varies: %v to %v", fixed[0], fixed[calls-1])
	}
}

func FuzzImageVersion(f *testing.F) {
	for _, seed := range []string{"a/b:c", "localhost:5000/x", "x@sha256:0123456789abcdef", "", ":", "@", "a:b@c:d"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, image string) {
		v, err := ImageVersion(image)
		if err == nil && v == "" {
			t.Fatalf("ImageVersion(%q) returned an empty version without an error", image)
		}
	})
}

func FuzzParseBehavior(f *testing.F) {
	f.Add("0.5", "10ms")
	f.Add("x", "-1s")
	f.Fuzz(func(t *testing.T, rate, latency string) {
		b, _ := ParseBehavior(env(EnvErrorRate, rate, EnvLatency, latency))
		if b.Problem == "" && (b.ErrorRate < 0 || b.ErrorRate > 1 || b.Latency.Fixed < 0 || b.Latency.Draw(0.5, 0.5) < 0) {
			t.Fatalf("accepted out-of-range behavior %+v from %q, %q", b, rate, latency)
		}
		if b.Problem != "" && !strings.Contains(b.Problem, "SIM_") {
			t.Fatalf("problem %q does not name the variable", b.Problem)
		}
	})
}

// env builds literal env vars from name, value pairs.
func env(kv ...string) []corev1.EnvVar {
	var out []corev1.EnvVar
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, corev1.EnvVar{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func container(name, image string, envVars []corev1.EnvVar, ports ...int32) corev1.Container {
	c := corev1.Container{Name: name, Image: image, Env: envVars}
	for _, p := range ports {
		c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: p, Protocol: corev1.ProtocolTCP})
	}
	return c
}

func testPod(ns, name, ip string, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{Containers: containers},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	}
}
