package podruntime

import (
	"fmt"
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
	// EnvErrorRate is the fraction of calls that fail, a number from 0 to 1.
	EnvErrorRate = "SIM_ERROR_RATE"
	// EnvLatency is a Go duration (e.g. "150ms") added to every call.
	EnvLatency = "SIM_LATENCY"
)

// loopback is the only range the runtime ever binds: the local cluster's pod
// IPs live there and nothing outside it belongs to this machine's test pods.
var loopback = netip.MustParsePrefix("127.0.0.0/8")

// Behavior is how one container answers calls.
type Behavior struct {
	// ErrorRate is the fraction of calls that fail, in [0, 1].
	ErrorRate float64
	// Latency is added to every call, failing or not.
	Latency time.Duration
	// Problem, when not empty, says which env var is malformed and why; every
	// call then fails with this message.
	Problem string
}

// Fails reports whether call number n (counting from 1) on a port with this
// behavior fails. Failures are spread evenly: exactly floor(n×ErrorRate) of
// the first n calls fail, so tests and analyses see the configured rate
// without sampling noise.
func (b Behavior) Fails(n uint64) bool {
	if n == 0 || b.ErrorRate <= 0 {
		return false
	}
	return math.Floor(float64(n)*b.ErrorRate) > math.Floor(float64(n-1)*b.ErrorRate)
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
}

// Plan decides what to serve for pod. It serves Running pods that are not
// being deleted, do not use the host network and have a pod IP inside
// 127.0.0.0/8; every TCP container port of every container is served.
func Plan(pod *corev1.Pod) PodPlan {
	switch {
	case pod.DeletionTimestamp != nil:
		return PodPlan{Reason: "pod is being deleted"}
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

	plan := PodPlan{Serve: true, Spec: PodSpec{
		Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, IP: ip.String(),
	}}
	owner := map[int32]string{}
	for _, c := range pod.Spec.Containers {
		behavior, notes := ParseBehavior(c.Env)
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

// ParseBehavior reads SIM_ERROR_RATE and SIM_LATENCY from a container's env.
// Only literal values count; a variable set through valueFrom is ignored and
// reported in notes. When a name appears twice the last one wins, as in the
// kubelet. A malformed value sets Problem, naming the variable.
func ParseBehavior(env []corev1.EnvVar) (b Behavior, notes []string) {
	values := map[string]string{}
	for _, e := range env {
		if e.Name != EnvErrorRate && e.Name != EnvLatency {
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
	if v, ok := values[EnvLatency]; ok {
		d, err := parseLatency(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s=%q: %v", EnvLatency, v, err))
		}
		b.Latency = d
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

func parseLatency(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("want a Go duration such as 150ms or 2s: %w", err)
	}
	if d < 0 {
		return 0, fmt.Errorf("want a duration of zero or more, such as 150ms")
	}
	return d, nil
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
