package router

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// TrackExternal is the track of an external dependency's cluster: a gRPC
// service outside the cluster, reached by DNS name, that a namespace's
// clients call through Sluice's routes so that their load reports measure
// it.
const TrackExternal Track = "external"

// ErrExternal: an external dependency is malformed.
var ErrExternal = errors.New("invalid external dependency")

// External is an external dependency declared in a namespace: clients of
// that namespace (and only of it) call xds:///<Name>.<Namespace> and reach
// Host:Port, resolved by the client's own DNS.
type External struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Host      string `json:"host"`
	Port      uint32 `json:"port"`
}

// ExternalAddress is where an external cluster's requests go: a DNS name
// (or IP) and port that the client resolves itself.
type ExternalAddress struct {
	Host string `json:"host"`
	Port uint32 `json:"port"`
}

// ExternalCluster returns the name of the cluster of an external dependency.
func ExternalCluster(namespace, name string, port uint32) string {
	return ClusterName(namespace, name, port, TrackExternal)
}

// Check reports whether e can be published: a DNS-1035 name, a DNS name or
// IP for the host, a port in 1..65535.
func (e External) Check() error {
	var errs []error
	if err := checkDNSLabel(e.Namespace); err != nil {
		errs = append(errs, fmt.Errorf("namespace: %w", err))
	}
	if err := CheckServiceName(e.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	if err := checkHost(e.Host); err != nil {
		errs = append(errs, err)
	}
	if e.Port == 0 || e.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d is not in 1..65535", e.Port))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w %s/%s: %w", ErrExternal, e.Namespace, e.Name, err)
	}
	return nil
}

// checkHost accepts a DNS name of labels of letters, digits and '-' (a
// trailing dot allowed), at most 253 characters.
func checkHost(h string) error {
	name := strings.TrimSuffix(h, ".")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("host %q: want a DNS name of at most 253 characters", h)
	}
	for _, l := range strings.Split(name, ".") {
		if err := checkDNSLabel(strings.ToLower(l)); err != nil {
			return fmt.Errorf("host %q: %w", h, err)
		}
	}
	return nil
}

// ExternalConflict is an external dependency left out of a plan, and why.
type ExternalConflict struct {
	External External
	Reason   string
}

// AddExternals returns p with a service and a cluster for each external
// dependency: one gRPC port whose default route sends every request to the
// external cluster, visible to the declaring namespace only. An external
// that is malformed, or whose name is a service of its namespace already
// (the service wins: a declaration never replaces routes that pods serve),
// is left out and returned as a conflict. Names are per namespace, so no
// declaration can reach another namespace's target. The result is sorted
// as Build's is.
func AddExternals(p Plan, externals []External) (Plan, []ExternalConflict) {
	taken := map[[2]string]bool{}
	for _, s := range p.Services {
		taken[[2]string{s.Namespace, s.Name}] = true
	}
	out := Plan{Services: slices.Clone(p.Services), Clusters: slices.Clone(p.Clusters)}
	var conflicts []ExternalConflict
	sorted := slices.Clone(externals)
	slices.SortFunc(sorted, func(a, b External) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port))
	})
	for _, e := range sorted {
		key := [2]string{e.Namespace, e.Name}
		if err := e.Check(); err != nil {
			conflicts = append(conflicts, ExternalConflict{External: e, Reason: err.Error()})
			continue
		}
		if taken[key] {
			conflicts = append(conflicts, ExternalConflict{External: e,
				Reason: fmt.Sprintf("%s.%s is already a service (or external dependency) of the namespace; it keeps its routes", e.Name, e.Namespace)})
			continue
		}
		taken[key] = true
		id := ClusterID{Namespace: e.Namespace, Service: e.Name, Port: e.Port, Track: TrackExternal}
		out.Clusters = append(out.Clusters, Cluster{Name: id.Name(), ID: id, Protocol: ProtocolGRPC, LB: LBRoundRobin,
			External: &ExternalAddress{Host: e.Host, Port: e.Port}})
		out.Services = append(out.Services, ServicePlan{Namespace: e.Namespace, Name: e.Name, Ports: []PortPlan{{
			Name: "grpc", Number: e.Port, Protocol: ProtocolGRPC,
			Routes: []Route{{Name: "default", Kind: RouteDefault, Clusters: []ClusterWeight{{Cluster: id.Name(), Weight: TotalWeight}}}},
		}}})
	}
	slices.SortFunc(out.Services, func(a, b ServicePlan) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	slices.SortFunc(out.Clusters, func(a, b Cluster) int { return cmp.Compare(a.Name, b.Name) })
	return out, conflicts
}

// validateExternal checks an external cluster: an address, no localities
// (the client resolves the name), the external track. Other clusters must
// not carry an address.
func validateExternal(c Cluster) []error {
	at := fmt.Sprintf("cluster %q", c.Name)
	switch {
	case c.External == nil && c.ID.Track == TrackExternal:
		return []error{fmt.Errorf("%w: %s: external track without an address", ErrExternal, at)}
	case c.External == nil:
		return nil
	case c.ID.Track != TrackExternal:
		return []error{fmt.Errorf("%w: %s: an address on a %s cluster", ErrExternal, at, c.ID.Track)}
	case len(c.Localities) > 0:
		return []error{fmt.Errorf("%w: %s: localities on an external cluster", ErrExternal, at)}
	}
	var errs []error
	if err := checkHost(c.External.Host); err != nil {
		errs = append(errs, fmt.Errorf("%w: %s: %w", ErrExternal, at, err))
	}
	if c.External.Port != c.ID.Port {
		errs = append(errs, fmt.Errorf("%w: %s: address port %d differs from the cluster's %d", ErrExternal, at, c.External.Port, c.ID.Port))
	}
	return errs
}
