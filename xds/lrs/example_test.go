package lrs_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-dev/sluice/xds/lrs"
)

// ExampleForwarder shows a non-leader forwarding its local totals to the
// leader, whose totals then cover both replicas.
func ExampleForwarder() {
	leader := lrs.NewAggregator()
	g := grpc.NewServer()
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
