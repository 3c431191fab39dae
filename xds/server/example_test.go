package server_test

import (
	"context"
	"fmt"
	"net"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/sluice-dev/sluice/xds/lrs"
	"github.com/sluice-dev/sluice/xds/server"
)

// Example wires the ADS and load reporting services on one gRPC server and
// confirms that a route change reached every subscribed proxy.
func Example() {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	loads, err := lrs.NewServer(lrs.Options{
		Attribute: func(cluster, subZone string) (lrs.Key, bool) {
			return lrs.Key{Namespace: "shop", Service: "checkout", Track: subZone}, subZone != ""
		},
		Registerer: reg,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	xds := server.New(server.Options{Registerer: reg, LoadReporting: loads, Logger: logr.Discard()})
	g := grpc.NewServer()
	xds.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	go g.Serve(lis) //nolint:errcheck // returns when stopped
	defer g.Stop()

	// The translator's output for the whole mesh; empty here.
	if err := xds.Update(ctx, server.Resources{}); err != nil {
		fmt.Println(err)
		return
	}
	// After publishing a route, wait for the proxies that use it.
	route := "checkout.shop"
	if version, ok := xds.Version(resource.RouteType, route); ok {
		acked, nacked, err := xds.WaitAcked(ctx, resource.RouteType, route, version)
		fmt.Println(acked, nacked, err)
	}
	fmt.Println(len(xds.Proxies()), "proxies")
	// Output: 0 proxies
}
