package server

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/sluice-dev/sluice/internal/text"
)

// TestNackDetailsAreBounded has many proxies NACK at once with a megabyte of
// detail each (multi-byte runes, so a cut in the wrong place would leave
// invalid UTF-8): every detail kept is at most text.MaxMessage bytes of valid
// UTF-8, so nothing downstream (Rollout status, Events, logs) can be made to
// grow by a client.
func TestNackDetailsAreBounded(t *testing.T) {
	s, addr := testServer(t, Options{})
	ctx := context.Background()
	if err := s.Update(ctx, twoServices(t)); err != nil {
		t.Fatal(err)
	}
	const proxies = 20
	huge := strings.Repeat("é", 1<<19) // 1 MiB
	for i := range proxies {
		c := newSotw(t, addr, "nacker-"+string(rune('a'+i)))
		c.request(resource.RouteType, []string{"checkout.shop"}, nil, "")
		first := c.recv()
		req := &discovery.DiscoveryRequest{
			TypeUrl: resource.RouteType, ResourceNames: []string{"checkout.shop"},
			ResponseNonce: first.GetNonce(),
			ErrorDetail:   &statuspb.Status{Code: 3, Message: huge},
		}
		if err := c.stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every proxy's NACK recorded", func() bool {
		n := 0
		for _, p := range s.Proxies() {
			for _, ts := range p.Types {
				if ts.LastNack != nil {
					n++
				}
			}
		}
		return n == proxies
	})
	for _, p := range s.Proxies() {
		for _, ts := range p.Types {
			if m := ts.LastNack.Message; len(m) > text.MaxMessage || !utf8.ValidString(m) || !strings.HasPrefix(m, "éé") {
				t.Fatalf("proxy %s: kept NACK detail of %d bytes (valid UTF-8 %v), want at most %d valid bytes of the detail",
					p.NodeID, len(m), utf8.ValidString(m), text.MaxMessage)
			}
		}
	}
}
