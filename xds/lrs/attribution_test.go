package lrs

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
)

func TestAttributeCluster(t *testing.T) {
	cases := map[string]struct {
		cluster, subZone string
		want             Key
		ok               bool
	}{
		"canary revision":             {"shop/checkout/9090/canary", "canary/r2", Key{"shop", "checkout", "canary", "r2"}, true},
		"stable revision":             {"shop/checkout/9090/stable", "stable/r1", Key{"shop", "checkout", "stable", "r1"}, true},
		"sticky locality names track": {"shop/checkout/9090/sticky", "canary/r3", Key{"shop", "checkout", "canary", "r3"}, true},
		"no revision":                 {"shop/checkout/9090/canary", "canary", Key{"shop", "checkout", "canary", ""}, true},
		// A sub-zone Sluice did not write keeps the cluster's track but no
		// revision, so it never counts for a canary revision.
		"foreign sub-zone":     {"shop/checkout/9090/canary", "zone-a", Key{"shop", "checkout", "canary", ""}, true},
		"sticky without track": {"shop/checkout/9090/sticky", "", Key{}, false},
		"not ours":             {"outbound|9090||checkout", "canary/r2", Key{}, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, ok := AttributeCluster(tc.cluster, tc.subZone)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("AttributeCluster(%q, %q) = %v, %v; want %v, %v", tc.cluster, tc.subZone, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestForwardKeepsRevisions checks that forwarding between replicas keeps
// each revision's counts apart, so the leader never mixes a rolled-back
// revision's requests into the next one's.
func TestForwardKeepsRevisions(t *testing.T) {
	leader, replica := NewAggregator(), NewAggregator()
	conn := servePeer(t, func(g *grpc.Server) { RegisterForwarding(g, leader) })
	bad := Key{"shop", "checkout", "canary", "r2"}
	fix := Key{"shop", "checkout", "canary", "r3"}
	replica.add(1, anyone, bad, Totals{Requests: 10, Errors: 5})
	replica.add(1, anyone, fix, Totals{Requests: 7})
	f := &Forwarder{Aggregator: replica, Conn: conn, Source: "replica-b"}
	if err := f.Forward(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := map[Key]Totals{bad: {Requests: 10, Errors: 5}, fix: {Requests: 7}}
	if diff := cmp.Diff(want, leader.Totals()); diff != "" {
		t.Fatalf("leader totals (-want +got):\n%s", diff)
	}
}
