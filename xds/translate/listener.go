package translate

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sluice-dev/sluice/router"
)

// named is a resource with its type URL and name.
type named struct {
	typeURL, name string
	msg           proto.Message
	access        Access
}

// GRPCListenerName returns the Listener name a proxyless gRPC client asks for
// with target xds:///<service>.<namespace>; port 0 means the default port,
// else the name for target xds:///<service>.<namespace>:<port>.
func GRPCListenerName(namespace, service string, port uint32) string {
	if port == 0 {
		return service + "." + namespace
	}
	return service + "." + namespace + ":" + strconv.FormatUint(uint64(port), 10)
}

// SidecarListenerName returns the name of the Envoy outbound listener, and
// of its route configuration, that the sidecars of a namespace get for a
// port number: "outbound_<port>/<namespace>". Each namespace has its own,
// so a bare service name resolves within the caller's namespace.
func SidecarListenerName(namespace string, port uint32) string {
	return "outbound_" + strconv.FormatUint(uint64(port), 10) + "/" + namespace
}

// httpConnectionManager returns an HCM that fetches its routes over ADS
// (RDS) and ends its filter chain with the router, as grpc-go requires.
func httpConnectionManager(statPrefix, routeConfig string) (*anypb.Any, error) {
	routerCfg, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, fmt.Errorf("encode router filter: %w", err)
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: routeConfig,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       wellknown.Router,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: routerCfg},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("encode http connection manager: %w", err)
	}
	return hcm, nil
}

// grpcResources returns the proxyless gRPC listeners and route
// configurations of one service: one route configuration per gRPC port, a
// listener per port, and the port-less listener for the lowest gRPC port.
func grpcResources(s router.ServicePlan, form Form) ([]named, []Limit, error) {
	var out []named
	var limits []Limit
	access := Access{Namespace: s.Namespace, Consumers: s.Consumers}
	first := true
	for _, p := range s.Ports {
		if p.Protocol != router.ProtocolGRPC {
			continue
		}
		rcName := GRPCListenerName(s.Namespace, s.Name, p.Number)
		rs, limited, err := routes(p, form, true)
		if err != nil {
			return nil, nil, fmt.Errorf("service %s/%s port %d: %w", s.Namespace, s.Name, p.Number, err)
		}
		for _, f := range limited {
			limits = append(limits, Limit{Route: rcName, Namespace: s.Namespace, Service: s.Name, Feature: f, Instead: "stable version"})
		}
		// The route configuration belongs to this one service, so its
		// virtual host matches whatever authority the client uses.
		out = append(out, named{typeURL: resource.RouteType, name: rcName, access: access, msg: &routev3.RouteConfiguration{
			Name: rcName,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    GRPCListenerName(s.Namespace, s.Name, 0),
				Domains: []string{"*"},
				Routes:  rs,
			}},
		}})
		names := []string{rcName}
		if first {
			names = append(names, GRPCListenerName(s.Namespace, s.Name, 0))
			first = false
		}
		for _, ln := range names {
			hcm, err := httpConnectionManager(ln, rcName)
			if err != nil {
				return nil, nil, fmt.Errorf("listener %q: %w", ln, err)
			}
			out = append(out, named{typeURL: resource.ListenerType, name: ln, access: access, msg: &listenerv3.Listener{
				Name:        ln,
				ApiListener: &listenerv3.ApiListener{ApiListener: hcm},
			}})
		}
	}
	return out, limits, nil
}

// sidecarResources returns, for every namespace whose sidecars may call a
// service (the namespaces of the plan's services and the consumers they
// name), and every port number those services use, the Envoy outbound
// listener and its route configuration, with one virtual host per service
// the namespace may see on that port. Only the namespace's own services
// answer to their bare name, so no namespace can capture another's. A
// namespace that only a "*" grant reaches has no sidecar resources: name it
// in sluice.dev/consumers to give its sidecars routes.
func sidecarResources(plan router.Plan, opts Options, form Form) ([]named, error) {
	type svcPort struct {
		svc  router.ServicePlan
		port router.PortPlan
	}
	var out []named
	for _, ns := range SidecarNamespaces(plan) {
		byPort := map[uint32][]svcPort{}
		for _, s := range plan.Services {
			if !s.Consumers.Allows(s.Namespace, ns) {
				continue
			}
			for _, p := range s.Ports {
				byPort[p.Number] = append(byPort[p.Number], svcPort{s, p})
			}
		}
		access := Access{Namespace: ns}
		for _, n := range slices.Sorted(maps.Keys(byPort)) {
			name := SidecarListenerName(ns, n)
			rc := &routev3.RouteConfiguration{Name: name}
			entries := byPort[n]
			slices.SortFunc(entries, func(a, b svcPort) int {
				return cmp.Or(cmp.Compare(a.svc.Namespace, b.svc.Namespace), cmp.Compare(a.svc.Name, b.svc.Name))
			})
			for _, e := range entries {
				rs, _, err := routes(e.port, form, false)
				if err != nil {
					return nil, fmt.Errorf("service %s/%s port %d: %w", e.svc.Namespace, e.svc.Name, n, err)
				}
				rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
					Name:    GRPCListenerName(e.svc.Namespace, e.svc.Name, 0),
					Domains: virtualHostDomains(e.svc.Namespace, e.svc.Name, n, opts.ClusterDomain, e.svc.Namespace == ns),
					Routes:  rs,
				})
			}
			hcm, err := httpConnectionManager("outbound_"+strconv.FormatUint(uint64(n), 10), name)
			if err != nil {
				return nil, fmt.Errorf("listener %q: %w", name, err)
			}
			out = append(out,
				named{typeURL: resource.RouteType, name: name, msg: rc, access: access},
				named{typeURL: resource.ListenerType, name: name, access: access, msg: &listenerv3.Listener{
					Name: name,
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Protocol:      corev3.SocketAddress_TCP,
						Address:       opts.SidecarAddress,
						PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: n},
					}}},
					TrafficDirection: corev3.TrafficDirection_OUTBOUND,
					FilterChains: []*listenerv3.FilterChain{{
						Filters: []*listenerv3.Filter{{
							Name:       wellknown.HTTPConnectionManager,
							ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
						}},
					}},
				}},
			)
		}
	}
	return out, nil
}

// SidecarNamespaces returns, sorted, the namespaces whose sidecars get
// outbound listeners and route configurations: those of the plan's services
// and those the services name as consumers.
func SidecarNamespaces(plan router.Plan) []string {
	namespaces := map[string]bool{}
	for _, s := range plan.Services {
		namespaces[s.Namespace] = true
		for _, ns := range s.Consumers.Namespaces {
			namespaces[ns] = true
		}
	}
	return slices.Sorted(maps.Keys(namespaces))
}

// virtualHostDomains returns the authorities a sidecar client may use for a
// service, each with and without the port: "<service>.<namespace>" and
// "<service>.<namespace>.svc.<cluster domain>", and the bare "<service>"
// when the sidecar is in the service's own namespace (bare), as Kubernetes
// DNS resolves a bare name. Names of other namespaces must be qualified.
func virtualHostDomains(namespace, service string, port uint32, clusterDomain string, bare bool) []string {
	var hosts []string
	if bare {
		hosts = append(hosts, service)
	}
	hosts = append(hosts, service+"."+namespace, service+"."+namespace+".svc."+clusterDomain)
	p := ":" + strconv.FormatUint(uint64(port), 10)
	out := make([]string, 0, 2*len(hosts))
	for _, h := range hosts {
		out = append(out, h, h+p)
	}
	return out
}
