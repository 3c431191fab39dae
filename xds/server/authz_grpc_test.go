package server

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/auth"
	"github.com/sluice-dev/sluice/xds/translate"
)

// listenAs serves s's ADS on a new loopback listener whose every stream is
// given id, standing in for authentication, and returns its address.
func listenAs(t *testing.T, s *Server, id auth.Identity) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	as := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return h(srv, identityStream{ServerStream: ss, ctx: auth.NewContext(ss.Context(), id)})
	}
	g := grpc.NewServer(grpc.WaitForHandlers(true), grpc.StreamInterceptor(as))
	s.Register(g)
	go g.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// TestRealClientsSeeOnlyTheirGrants runs grpc-go's own xDS client as
// proxies of two namespaces: frontend, granted shop/checkout, reaches it;
// team-a, not granted, cannot resolve it (the listener does not exist for
// it) but reaches its own checkout.
func TestRealClientsSeeOnlyTheirGrants(t *testing.T) {
	s := New(Options{Logger: testr.NewWithInterface(t, testr.Options{Verbosity: 1}), Registerer: prometheus.NewRegistry()})
	shopBackend, teamBackend := startBackend(t, "shop"), startBackend(t, "team-a")
	svc := func(ns string, b *backend) router.Service {
		return router.Service{Namespace: ns, Name: "checkout",
			Ports:     []router.Port{{Name: "grpc", Number: 9090, Protocol: router.ProtocolGRPC}},
			Endpoints: []router.Endpoint{{Pod: ns + "-1", IP: "127.0.0.1", Ports: map[string]uint32{"grpc": b.port}, Ready: true, Track: router.TrackStable}},
		}
	}
	shop := svc("shop", shopBackend)
	shop.Consumers = router.Consumers{Namespaces: []string{"frontend"}}
	plan, err := router.Build(router.State{Services: []router.Service{shop, svc("team-a", teamBackend)}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(plan, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	publishTenants(t, s, res)
	frontendAddr := listenAs(t, s, auth.Identity{Method: auth.MethodToken, Namespace: "frontend", Name: "web"})
	teamAddr := listenAs(t, s, auth.Identity{Method: auth.MethodToken, Namespace: "team-a", Name: "checkout"})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	call := func(c testgrpc.TestServiceClient, wait bool) (string, error) {
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		defer rcancel()
		resp, err := c.UnaryCall(rctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(wait))
		return resp.GetServerId(), err
	}
	if got, err := call(xdsClient(t, frontendAddr, "frontend-client", "checkout.shop"), true); err != nil || got != "shop" {
		t.Fatalf("frontend, granted, calling checkout.shop: served by %q, %v", got, err)
	}
	if got, err := call(xdsClient(t, teamAddr, "team-a-client", "checkout.team-a"), true); err != nil || got != "team-a" {
		t.Fatalf("team-a calling its own checkout: served by %q, %v", got, err)
	}
	got, err := call(xdsClient(t, teamAddr, "team-a-intruder", "checkout.shop"), false)
	if err == nil {
		t.Fatalf("team-a, not granted, reached checkout.shop (served by %q)", got)
	}
	// grpc-go words a resource the server never sent "has been removed"
	// once its does-not-exist timer (15s) fires.
	if msg := err.Error(); !strings.Contains(msg, `resource "checkout.shop"`) || !strings.Contains(msg, "has been removed") {
		t.Errorf("team-a calling checkout.shop failed with %v, want its listener not to exist", err)
	}
	if n := shopBackend.calls.Load(); n != 1 {
		t.Errorf("shop's backend served %d calls, want only frontend's one", n)
	}
}

// TestRealGuardScopesByBoundIdentity puts the real authentication guard of
// the legacy listener in front of the server: each stream's identity is
// bound at its first request from the namespace its node claims, and the
// stream sees that namespace's grants, nothing more.
func TestRealGuardScopesByBoundIdentity(t *testing.T) {
	g, err := auth.NewGuard(auth.GuardOptions{Legacy: true, LegacyAllowed: func(context.Context, string) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	s, addr := testServer(t, Options{RequireIdentity: true}, g.ServerOptions()...)
	res := tenants(t, nil)
	publishTenants(t, s, res)
	for _, ns := range []string{"frontend", "team-a"} {
		c := newSotw(t, addr, "legacy-"+ns)
		c.node.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{auth.NodeNamespaceKey: structpb.NewStringValue(ns)}}
		c.request(resource.ListenerType, nil, nil, "")
		if diff := cmp.Diff(visibleTo(res, ns)[resource.ListenerType], resourceNames(c.recv().GetResources())); diff != "" {
			t.Errorf("legacy stream claiming %s (-granted +got):\n%s", ns, diff)
		}
	}
	if p := s.Proxies(); len(p) != 2 || p[0].Identity != "legacy:frontend" || p[1].Identity != "legacy:team-a" {
		t.Errorf("proxies %+v, want the two legacy identities", p)
	}
}
