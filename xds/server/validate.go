package server

import (
	"errors"
	"fmt"
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// validator is implemented by every generated Envoy message.
type validator interface{ ValidateAll() error }

// checked is a validated resource set with content versions.
type checked struct {
	resources Resources
	versions  map[string]map[string]string
}

// check validates r as a whole: known types, messages of the right type,
// map keys equal to resource names, ValidateAll on every message, and
// references closed within the set (listeners to routes, routes to clusters,
// EDS clusters to endpoints). All problems are reported, joined, in a stable
// order.
func check(r Resources) (checked, error) {
	out := checked{resources: Resources{}, versions: map[string]map[string]string{}}
	var errs []error
	known := map[string]bool{}
	for _, t := range Types {
		known[t] = true
		out.resources[t] = map[string]proto.Message{}
		out.versions[t] = map[string]string{}
	}
	for _, typeURL := range sortedKeys(r) {
		if !known[typeURL] {
			errs = append(errs, fmt.Errorf("type %q is not served (want one of %v)", typeURL, Types))
			continue
		}
		for _, name := range sortedKeys(r[typeURL]) {
			m := r[typeURL][name]
			if err := checkOne(typeURL, name, m); err != nil {
				errs = append(errs, fmt.Errorf("%s %q: %w", typeLabel(typeURL), name, err))
				continue
			}
			v, err := ContentVersion(m)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %q: %w", typeLabel(typeURL), name, err))
				continue
			}
			out.resources[typeURL][name] = m
			out.versions[typeURL][name] = v
		}
	}
	if len(errs) == 0 {
		errs = append(errs, checkReferences(out.resources)...)
	}
	if len(errs) > 0 {
		return checked{}, fmt.Errorf("invalid xDS resources, nothing published: %w", errors.Join(errs...))
	}
	return out, nil
}

func checkOne(typeURL, name string, m proto.Message) error {
	if m == nil || !m.ProtoReflect().IsValid() {
		return errors.New("nil message")
	}
	if got := "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName()); got != typeURL {
		return fmt.Errorf("message is %s, want %s", got, typeURL)
	}
	if got := cache.GetResourceName(m); got != name {
		return fmt.Errorf("resource names itself %q; the map key must equal the name", got)
	}
	v, ok := m.(validator)
	if !ok {
		return fmt.Errorf("%T has no ValidateAll", m)
	}
	if err := v.ValidateAll(); err != nil {
		return fmt.Errorf("validate: %w", err)
	}
	return nil
}

// checkReferences reports references that point outside the set.
func checkReferences(r Resources) []error {
	var errs []error
	missing := func(from, kind, name, typeURL string) {
		if _, ok := r[typeURL][name]; !ok {
			errs = append(errs, fmt.Errorf("%s references %s %q, which is not in the update", from, kind, name))
		}
	}
	for _, name := range sortedKeys(r[resource.ListenerType]) {
		from := fmt.Sprintf("listener %q", name)
		hcms, err := listenerManagers(r[resource.ListenerType][name].(*listenerv3.Listener))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", from, err))
			continue
		}
		for _, h := range hcms {
			if rds := h.GetRds(); rds != nil {
				missing(from, "route", rds.GetRouteConfigName(), resource.RouteType)
			}
			for _, c := range routeClusters(h.GetRouteConfig()) {
				missing(from, "cluster", c, resource.ClusterType)
			}
		}
	}
	for _, name := range sortedKeys(r[resource.RouteType]) {
		for _, c := range routeClusters(r[resource.RouteType][name].(*routev3.RouteConfiguration)) {
			missing(fmt.Sprintf("route %q", name), "cluster", c, resource.ClusterType)
		}
	}
	for _, name := range sortedKeys(r[resource.ClusterType]) {
		c := r[resource.ClusterType][name].(*clusterv3.Cluster)
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		cla := c.GetEdsClusterConfig().GetServiceName()
		if cla == "" {
			cla = c.GetName()
		}
		missing(fmt.Sprintf("cluster %q", name), "endpoints", cla, resource.EndpointType)
	}
	return errs
}

// listenerManagers returns the HTTP connection managers of a listener: the
// api_listener of a proxyless gRPC listener and the HCM filters of its filter
// chains.
func listenerManagers(l *listenerv3.Listener) ([]*hcmv3.HttpConnectionManager, error) {
	var anys []*anypb.Any
	if a := l.GetApiListener().GetApiListener(); a != nil {
		anys = append(anys, a)
	}
	chains := append([]*listenerv3.FilterChain(nil), l.GetFilterChains()...)
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(chains, d)
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			if a := f.GetTypedConfig(); a != nil && a.MessageIs(&hcmv3.HttpConnectionManager{}) {
				anys = append(anys, a)
			}
		}
	}
	out := make([]*hcmv3.HttpConnectionManager, 0, len(anys))
	for _, a := range anys {
		h := &hcmv3.HttpConnectionManager{}
		if err := a.UnmarshalTo(h); err != nil {
			return nil, fmt.Errorf("decode HttpConnectionManager: %w", err)
		}
		if err := h.ValidateAll(); err != nil {
			return nil, fmt.Errorf("validate HttpConnectionManager: %w", err)
		}
		out = append(out, h)
	}
	return out, nil
}

// routeClusters returns the clusters a route configuration sends traffic to,
// sorted and without duplicates.
func routeClusters(rc *routev3.RouteConfiguration) []string {
	set := map[string]struct{}{}
	for _, vh := range rc.GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			a := rt.GetRoute()
			if c := a.GetCluster(); c != "" {
				set[c] = struct{}{}
			}
			for _, wc := range a.GetWeightedClusters().GetClusters() {
				set[wc.GetName()] = struct{}{}
			}
		}
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}
