package podruntime

import (
	"fmt"
	"hash/fnv"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Environment variables that inject faults into a container's ports.
const (
	// EnvErrorRate is the probability, from 0 to 1, that a call fails. Each call fails independently, as real
	// faults arrive (bursts included), from a seeded source: see EnvSeed and EnvErrorMode.
	EnvErrorRate = "SIM_ERROR_RATE"
	// EnvErrorMode chooses how failures are placed: "random" (the default, independent draws) or "even" (exactly
	// floor(n×rate) of the first n calls fail, evenly spaced, without sampling noise).
	EnvErrorMode = "SIM_ERROR_MODE"
	// EnvSeed seeds the random draws (failures and latency), a decimal number; by default the seed is derived
	// from the pod's namespace and name and the container's name, so a pod's draws are reproducible.
	EnvSeed = "SIM_SEED"
	// EnvLatency is the latency added to every call: a Go duration (e.g. "150ms"), "exp:20ms" (exponentially
	// distributed with that mean), or "p50=10ms,p99=200ms" (log-normal with that median and 99th percentile).
	EnvLatency = "SIM_LATENCY"
)

// Error modes, the values of SIM_ERROR_MODE.
const (
	ErrorModeRandom = "random"
	ErrorModeEven   = "even"
)

// loopback is the only range the runtime ever binds: the local cluster's pod
// IPs live there and nothing outside it belongs to this machine's test pods.
var loopback = netip.MustParsePrefix("127.0.0.0/8")

// Behavior is how one container answers calls.
type Behavior struct {
	// ErrorRate is the probability that a call fails, in [0, 1].
	ErrorRate float64
	// EvenErrors spreads failures evenly instead of drawing them (SIM_ERROR_MODE=even).
	EvenErrors bool
	// Seed seeds the draws; Seeded says SIM_SEED set it (else Plan derives it from the pod and container).
	Seed   uint64
	Seeded bool
	// Latency is added to every call, failing or not.
	Latency Latency
	// Problem, when not empty, says which env var is malformed and why; every
	// call then fails with this message.
	Problem string
}

// Latency is a distribution of added latency. The zero value adds none.
type Latency struct {
	// Fixed is added to every call when Mean and P50 are 0.
	Fixed time.Duration
	// Mean, when set, makes the latency exponentially distributed with this mean.
	Mean time.Duration
	// P50 and P99, when set, make the latency log-normal with this median and 99th percentile.
	P50, P99 time.Duration
}

// FixedLatency returns a Latency that adds d to every call.
func FixedLatency(d time.Duration) Latency { return Latency{Fixed: d} }

// z99 is the standard normal 99th percentile.
const z99 = 2.3263478740408408

// Draw returns the latency for a call given two independent uniform draws in (0, 1).
func (l Latency) Draw(u1, u2 float64) time.Duration {
	switch {
	case l.Mean > 0:
		return time.Duration(-math.Log(u1) * float64(l.Mean))
	case l.P50 > 0:
		sigma := math.Log(float64(l.P99)/float64(l.P50)) / z99
		z := math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2) // Box-Muller
		return time.Duration(float64(l.P50) * math.Exp(sigma*z))
	}
	return l.Fixed
}

// Fails reports whether call number n (counting from 1) on a port with this
// behavior fails. By default each call fails independently with probability
// ErrorRate: the draw is a hash of the seed and n, so the same pod fails the
// same calls again (reproducible tests) while failures still come in the
// clumps and gaps of real, independent faults. With EvenErrors exactly
// floor(n×ErrorRate) of the first n calls fail, evenly spaced.
func (b Behavior) Fails(n uint64) bool {
	if n == 0 || b.ErrorRate <= 0 {
		return false
	}
	if b.EvenErrors {
		return math.Floor(float64(n)*b.ErrorRate) > math.Floor(float64(n-1)*b.ErrorRate)
	}
	return uniform(b.Seed, n, 0) < b.ErrorRate
}

