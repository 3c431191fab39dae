package server

import (
	"bytes"
	"context"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/auth"
	"github.com/sluice-dev/sluice/xds/translate"
)

// Test metadata standing in for authentication: a stream that sends them is
// given the identity token:<namespace>/<name>, as the real interceptor
// gives the identity it verified.
const (
	mdNamespace = "x-test-namespace"
	mdName      = "x-test-name"
)

// testIdentity is the stand-in authentication interceptor.
func testIdentity(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	ns := md.Get(mdNamespace)
	if len(ns) == 0 {
		return handler(srv, ss)
	}
	id := auth.Identity{Method: auth.MethodToken, Namespace: ns[0]}
	if n := md.Get(mdName); len(n) > 0 {
		id.Name = n[0]
	}
	return handler(srv, identityStream{ServerStream: ss, ctx: auth.NewContext(ss.Context(), id)})
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s identityStream) Context() context.Context { return s.ctx }

// authzServer starts a Server behind the stand-in interceptor.
func authzServer(t testing.TB, opts Options) (*Server, string) {
	t.Helper()
	return testServer(t, opts, grpc.StreamInterceptor(testIdentity))
}

// asIdentity returns a context whose streams claim namespace/name.
func asIdentity(ctx context.Context, namespace, name string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, mdNamespace, namespace, mdName, name)
}

// newSotwAs opens a sotw stream as namespace/name ("" namespace: none).
func newSotwAs(t *testing.T, addr, node, namespace, name string) *sotwClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if namespace != "" {
		ctx = asIdentity(ctx, namespace, name)
	}
	st, err := adsClient(t, addr).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &sotwClient{t: t, node: testNode(node), stream: st, cancel: cancel}
}

// shopCohort is a cohort header value only shop and its consumers may see.
const shopCohort = "shop-secret-cohort"

// tenants is a plan of four namespaces: shop/checkout (a beta canary with
// the cohort value shopCohort) granted to frontend; team-a/checkout and
// team-b/checkout, the latter granted to every namespace; billing/ledger
// granted to nobody. consumers, when not nil, replaces shop/checkout's.
func tenants(t testing.TB, consumers *router.Consumers) translate.Resources {
	t.Helper()
	svc := func(ns, name string, ip string) router.Service {
		return router.Service{
			Namespace: ns, Name: name,
			Ports: []router.Port{{Name: "grpc", Number: 9090, Protocol: router.ProtocolGRPC}},
			Endpoints: []router.Endpoint{
				{Pod: name + "-1", IP: ip, Ports: map[string]uint32{"grpc": 19090}, Ready: true, Track: router.TrackStable},
				{Pod: name + "-canary-1", IP: ip, Ports: map[string]uint32{"grpc": 19091}, Ready: true, Track: router.TrackCanary},
			},
		}
	}
	shop := svc("shop", "checkout", "127.0.0.11")
	shop.Strategy = router.Strategy{CanaryWeight: 1000, Cohorts: []router.Cohort{{Source: router.SourceHeader, Name: "x-cohort", Match: router.MatchExact, Value: shopCohort}}}
	shop.Consumers = router.Consumers{Namespaces: []string{"frontend"}}
	if consumers != nil {
		shop.Consumers = *consumers
	}
	teamA := svc("team-a", "checkout", "127.0.0.12")
	teamB := svc("team-b", "checkout", "127.0.0.13")
	teamB.Consumers = router.Consumers{All: true}
	ledger := svc("billing", "ledger", "127.0.0.14")
	plan, err := router.Build(router.State{Services: []router.Service{shop, teamA, teamB, ledger}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(plan, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// publishTenants publishes res with its grants.
func publishTenants(t testing.TB, s *Server, res translate.Resources) {
	t.Helper()
	desired := Resources{}
	for _, typ := range Types {
		desired[typ] = res.ByType(typ)
	}
	if err := s.Publish(context.Background(), desired, VariantsOf(res), GrantsOf(res)); err != nil {
		t.Fatal(err)
	}
}

// visibleTo lists, per type, the names of res that namespace may see.
func visibleTo(res translate.Resources, namespace string) map[string][]string {
	out := map[string][]string{}
	for _, typ := range Types {
		for _, name := range res.Names(typ) {
			if a, _ := res.Access(typ, name); a.Allows(namespace) {
				out[typ] = append(out[typ], name)
			}
		}
	}
	return out
}

// wireBytes is the encoding of a response, as it crossed the wire.
func wireBytes(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deltaStream opens a delta stream as namespace/name.
func deltaStream(t *testing.T, addr, namespace, name string) grpc.BidiStreamingClient[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse] {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := adsClient(t, addr).DeltaAggregatedResources(asIdentity(ctx, namespace, name))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func containsBytes(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }

// waitWatching waits until a watch of namespace is open on lc: its
// stream's last ACK was processed, so a change of grants now reaches it
// only through the namespace's sentinel.
func waitWatching(t *testing.T, lc *cache.LinearCache, namespace string) {
	t.Helper()
	eventually(t, "a watch of "+namespace, func() bool { return lc.NumWatches(sentinel(namespace)) > 0 })
}
