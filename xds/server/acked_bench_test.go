package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluice-dev/sluice/xds/lrs"
)

// vouchingPeer answers every ProxyAcks question yes after delay: a peer
// replica on which every reporter acknowledged everything, far away.
type vouchingPeer struct{ delay time.Duration }

func (p vouchingPeer) Acknowledged(ctx context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	var req AckRequest
	if err := json.Unmarshal(in.GetValue(), &req); err != nil {
		return nil, err
	}
	select {
	case <-time.After(p.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	out := AckAnswer{Acknowledged: req.Clusters}
	for i := range req.Pairs {
		out.Pairs = append(out.Pairs, i)
	}
	b, err := json.Marshal(out)
	return wrapperspb.Bytes(b), err
}

// BenchmarkLoadReportsNewIdentities: N reporters never seen before open
// LRS streams to one replica at once, each sending 3 reports of 4
// clusters; they acknowledged the clusters on another replica, which
// answers each question after 200ms. Reported: the reports counted per
// second until every one counted, with the receive loop waiting for the
// answers (wait) and with reports held while it goes on (held), and the
// share refused because their question timed out (the wait stops at 15s).
func BenchmarkLoadReportsNewIdentities(b *testing.B) {
	const reportsPer, clusters, delay = 3, 4, 200 * time.Millisecond
	g := grpc.NewServer()
	g.RegisterService(&proxyAcksDesc, vouchingPeer{delay: delay})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go g.Serve(lis)
	b.Cleanup(g.Stop)
	peer, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { peer.Close() })
	report := &lrsv3.LoadStatsRequest{}
	for c := range clusters {
		report.ClusterStats = append(report.ClusterStats, &endpointv3.ClusterStats{
			ClusterName: fmt.Sprintf("team-a/svc%d/9090/canary", c),
			UpstreamLocalityStats: []*endpointv3.UpstreamLocalityStats{{
				Locality: &corev3.Locality{SubZone: "canary/r1"}, TotalSuccessfulRequests: 1, TotalIssuedRequests: 1,
			}},
		})
	}
	for _, mode := range []string{"wait", "held"} {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/identities=%d", mode, n), func(b *testing.B) {
				var rate, last, refused float64
				for range b.N {
					fleet := &FleetAcks{Peers: func(context.Context) ([]Peer, error) { return []Peer{{Addr: "b", Conn: peer}}, nil }}
					opts := lrs.Options{Attribute: lrs.AttributeCluster, RequireIdentity: true, Logger: logr.Discard()}
					if mode == "wait" {
						opts.Acknowledged = fleet.Acknowledged
					} else {
						opts.LookupAck = fleet.Lookup
					}
					ls, err := lrs.NewServer(opts)
					if err != nil {
						b.Fatal(err)
					}
					srv := grpc.NewServer(grpc.StreamInterceptor(testIdentity))
					ls.Register(srv)
					l, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						b.Fatal(err)
					}
					go srv.Serve(l)
					conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
					if err != nil {
						b.Fatal(err)
					}
					ctx, cancel := context.WithCancel(context.Background())
					streams := make([]grpc.BidiStreamingClient[lrsv3.LoadStatsRequest, lrsv3.LoadStatsResponse], n)
					for i := range n {
						st, err := lrsv3.NewLoadReportingServiceClient(conn).StreamLoadStats(asIdentity(ctx, "team-a", fmt.Sprint("client-", i)))
						if err == nil {
							err = st.Send(&lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: fmt.Sprint("node-", i)}})
						}
						if err == nil {
							_, err = st.Recv()
						}
						if err != nil {
							b.Fatal(err)
						}
						streams[i] = st
					}
					start := time.Now()
					for _, st := range streams {
						for range reportsPer {
							if err := st.Send(report); err != nil {
								b.Fatal(err)
							}
						}
					}
					want := uint64(n * reportsPer * clusters)
					// A question that times out is a no: its reports are
					// refused and never count.
					deadline := start.Add(15 * time.Second)
					var got uint64
					for time.Now().Before(deadline) {
						got = 0
						for _, t := range ls.Aggregator().Local() {
							got += t.Requests
						}
						if got == want {
							break
						}
						time.Sleep(time.Millisecond)
					}
					last = time.Since(start).Seconds()
					rate += float64(got) / clusters / last
					refused += float64(want-got) / float64(want)
					cancel()
					conn.Close()
					srv.Stop()
				}
				b.ReportMetric(rate/float64(b.N), "reports/s")
				b.ReportMetric(last*1000, "ms-to-all-counted")
				b.ReportMetric(100*refused/float64(b.N), "%refused")
			})
		}
	}
}