// Delay returns the latency added to call number n.
func (b Behavior) Delay(n uint64) time.Duration {
	return b.Latency.Draw(uniform(b.Seed, n, 1), uniform(b.Seed, n, 2))
}

// uniform returns a number in (0, 1) from the seed, the call number and a stream (one per use), by the
// splitmix64 finaliser: consecutive inputs give independent-looking outputs.
func uniform(seed, n, stream uint64) float64 {
	x := seed ^ (n * 0x9e3779b97f4a7c15) ^ (stream * 0xd1b54a32d192ed03)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return (float64(x>>11) + 0.5) / (1 << 53)
}

// SeedFor is the default seed of a container's draws: a hash of the pod's namespace and name and the
// container's name.
func SeedFor(namespace, pod, container string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(namespace + "/" + pod + "/" + container))
	return h.Sum64()
}

// PortSpec is one listener the runtime serves for a pod.
type PortSpec struct {
	// Port is the container port, bound on the pod IP.
	Port int32
	// Container is the name of the container that declares the port.
	Container string
	// Image is the container's full image reference.
	Image string
	// Version is the image tag (see ImageVersion), reported as server_id.
	Version string
	// Behavior is the fault injection configured by the container's env.
	Behavior Behavior
}

// PodSpec is everything the runtime serves for one pod. Two PodSpecs are
// equal exactly when the listeners they describe would behave the same.
type PodSpec struct {
	Namespace string
	Name      string
	UID       types.UID
	// IP is the pod IP, always inside 127.0.0.0/8.
	IP string
	// Ports is sorted by Port, without duplicates.
	Ports []PortSpec
}

// Equal reports whether s and o describe the same listeners.
func (s PodSpec) Equal(o PodSpec) bool {
	return s.Namespace == o.Namespace && s.Name == o.Name && s.UID == o.UID &&
		s.IP == o.IP && slices.Equal(s.Ports, o.Ports)
}

// PodPlan is the runtime's decision for one pod.
type PodPlan struct {
	// Serve is true when the pod's ports should be listening.
	Serve bool
	// Reason says why the pod is not served, when Serve is false.
	Reason string
	// Refused is true when the pod is Running but the runtime will not serve
	// it (host network, or an IP it must not bind): worth a log line, unlike
	// a pod that is merely not Running yet.
	Refused bool
	// Spec is what to serve, when Serve is true.
	Spec PodSpec
	// Notes are parts of the pod spec the runtime ignored, with the reason, to
	// be logged.
	Notes []string
	// Ready is true when the pod's Ready condition is True.
	Ready bool
	// Deleting is true when the pod has a deletionTimestamp: its ports drain
	// for at most Grace, then the runtime removes the pod object, as a
	// kubelet does once the containers stopped.
	Deleting bool
	// Grace is the pod's deletion grace period; zero when it has none.
	Grace time.Duration
	// UID is the pod's UID, for removing exactly the pod that was drained.
	UID types.UID
}

