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
	// Track is TrackStable, TrackCanary or TrackSticky. Load is attributed
	// per locality: each locality's sub-zone names the track and revision of
	// its endpoints (see [LocalitySubZone]).
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
	case TrackStable, TrackCanary, TrackSticky, TrackExternal:
	default:
		return ClusterID{}, fmt.Errorf("cluster name %q: track %q is not one of stable, canary, sticky, external", name, parts[3])
	}
	return ClusterID{Namespace: parts[0], Service: parts[1], Port: uint32(port), Track: track}, nil
}

// LocalitySubZone is the sub-zone of the locality holding the endpoints of
// one revision of a track: "<track>/<revision>", or "<track>" for endpoints
// without a revision. Load reports carry it back per locality, so each
// request is attributed to the revision that served it.
func LocalitySubZone(track Track, revision string) string {
	if revision == "" {
		return string(track)
	}
	return string(track) + "/" + revision
}

// ParseLocalitySubZone is the inverse of [LocalitySubZone]: the track
// (stable or canary) and revision a locality of a Sluice cluster holds. It
// fails on sub-zones Sluice did not generate.
func ParseLocalitySubZone(subZone string) (Track, string, error) {
	track, revision, cut := strings.Cut(subZone, "/")
	if cut && revision == "" {
		return "", "", fmt.Errorf("locality sub-zone %q: empty revision after '/'", subZone)
	}
	switch t := Track(track); t {
	case TrackStable, TrackCanary:
	default:
		return "", "", fmt.Errorf("locality sub-zone %q: %q is not a track (stable or canary)", subZone, track)
	}
	if err := checkRevision(revision); err != nil {
		return "", "", fmt.Errorf("locality sub-zone %q: %w", subZone, err)
	}
	return Track(track), revision, nil
}

// checkRevision accepts a Kubernetes label value (the revision label's
// syntax): up to 63 letters, digits, '-', '_' and '.', alphanumeric at both
// ends; empty means no revision.
func checkRevision(r string) error {
	if len(r) > 63 {
		return fmt.Errorf("revision %q is longer than 63 characters", r)
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum || (c == '-' || c == '_' || c == '.') && i != 0 && i != len(r)-1 {
			continue
		}
		return fmt.Errorf("revision %q is not a label value (letters, digits, '-', '_', '.', alphanumeric at both ends)", r)
	}
	return nil
}

// CheckServiceName reports whether s can name a logical service: a DNS-1035
// label (lower-case letters, digits and '-', starting with a letter, ending
// alphanumeric, at most 63 characters), the syntax of a Kubernetes Service
// name. Admission checks service names with this function, so a name it
// accepts is one traffic can publish; a dot in particular would make
// "<service>.<namespace>" ambiguous.
func CheckServiceName(s string) error {
	if err := checkDNSLabel(s); err != nil {
		return err
	}
	if c := s[0]; c < 'a' || c > 'z' {
		return fmt.Errorf("%q does not start with a letter (a service name is a DNS-1035 label)", s)
	}
	return nil
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
