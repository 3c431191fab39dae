package traffic

import (
	"context"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-dev/sluice/internal/text"
	"github.com/sluice-dev/sluice/xds/server"
)

// TestNacksNameEveryReplicasProxies runs two replicas: the leader's proxy
// accepts the weighted routes, the other replica's proxy rejects them with
// a detail of several kilobytes. The leader's confirmation and its list of
// rejections in force (what the Rollout's TrafficReady condition shows)
// both name the other replica's proxy and that replica, with the detail
// cut to 512 bytes.
func TestNacksNameEveryReplicasProxies(t *testing.T) {
	leader, other := startReplica(t, "leader", grpc.UnaryInterceptor(asPeer)), startReplica(t, "other", grpc.UnaryInterceptor(asPeer))
	conn, err := grpc.NewClient(other.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	peers := func(context.Context) ([]server.Peer, error) {
		return []server.Peer{{Addr: other.addr, Conn: conn}}, nil
	}
	srcL, srcO := newFakeSource(canaryObjects(0)), newFakeSource(canaryObjects(0))
	c := startController(t, leader.srv, srcL, Options{Logger: testr.New(t), Peers: peers, Replica: "leader"})
	startController(t, other.srv, srcO, Options{Logger: testr.New(t), Replica: "other"})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := startProxy(ctx, dialADS(t, leader.addr), "proxy-on-leader", resource.RouteType, []string{checkoutRoute}, ackAll); err != nil {
		t.Fatal(err)
	}
	long := "weighted clusters: not today " + strings.Repeat("é", 2000)
	if _, err := startProxy(ctx, dialADS(t, other.addr), "proxy-on-other", resource.RouteType, []string{checkoutRoute},
		func(resp *discovery.DiscoveryResponse) string {
			if nackWeighted(resp) != "" {
				return long
			}
			return ""
		}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for confirm(t, c, 0).Acked != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the two proxies never both carried weight 0")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := c.Nacks("shop", "checkout"); len(got) != 0 {
		t.Fatalf("rejections before any: %+v", got)
	}

	srcL.set(canaryObjects(2500), true)
	srcO.set(canaryObjects(2500), true)
	got := confirm(t, c, 2500)
	if got.Acked != 1 || got.Nacked != 1 || len(got.NackMessages) != 1 {
		t.Fatalf("confirmation %+v, want the leader's proxy acked and the other's rejecting, with its detail", got)
	}
	want := "proxy-on-other on other: " + text.Truncate(long, text.MaxMessage)
	if got.NackMessages[0] != want {
		t.Errorf("NACK detail %.120q…, want %.120q…", got.NackMessages[0], want)
	}

	var nacks []ProxyNack
	for time.Now().Before(deadline.Add(20 * time.Second)) {
		if nacks = c.Nacks("shop", "checkout"); len(nacks) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(nacks) != 1 || nacks[0].Node != "proxy-on-other" || nacks[0].Replica != "other" ||
		nacks[0].TypeURL != resource.RouteType || strings.Join(nacks[0].Resources, ",") != checkoutRoute {
		t.Fatalf("rejections in force %+v, want the other replica's proxy's route NACK", nacks)
	}
	if m := nacks[0].Message; len(m) > text.MaxMessage || !strings.HasPrefix(m, "weighted clusters: not today") {
		t.Errorf("rejection detail of %d bytes (%.60q…), want at most %d, its start kept", len(m), m, text.MaxMessage)
	}
}
