package lrs_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-dev/sluice/xds/auth"
	"github.com/sluice-dev/sluice/xds/lrs"
)

// ExampleForwarder shows a non-leader forwarding its local totals to the
// leader, whose totals then cover both replicas. The leader accepts forwards
// only from callers proven to be replicas: in Sluice the peer listener's
// mutual TLS (certs.PeerTLS) proves it and an interceptor records
// auth.MethodPeer; here the interceptor alone stands for both.
func ExampleForwarder() {
	leader := lrs.NewAggregator()
	asPeer := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(auth.NewContext(ctx, auth.Identity{Method: auth.MethodPeer, Name: "sluice"}), req)
	}
	g := grpc.NewServer(grpc.UnaryInterceptor(asPeer))
	lrs.RegisterForwarding(g, leader)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	go g.Serve(lis) //nolint:errcheck // returns when stopped
	defer g.Stop()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	replica := lrs.NewAggregator() // fed by this replica's lrs.Server
	f := &lrs.Forwarder{
		Aggregator: replica,
		Conn:       conn,
		Source:     "sluice-1/" + time.Unix(0, 0).UTC().Format(time.RFC3339),
	}
	// Start(ctx) forwards every Interval; Forward sends once.
	if err := f.Forward(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(leader.Sources())
	// Output: [sluice-1/1970-01-01T00:00:00Z]
}
