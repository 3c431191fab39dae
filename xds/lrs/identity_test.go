package lrs

import (
	"context"
	"errors"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluice-dev/sluice/xds/auth"
)

// Identities the stand-in authentication hands out, by the test-only header
// a client sends (the real interceptor proves them from a token or a
// certificate; this one believes the header, which is what the tests need
// to play several parties through one server).
var identities = map[string]auth.Identity{
	"frontend": {Method: auth.MethodToken, Namespace: "shop", Name: "frontend"},
	"batch":    {Method: auth.MethodToken, Namespace: "shop", Name: "batch"},
	"legacy":   {Method: auth.MethodLegacy, Namespace: "shop"},
}

const identityHeader = "x-test-identity"

// withIdentity stands in for the authentication interceptor: it puts the
// identity a client names into its stream's context.
func withIdentity(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	if v := md.Get(identityHeader); len(v) == 1 {
		if id, ok := identities[v[0]]; ok {
			return handler(srv, identityStream{ServerStream: ss, ctx: auth.NewContext(ss.Context(), id)})
		}
	}
	return handler(srv, ss)
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s identityStream) Context() context.Context { return s.ctx }

// report opens an LRS stream as who ("" for no identity), sends reports and
// returns the error that ended the stream, if it ended.
func report(t *testing.T, conn *grpc.ClientConn, who string, reports ...*lrsv3.LoadStatsRequest) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if who != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, identityHeader, who)
	}
	stream, err := lrsv3.NewLoadReportingServiceClient(conn).StreamLoadStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&lrsv3.LoadStatsRequest{Node: &corev3.Node{Id: who + "-node"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		return err
	}
	for _, r := range reports {
		if err := stream.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	return nil
}

// load is one report of one cluster locality.
func load(cluster, subZone string, ok, failed uint64) *lrsv3.LoadStatsRequest {
	return &lrsv3.LoadStatsRequest{ClusterStats: []*endpointv3.ClusterStats{
		{ClusterName: cluster, UpstreamLocalityStats: []*endpointv3.UpstreamLocalityStats{locality(subZone, ok, failed, 0)}},
	}}
}

const (
	canaryCluster = "shop/checkout/9090/canary"
	stableCluster = "shop/checkout/9090/stable"
)

// identityServer serves LRS behind the stand-in authentication. Only
// frontend acknowledged the canary cluster; frontend and legacy the stable
// one; batch acknowledged both. Namespace shop opted in to the legacy
// listener.
func identityServer(t *testing.T) (*Server, *grpc.ClientConn, *prometheus.Registry) {
	t.Helper()
	acked := map[string]map[string]bool{
		"token:shop/frontend": {canaryCluster: true, stableCluster: true},
		"token:shop/batch":    {canaryCluster: true, stableCluster: true},
		"legacy:shop":         {canaryCluster: true, stableCluster: true},
	}
	reg := prometheus.NewRegistry()
	s, err := NewServer(Options{
		Attribute:       AttributeCluster,
		Registerer:      reg,
		Logger:          testr.New(t),
		RequireIdentity: true,
		Acknowledged:    func(id auth.Identity, cluster string) bool { return acked[id.String()][cluster] },
		LegacyAllowed: func(_ context.Context, namespace string) error {
			if namespace != "shop" {
				return errors.New("not labelled sluice.dev/legacy-xds=enabled")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, serveWith(t, func(g *grpc.Server) { s.Register(g) }, grpc.StreamInterceptor(withIdentity)), reg
}

// TestStreamWithoutIdentityRefused plays a forger that opens an LRS stream
// with no credentials: it is refused, and its report counts nowhere.
func TestStreamWithoutIdentityRefused(t *testing.T) {
	s, conn, _ := identityServer(t)
	err := report(t, conn, "", load(canaryCluster, "canary/r2", 0, 1000))
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("stream without identity: error = %v, want Unauthenticated", err)
	}
	if got := s.Aggregator().Totals(); len(got) != 0 {
		t.Fatalf("a refused stream's load counted: %v", got)
	}
}

// TestReportsCountPerIdentity sends, through real streams of three
// identities, reports for clusters each did and did not acknowledge and
// for namespaces the legacy listener may and may not report on. Only
// acknowledged load counts, each under its origin; the rest is counted as
// rejected by reason.
func TestReportsCountPerIdentity(t *testing.T) {
	s, conn, _ := identityServer(t)
	s.acknowledged = func(id auth.Identity, cluster string) bool {
		return cluster == stableCluster || id.Name == "frontend" || id.Method == auth.MethodLegacy
	}
	for _, r := range []struct {
		who     string
		reports []*lrsv3.LoadStatsRequest
	}{
		{"frontend", []*lrsv3.LoadStatsRequest{load(canaryCluster, "canary/r2", 90, 10), load(stableCluster, "stable/r1", 100, 0)}},
		// batch never acknowledged the canary: its canary load is forged.
		{"batch", []*lrsv3.LoadStatsRequest{load(canaryCluster, "canary/r2", 0, 500), load(stableCluster, "stable/r1", 50, 0)}},
		// legacy reports on shop (opted in) and on bank (not).
		{"legacy", []*lrsv3.LoadStatsRequest{load(canaryCluster, "canary/r2", 0, 7), load("bank/ledger/9090/canary", "canary/r9", 1, 0)}},
	} {
		if err := report(t, conn, r.who, r.reports...); err != nil {
			t.Fatalf("%s: %v", r.who, err)
		}
	}
	canaryR2 := Key{Namespace: "shop", Service: "checkout", Track: "canary", Revision: "r2"}
	stableR1 := Key{Namespace: "shop", Service: "checkout", Track: "stable", Revision: "r1"}
	want := map[Key]ByOrigin{
		canaryR2: {
			{Class: ClassAuthenticated, Identity: "token:shop/frontend"}: {Requests: 100, Errors: 10, Issued: 100},
			{Class: ClassLegacy, Identity: "legacy:shop"}:                {Requests: 7, Errors: 7, Issued: 7},
		},
		stableR1: {
			{Class: ClassAuthenticated, Identity: "token:shop/frontend"}: {Requests: 100, Issued: 100},
			{Class: ClassAuthenticated, Identity: "token:shop/batch"}:    {Requests: 50, Issued: 50},
		},
	}
	eventually(t, "every counted report", func() bool { return cmp.Equal(want, s.Aggregator().Origins()) })
	if diff := cmp.Diff(want, s.Aggregator().Origins()); diff != "" {
		t.Fatalf("totals per origin (-want +got):\n%s", diff)
	}
	eventually(t, "rejections counted", func() bool {
		return testutil.ToFloat64(s.metrics.rejected.WithLabelValues(RejectUnacknowledged)) == 1 &&
			testutil.ToFloat64(s.metrics.rejected.WithLabelValues(RejectLegacyNotAllowed)) == 1
	})
}

// TestOverflowingCountsDropped sends counts meant to overflow the sums from
// an authenticated, acknowledging identity: they are dropped and counted as
// rejected, and the next honest report still counts.
func TestOverflowingCountsDropped(t *testing.T) {
	s, conn, _ := identityServer(t)
	err := report(t, conn, "frontend",
		load(canaryCluster, "canary/r2", MaxRequestsPerReport+1, 0),
		load(canaryCluster, "canary/r2", 0, MaxRequestsPerReport+1),
		load(canaryCluster, "canary/r2", 9, 1))
	if err != nil {
		t.Fatal(err)
	}
	k := Key{Namespace: "shop", Service: "checkout", Track: "canary", Revision: "r2"}
	eventually(t, "the honest report", func() bool { return s.Aggregator().Totals()[k].Requests == 10 })
	if got := s.Aggregator().Totals()[k]; got != (Totals{Requests: 10, Errors: 1, Issued: 10}) {
		t.Fatalf("totals = %+v, want only the honest report", got)
	}
	if n := testutil.ToFloat64(s.metrics.rejected.WithLabelValues(RejectOverflow)); n != 2 {
		t.Fatalf("rejected as overflow = %v, want 2", n)
	}
}

// TestOriginsPerKeyBounded checks that identities beyond MaxOriginsPerKey
// fold into their class's "other" origin and that legacy load never folds
// into authenticated load.
func TestOriginsPerKeyBounded(t *testing.T) {
	a := NewAggregator()
	for i := range MaxOriginsPerKey + 10 {
		a.add(int64(i), Origin{Class: ClassAuthenticated, Identity: "token:ns/sa" + string(rune('A'+i))}, canary, Totals{Requests: 1})
	}
	a.add(1000, Origin{Class: ClassLegacy, Identity: "legacy:shop"}, canary, Totals{Requests: 3})
	got := a.Origins()[canary]
	if len(got) != MaxOriginsPerKey+2 {
		t.Fatalf("%d origins kept, want %d named plus one folded per class", len(got), MaxOriginsPerKey)
	}
	if other := got[Origin{Class: ClassAuthenticated, Identity: OtherIdentities}]; other.Requests != 10 {
		t.Fatalf("folded authenticated load = %+v, want 10 requests", other)
	}
	if other := got[Origin{Class: ClassLegacy, Identity: OtherIdentities}]; other.Requests != 3 {
		t.Fatalf("folded legacy load = %+v, want 3 requests, kept apart from authenticated load", other)
	}
}
