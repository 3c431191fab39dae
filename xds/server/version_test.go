package server

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"
)

// TestHistoryMatchesModel checks contentAt against a full record of every
// version, for all versions within the remembered depth.
func TestHistoryMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := newHistory()
		names := []string{"a", "b", "c"}
		model := []map[string]string{{}} // model[v] = contents at version v
		steps := rapid.IntRange(1, 80).Draw(t, "steps")
		for v := 1; v <= steps; v++ {
			cur := map[string]string{}
			for k, c := range model[v-1] {
				cur[k] = c
			}
			change := map[string]string{}
			for _, n := range names {
				switch rapid.IntRange(0, 3).Draw(t, "op") {
				case 0:
					change[n] = rapid.SampledFrom([]string{"x", "y", "z"}).Draw(t, "content")
				case 1:
					change[n] = ""
				}
			}
			for n, c := range change {
				if c == "" {
					delete(cur, n)
				} else {
					cur[n] = c
				}
			}
			h.record(resource.ClusterType, uint64(v), change)
			model = append(model, cur)
		}
		for v := max(0, steps-historyDepth+1); v <= steps; v++ {
			for _, n := range names {
				if got, want := h.contentAt(resource.ClusterType, n, uint64(v)), model[v][n]; got != want {
					t.Fatalf("contentAt(%s, %d) = %q, want %q", n, v, got, want)
				}
			}
		}
	})
}

func TestContentVersionMatchesDeltaVersion(t *testing.T) {
	c := edsCluster("shop/checkout/canary")
	b, err := cache.MarshalResource(c)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mustVersion(t, c), cache.HashResource(b); got != want {
		t.Fatalf("ContentVersion = %s, want go-control-plane's resource version %s", got, want)
	}
	d := edsCluster("shop/checkout/canary")
	d.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	if mustVersion(t, c) == mustVersion(t, d) {
		t.Fatal("different contents got the same version")
	}
}

func FuzzResourceName(f *testing.F) {
	for _, m := range []proto.Message{edsCluster("a/b/c"), endpoints("e", "canary", "127.0.0.1", 80), routes("r", map[string]uint32{"x": 1})} {
		b, err := cache.MarshalResource(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		name := resourceName(b)
		var c clusterv3.Cluster
		if err := proto.Unmarshal(b, &c); err == nil && name != c.GetName() {
			t.Fatalf("resourceName = %q, but the message decodes with name %q", name, c.GetName())
		}
	})
}