// Plan decides what to serve for pod. It serves Running pods that are not
// being deleted, do not use the host network and have a pod IP inside
// 127.0.0.0/8; every TCP container port of every container is served.
func Plan(pod *corev1.Pod) PodPlan {
	switch {
	case pod.DeletionTimestamp != nil:
		plan := PodPlan{Reason: "pod is being deleted", Deleting: true, UID: pod.UID}
		if g := pod.DeletionGracePeriodSeconds; g != nil && *g > 0 {
			plan.Grace = time.Duration(*g) * time.Second
		}
		return plan
	case pod.Status.Phase != corev1.PodRunning:
		return PodPlan{Reason: fmt.Sprintf("pod phase is %q, not Running", pod.Status.Phase)}
	case pod.Spec.HostNetwork:
		return PodPlan{Reason: "pod uses the host network", Refused: true}
	case pod.Status.PodIP == "":
		return PodPlan{Reason: "pod has no IP yet"}
	}
	ip, err := netip.ParseAddr(pod.Status.PodIP)
	if err != nil {
		return PodPlan{Reason: fmt.Sprintf("pod IP %q does not parse: %v", pod.Status.PodIP, err), Refused: true}
	}
	if ip = ip.Unmap(); !loopback.Contains(ip) {
		return PodPlan{Reason: fmt.Sprintf("pod IP %s is outside %s; the runtime binds only loopback addresses", ip, loopback), Refused: true}
	}

	plan := PodPlan{Serve: true, Ready: podReady(pod), UID: pod.UID, Spec: PodSpec{
		Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, IP: ip.String(),
	}}
	owner := map[int32]string{}
	for _, c := range pod.Spec.Containers {
		behavior, notes := ParseBehavior(c.Env)
		if !behavior.Seeded {
			behavior.Seed = SeedFor(pod.Namespace, pod.Name, c.Name)
		}
		for _, n := range notes {
			plan.Notes = append(plan.Notes, fmt.Sprintf("container %q: %s", c.Name, n))
		}
		version, err := ImageVersion(c.Image)
		if err != nil && behavior.Problem == "" {
			behavior.Problem = fmt.Sprintf("container %q: %v", c.Name, err)
		}
		for _, p := range c.Ports {
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
				plan.Notes = append(plan.Notes, fmt.Sprintf("container %q port %d: protocol %s ignored, only TCP is served", c.Name, p.ContainerPort, p.Protocol))
				continue
			}
			if p.ContainerPort < 1 || p.ContainerPort > 65535 {
				plan.Notes = append(plan.Notes, fmt.Sprintf("container %q port %d: ignored, ports are 1-65535", c.Name, p.ContainerPort))
				continue
			}
			if first, dup := owner[p.ContainerPort]; dup {
				plan.Notes = append(plan.Notes, fmt.Sprintf("container %q port %d: ignored, container %q already declares it", c.Name, p.ContainerPort, first))
				continue
			}
			owner[p.ContainerPort] = c.Name
			plan.Spec.Ports = append(plan.Spec.Ports, PortSpec{
				Port: p.ContainerPort, Container: c.Name, Image: c.Image, Version: version, Behavior: behavior,
			})
		}
	}
	slices.SortFunc(plan.Spec.Ports, func(a, b PortSpec) int { return int(a.Port) - int(b.Port) })
	return plan
}

// ParseBehavior reads SIM_ERROR_RATE, SIM_ERROR_MODE, SIM_SEED and SIM_LATENCY from a container's env.
// Only literal values count; a variable set through valueFrom is ignored and
// reported in notes. When a name appears twice the last one wins, as in the
// kubelet. A malformed value sets Problem, naming the variable.
func ParseBehavior(env []corev1.EnvVar) (b Behavior, notes []string) {
	values := map[string]string{}
	for _, e := range env {
		switch e.Name {
		case EnvErrorRate, EnvErrorMode, EnvSeed, EnvLatency:
		default:
			continue
		}
		if e.ValueFrom != nil {
			delete(values, e.Name)
			notes = append(notes, fmt.Sprintf("%s ignored: set through valueFrom, the pod runtime reads only literal values", e.Name))
			continue
		}
		values[e.Name] = e.Value
	}
	var problems []string
	if v, ok := values[EnvErrorRate]; ok {
		rate, err := parseErrorRate(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s=%q: %v", EnvErrorRate, v, err))
		}
		b.ErrorRate = rate
	}
	if v, ok := values[EnvErrorMode]; ok {
		switch strings.TrimSpace(v) {
		case ErrorModeRandom:
		case ErrorModeEven:
			b.EvenErrors = true
		default:
			problems = append(problems, fmt.Sprintf("%s=%q: want %q or %q", EnvErrorMode, v, ErrorModeRandom, ErrorModeEven))
		}
	}
	if v, ok := values[EnvSeed]; ok {
		seed, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s=%q: want a decimal number such as 42", EnvSeed, v))
		}
		b.Seed, b.Seeded = seed, true
	}
	if v, ok := values[EnvLatency]; ok {
		l, err := parseLatency(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s=%q: %v", EnvLatency, v, err))
		}
		b.Latency = l
	}
	if len(problems) > 0 {
		b = Behavior{Problem: "malformed env " + strings.Join(problems, "; ")}
	}
	return b, notes
}

