package translate

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/router"
)

// httpProtocolOptionsKey is the extension name under which Envoy reads the
// upstream HTTP protocol options of a cluster.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// adsSource is the config source "fetch over the ADS stream".
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// cluster returns the EDS cluster of a plan cluster. Load reports go to the
// management server itself (lrs_server: self), which is how Sluice sees
// per-track request and error counts.
func cluster(c router.Cluster, opts Options) (*clusterv3.Cluster, error) {
	cl := &clusterv3.Cluster{
		Name:                 c.Name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		ConnectTimeout:       durationpb.New(opts.ConnectTimeout),
		LrsServer: &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Self{Self: &corev3.SelfConfigSource{}},
		},
	}
	switch c.LB {
	case router.LBRoundRobin:
		cl.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	case router.LBRingHash:
		// A fixed ring size keeps ring entries where they are when the
		// weights change; see router.Build for the monotonicity this buys.
		cl.LbPolicy = clusterv3.Cluster_RING_HASH
		cl.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
			MinimumRingSize: wrapperspb.UInt64(router.StickyRingSize),
			MaximumRingSize: wrapperspb.UInt64(router.StickyRingSize),
			HashFunction:    clusterv3.Cluster_RingHashLbConfig_XX_HASH,
		}}
		// Envoy only applies locality weights to ring hash when
		// locality-weighted balancing is on; grpc-go always applies them.
		cl.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{
			LocalityConfigSpecifier: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig_{
				LocalityWeightedLbConfig: &clusterv3.Cluster_CommonLbConfig_LocalityWeightedLbConfig{},
			},
		}
	default:
		return nil, fmt.Errorf("cluster %q: unknown load-balancing policy %q", c.Name, c.LB)
	}
	if c.Protocol == router.ProtocolGRPC {
		opts, err := anypb.New(&httpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
						Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
					},
				},
			},
		})
		if err != nil {
			return nil, fmt.Errorf("cluster %q: encode protocol options: %w", c.Name, err)
		}
		cl.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: opts}
	}
	return cl, nil
}

// loadAssignment returns the endpoints of a plan cluster, one locality per
// revision of a track. The locality's sub_zone names both
// (router.LocalitySubZone), so load reports, which are per locality, say
// which revision of which track carried the load.
func loadAssignment(c router.Cluster) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: c.Name}
	for _, l := range c.Localities {
		lle := &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{SubZone: router.LocalitySubZone(l.Track, l.Revision)},
			LoadBalancingWeight: wrapperspb.UInt32(l.Weight),
		}
		for _, a := range l.Endpoints {
			lle.LbEndpoints = append(lle.LbEndpoints, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Protocol:      corev3.SocketAddress_TCP,
						Address:       a.IP,
						PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: a.Port},
					}}},
					Hostname: a.Pod,
				}},
				HealthStatus: corev3.HealthStatus_HEALTHY,
			})
		}
		cla.Endpoints = append(cla.Endpoints, lle)
	}
	return cla
}
