package translate

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-dev/sluice/router"
)

// externalCluster returns the LOGICAL_DNS cluster of an external dependency
// (router.TrackExternal): the client resolves the host itself and connects
// to what it resolves, so Sluice neither resolves names nor learns
// addresses. Its one endpoint is inline, as gRPC (gRFC A37) and Envoy
// require for LOGICAL_DNS. Load reports go to Sluice (lrs_server: self),
// which is how the callers' requests and errors to it are counted.
func externalCluster(c router.Cluster, opts Options) (*clusterv3.Cluster, error) {
	if c.External == nil {
		return nil, fmt.Errorf("cluster %q: external cluster without an address", c.Name)
	}
	cl, err := cluster(c, opts)
	if err != nil {
		return nil, err
	}
	cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS}
	cl.EdsClusterConfig = nil
	cl.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
	cl.DnsRefreshRate = durationpb.New(externalDNSRefresh)
	cl.LoadAssignment = &endpointv3.ClusterLoadAssignment{
		ClusterName: c.Name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Protocol:      corev3.SocketAddress_TCP,
						Address:       c.External.Host,
						PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: c.External.Port},
					}}},
				}},
			}},
		}},
	}
	return cl, nil
}

// externalDNSRefresh is how often Envoy re-resolves an external host
// (grpc-go re-resolves on connection loss).
const externalDNSRefresh = 30 * time.Second