func parseErrorRate(v string) (float64, error) {
	rate, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(rate) || rate < 0 || rate > 1 {
		return 0, fmt.Errorf("want a number from 0 to 1, such as 0.05")
	}
	return rate, nil
}

func parseLatency(v string) (Latency, error) {
	v = strings.TrimSpace(v)
	const syntax = `want a Go duration such as 150ms, "exp:20ms" or "p50=10ms,p99=200ms"`
	if mean, ok := strings.CutPrefix(v, "exp:"); ok {
		d, err := time.ParseDuration(strings.TrimSpace(mean))
		if err != nil || d <= 0 {
			return Latency{}, fmt.Errorf("%s: the mean must be a positive duration", syntax)
		}
		return Latency{Mean: d}, nil
	}
	if strings.HasPrefix(v, "p50=") {
		var l Latency
		for _, part := range strings.Split(v, ",") {
			key, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			d, err := time.ParseDuration(strings.TrimSpace(val))
			if err != nil || d <= 0 {
				return Latency{}, fmt.Errorf("%s: %q is not a positive duration", syntax, val)
			}
			switch key {
			case "p50":
				l.P50 = d
			case "p99":
				l.P99 = d
			default:
				return Latency{}, fmt.Errorf("%s: unknown percentile %q", syntax, key)
			}
		}
		if l.P99 == 0 || l.P99 < l.P50 {
			return Latency{}, fmt.Errorf("%s: p99 must be set and at least p50", syntax)
		}
		return l, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return Latency{}, fmt.Errorf("%s: %w", syntax, err)
	}
	if d < 0 {
		return Latency{}, fmt.Errorf("want a duration of zero or more, such as 150ms")
	}
	return Latency{Fixed: d}, nil
}

// tagPattern is the syntax of an OCI image tag.
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// digestPattern is the syntax of an OCI digest, algorithm:encoded.
var digestPattern = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{12,}$`)

// digestShortLen is how many characters of a digest's encoded part the short
// form keeps, as container tooling shows image IDs.
const digestShortLen = 12

// ImageVersion returns the version an image reference names: its tag
// ("registry.example/shop/checkout:v2" → "v2"), "latest" when it has none, or
// for a reference pinned by digest the digest's short form
// ("app@sha256:0123456789abcdef…" → "sha256:0123456789ab"), since the digest
// decides what runs. A registry port ("localhost:5000/app") is not a tag.
func ImageVersion(image string) (string, error) {
	if image == "" {
		return "", fmt.Errorf("empty image reference")
	}
	if strings.TrimSpace(image) != image {
		return "", fmt.Errorf("image reference %q has surrounding spaces", image)
	}
	if name, digest, ok := strings.Cut(image, "@"); ok {
		if name == "" || !digestPattern.MatchString(digest) {
			return "", fmt.Errorf("image reference %q: want name@algorithm:hex, such as app@sha256:<64 hex digits>", image)
		}
		alg, enc, _ := strings.Cut(digest, ":")
		return alg + ":" + enc[:digestShortLen], nil
	}
	last := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(last, ":")
	if i < 0 {
		if last == "" {
			return "", fmt.Errorf("image reference %q ends with '/'; want repository[:tag]", image)
		}
		return "latest", nil
	}
	tag := last[i+1:]
	if last[:i] == "" || !tagPattern.MatchString(tag) {
		return "", fmt.Errorf("image reference %q: want repository[:tag] with a tag of letters, digits, '_', '.', '-'", image)
	}
	return tag, nil
}

// podReady reports whether pod's Ready condition is True.
func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
