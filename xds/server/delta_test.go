package server

import (
	"context"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
)

// TestDeltaWildcardNackAndRemoval covers an Envoy-style delta stream with a
// wildcard cluster subscription: it NACKs one update, stays on what it
// ACKed, and sees a removed cluster in removed_resources.
func TestDeltaWildcardNackAndRemoval(t *testing.T) {
	s, addr := testServer(t, Options{})
	ctx := context.Background()
	r := twoServices(t)
	if err := s.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	stream, err := adsClient(t, addr).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: testNode("envoy-delta"), TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, res := range resp.GetResources() {
		got[res.GetName()] = res.GetVersion()
	}
	want := map[string]string{}
	for name, m := range r[resource.ClusterType] {
		want[name] = mustVersion(t, m)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("wildcard clusters (-want +got):\n%s", diff)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	good := want["shop/cart/stable"]
	if _, _, err := s.WaitAcked(ctx, resource.ClusterType, "shop/cart/stable", good); err != nil {
		t.Fatal(err)
	}

	changed := edsCluster("shop/cart/stable")
	changed.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	r[resource.ClusterType]["shop/cart/stable"] = changed
	if err := s.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{
		TypeUrl: resource.ClusterType, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &statuspb.Status{Code: 3, Message: "least request not supported"},
	}); err != nil {
		t.Fatal(err)
	}
	acked, nacked, err := s.WaitAcked(ctx, resource.ClusterType, "shop/cart/stable", mustVersion(t, changed))
	if err != nil || len(acked) != 0 || !cmp.Equal(nacked, []string{"envoy-delta"}) {
		t.Fatalf("WaitAcked(changed) = %v, %v, %v; want it NACKed by envoy-delta", acked, nacked, err)
	}
	if a, _, _ := s.Synced(resource.ClusterType, "shop/cart/stable", good); a != 1 {
		t.Fatal("after the NACK the proxy is not reported on its last acknowledged cluster")
	}
	p := s.Proxies()[0].Types[0]
	if p.LastNack == nil || p.LastNack.Message != "least request not supported" || !p.Wildcard {
		t.Fatalf("type status = %+v, want a wildcard subscription with the NACK message", p)
	}

	// Removing the cart service removes its cluster from the proxy.
	r = service(t, "checkout.shop", map[string]uint32{"shop/checkout/stable": 90, "shop/checkout/canary": 10}, "127.0.0.1", 8080)
	done := updateAsync(s, ctx, r)
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"shop/cart/stable"}, resp.GetRemovedResources()); diff != "" {
		t.Fatalf("removed resources (-want +got):\n%s", diff)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	eventually(t, "the removal to be acknowledged", func() bool {
		_, ok := s.Proxies()[0].Types[0].Acked["shop/cart/stable"]
		return !ok
	})
}

func TestProxiesSorted(t *testing.T) {
	s, addr := testServer(t, Options{})
	if err := s.Update(context.Background(), twoServices(t)); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"b", "a", "c", "a"} {
		c := newSotw(t, addr, node)
		c.request(resource.ListenerType, []string{"cart.shop"}, nil, "")
		c.recv()
	}
	var got []string
	eventually(t, "four proxies", func() bool { return len(s.Proxies()) == 4 })
	for _, p := range s.Proxies() {
		got = append(got, p.NodeID)
	}
	if diff := cmp.Diff([]string{"a", "a", "b", "c"}, got); diff != "" {
		t.Fatalf("Proxies() order (-want +got):\n%s", diff)
	}
	if a, p, n := s.Synced(resource.ListenerType, "cart.shop", mustVersion(t, twoServices(t)[resource.ListenerType]["cart.shop"])); a != 0 || p != 3 || n != 0 {
		t.Fatalf("Synced before any ACK = %d, %d, %d; want 3 distinct proxies pending", a, p, n)
	}
}
