package server

import (
	"context"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// legacyByAgent puts nodes whose user agent is "old-proxy" in form "legacy".
func legacyByAgent(n *corev3.Node) (string, string) {
	if n.GetUserAgentName() == "old-proxy" {
		return "legacy", "old-proxy reads total_weight"
	}
	return "", "current"
}

// TestFormsServeVariants: a proxy of a form gets that form's route
// configuration, a default proxy the default one; an ACK of either counts
// for WaitAcked on the default content; the proxy status names the form and
// the limits of the routes it subscribed to.
func TestFormsServeVariants(t *testing.T) {
	s, addr := testServer(t, Options{Forms: []string{"legacy"}, FormOf: legacyByAgent})
	res := service(t, "checkout", map[string]uint32{"stable": 90, "canary": 10}, "127.0.0.1", 1)
	legacy := proto.Clone(res[resource.RouteType]["checkout"]).(*routev3.RouteConfiguration)
	legacy.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetWeightedClusters().TotalWeight = wrapperspb.UInt32(100) //nolint:staticcheck // what the legacy form sends
	variants := map[string]Variant{
		"legacy": {Routes: map[string]proto.Message{"checkout": legacy}, Limits: map[string][]string{"checkout": {"cookie stickiness: stable"}}},
		"":       {Limits: map[string][]string{"other": {"not mine"}}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.UpdateVariants(ctx, res, variants); err != nil {
		t.Fatal(err)
	}
	newer := newSotw(t, addr, "new")
	older := newSotw(t, addr, "old")
	older.node.UserAgentName = "old-proxy"
	got := map[string]*routev3.RouteConfiguration{}
	for name, c := range map[string]*sotwClient{"new": newer, "old": older} {
		c.request(resource.RouteType, []string{"checkout"}, nil, "")
		resp := c.recv()
		got[name] = decode(t, resp.GetResources(), func() *routev3.RouteConfiguration { return &routev3.RouteConfiguration{} })["checkout"]
		c.request(resource.RouteType, []string{"checkout"}, resp, "")
	}
	if !proto.Equal(got["new"], res[resource.RouteType]["checkout"]) {
		t.Errorf("default proxy got %v, want the default route", got["new"])
	}
	if !proto.Equal(got["old"], legacy) {
		t.Errorf("legacy proxy got %v, want the legacy variant", got["old"])
	}
	v := mustVersion(t, res[resource.RouteType]["checkout"])
	acked, nacked, err := s.WaitAcked(ctx, resource.RouteType, "checkout", v)
	if err != nil || len(nacked) > 0 || strings.Join(acked, ",") != "new,old" {
		t.Fatalf("WaitAcked = %v, %v, %v; want both proxies acked", acked, nacked, err)
	}
	if a, p, n := s.Synced(resource.RouteType, "checkout", v); a != 2 || p != 0 || n != 0 {
		t.Errorf("Synced = %d acked, %d pending, %d nacked; want 2, 0, 0", a, p, n)
	}
	for _, p := range s.Proxies() {
		for _, ts := range p.Types {
			if fv, ok := s.FormVersion(p.Form, resource.RouteType, "checkout"); ts.TypeURL == resource.RouteType && (!ok || ts.Acked["checkout"] != fv) {
				t.Errorf("%s carries %q, FormVersion says %q", p.NodeID, ts.Acked["checkout"], fv)
			}
		}
		switch p.NodeID {
		case "old":
			if p.Form != "legacy" || p.FormReason == "" || strings.Join(p.Limits, ";") != "cookie stickiness: stable" {
				t.Errorf("old proxy status: form %q (%q), limits %q", p.Form, p.FormReason, p.Limits)
			}
		case "new":
			if p.Form != "" || len(p.Limits) != 0 {
				t.Errorf("new proxy status: form %q, limits %q", p.Form, p.Limits)
			}
		}
	}
	// Only the old proxy is limited on checkout; nobody subscribed to
	// "other", whose default-form limit therefore counts no proxy.
	if got := s.RouteLimits([]string{"checkout", "other"}); len(got) != 1 || got["cookie stickiness: stable"] != 1 {
		t.Errorf("RouteLimits = %v, want the old proxy's one limit", got)
	}
	if got := s.RouteLimits([]string{"other"}); len(got) != 0 {
		t.Errorf("RouteLimits(other) = %v, want none", got)
	}
}

func TestFormsRejectBadVariants(t *testing.T) {
	s, _ := testServer(t, Options{Forms: []string{"legacy"}, FormOf: legacyByAgent})
	res := service(t, "checkout", map[string]uint32{"stable": 90, "canary": 10}, "127.0.0.1", 1)
	cases := map[string]map[string]Variant{
		"unknown form":        {"ancient": {}},
		"route not in set":    {"legacy": {Routes: map[string]proto.Message{"other": routes("other", map[string]uint32{"stable": 1})}}},
		"dangling cluster":    {"legacy": {Routes: map[string]proto.Message{"checkout": routes("checkout", map[string]uint32{"nowhere": 1})}}},
		"default with routes": {"": {Routes: map[string]proto.Message{"checkout": routes("checkout", map[string]uint32{"stable": 1})}}},
	}
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			if err := s.UpdateVariants(context.Background(), res, v); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	bad := New(Options{Forms: []string{"a.b"}})
	if err := bad.Update(context.Background(), res); err == nil || !strings.Contains(err.Error(), "a.b") {
		t.Errorf("form name with a dot: Update error %v", err)
	}
}

// TestFormsDelta: a delta stream of a form gets its form's route with that
// content's version, and its ACK counts for the default content.
func TestFormsDelta(t *testing.T) {
	s, addr := testServer(t, Options{Forms: []string{"legacy"}, FormOf: legacyByAgent})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := service(t, "checkout", map[string]uint32{"stable": 90, "canary": 10}, "127.0.0.1", 1)
	legacy := proto.Clone(res[resource.RouteType]["checkout"]).(*routev3.RouteConfiguration)
	legacy.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetWeightedClusters().TotalWeight = wrapperspb.UInt32(100) //nolint:staticcheck // what the legacy form sends
	if err := s.UpdateVariants(ctx, res, map[string]Variant{"legacy": {Routes: map[string]proto.Message{"checkout": legacy}}}); err != nil {
		t.Fatal(err)
	}
	stream, err := adsClient(t, addr).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := testNode("old-delta")
	node.UserAgentName = "old-proxy"
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.RouteType, ResourceNamesSubscribe: []string{"checkout"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetResources()) != 1 || resp.GetResources()[0].GetVersion() != mustVersion(t, legacy) {
		t.Fatalf("delta response %v, want the legacy route (version %s)", resp.GetResources(), mustVersion(t, legacy))
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	acked, nacked, err := s.WaitAcked(ctx, resource.RouteType, "checkout", mustVersion(t, res[resource.RouteType]["checkout"]))
	if err != nil || len(nacked) > 0 || strings.Join(acked, ",") != "old-delta" {
		t.Fatalf("WaitAcked = %v, %v, %v; want old-delta acked", acked, nacked, err)
	}
}
