package router

import (
	"fmt"
	"strconv"
	"strings"
)

// ClusterID identifies the cluster of one service port and track. Load
// reports name clusters, so the LRS side recovers namespace, service, port
// and track from a cluster name with [ParseClusterName].
type ClusterID struct {
	Namespace string
	Service   string
	Port      uint32
	// Track is TrackStable, TrackCanary or TrackSticky. Load on the sticky
	// cluster is attributed per locality: each locality's sub-zone is the
	// track of its endpoints (see [LocalityTrack]).
	Track Track
}

// ClusterName returns the cluster name "<namespace>/<service>/<port>/<track>".
// Kubernetes names cannot contain '/', so the name parses back unambiguously.
func ClusterName(namespace, service string, port uint32, track Track) string {
	return namespace + "/" + service + "/" + strconv.FormatUint(uint64(port), 10) + "/" + string(track)
}

// Name returns the cluster name of id; see [ClusterName].
func (id ClusterID) Name() string { return ClusterName(id.Namespace, id.Service, id.Port, id.Track) }

// ParseClusterName is the inverse of [ClusterName]. It fails on names Sluice
// did not generate.
func ParseClusterName(name string) (ClusterID, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 {
		return ClusterID{}, fmt.Errorf("cluster name %q: want <namespace>/<service>/<port>/<track>", name)
	}
	if err := checkDNSLabel(parts[0]); err != nil {
		return ClusterID{}, fmt.Errorf("cluster name %q: namespace: %w", name, err)
	}
	if err := checkDNSLabel(parts[1]); err != nil {
		return ClusterID{}, fmt.Errorf("cluster name %q: service: %w", name, err)
	}
	port, err := strconv.ParseUint(parts[2], 10, 16)
	if err != nil || port == 0 || parts[2] != strconv.FormatUint(port, 10) {
		return ClusterID{}, fmt.Errorf("cluster name %q: port %q is not a number in 1..65535", name, parts[2])
	}
	track := Track(parts[3])
	switch track {
	case TrackStable, TrackCanary, TrackSticky:
	default:
		return ClusterID{}, fmt.Errorf("cluster name %q: track %q is not one of stable, canary, sticky", name, parts[3])
	}
	return ClusterID{Namespace: parts[0], Service: parts[1], Port: uint32(port), Track: track}, nil
}

// LocalityTrack returns the track whose endpoints a locality of a Sluice
// cluster holds, given that locality's sub-zone (the field load reports carry).
func LocalityTrack(subZone string) (Track, error) {
	switch t := Track(subZone); t {
	case TrackStable, TrackCanary:
		return t, nil
	default:
		return "", fmt.Errorf("locality sub-zone %q is not a track (stable or canary)", subZone)
	}
}

// checkDNSLabel checks an RFC 1123 label, the syntax of Kubernetes namespace
// and service names.
func checkDNSLabel(s string) error {
	if s == "" {
		return fmt.Errorf("empty name")
	}
	if len(s) > 63 {
		return fmt.Errorf("%q is longer than 63 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if alnum || c == '-' && i != 0 && i != len(s)-1 {
			continue
		}
		return fmt.Errorf("%q is not a DNS label (lower-case letters, digits and '-', starting and ending alphanumeric)", s)
	}
	return nil
}
