package interop

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/auth"
	"github.com/sluice-dev/sluice/xds/lrs"
	"github.com/sluice-dev/sluice/xds/server"
	"github.com/sluice-dev/sluice/xds/translate"
)

const (
	namespace = "shop"
	service   = "checkout"
	port      = 9090
	target    = "xds:///" + service + "." + namespace
	// confidence of every split check. A run makes a few dozen of them
	// (per client, per weight), so each is held to 99.999% for the run as a
	// whole to pass a correct split 99.9% of the time.
	confidence = 0.99999
)

// backend answers UnaryCall with its track as hostname; while failRate > 0
// it fails that share of calls with DATA_LOSS, the injected failure.
type backend struct {
	testgrpc.UnimplementedTestServiceServer
	track    router.Track
	port     uint32
	failRate atomic.Uint64 // per million
	mu       sync.Mutex
	rng      *rand.Rand
}

func (b *backend) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if r := b.failRate.Load(); r > 0 {
		b.mu.Lock()
		fail := b.rng.Uint64N(1_000_000) < r
		b.mu.Unlock()
		if fail {
			return nil, status.Error(codes.DataLoss, "injected failure")
		}
	}
	return &testgrpc.SimpleResponse{Hostname: string(b.track)}, nil
}

// harness is a real xDS server with Sluice's client forms, two backends and
// the service's state.
type harness struct {
	t        *testing.T
	srv      *server.Server
	lrs      *lrs.Server
	addr     string
	backends map[router.Track]*backend
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessAck(t, 5*time.Second)
}

// newHarnessAck is newHarness with the server's ack timeout.
func newHarnessAck(t *testing.T, ackTimeout time.Duration) *harness {
	t.Helper()
	h := &harness{t: t, backends: map[router.Track]*backend{}}
	// Default options: the forms and the choice by user agent production uses.
	var err error
	// As the controller wires them: every stream has an identity (here the
	// legacy listener's, for the service's namespace, which opted in), and
	// load counts only for clusters the reporter acknowledged.
	h.lrs, err = lrs.NewServer(lrs.Options{Interval: 200 * time.Millisecond, Attribute: attribute, Logger: testr.New(t),
		RequireIdentity: true,
		LegacyAllowed: func(_ context.Context, ns string) error {
			if ns != namespace {
				return fmt.Errorf("namespace %s did not opt in to the legacy listener", ns)
			}
			return nil
		},
		Acknowledged: func(id auth.Identity, cluster string) bool { return h.srv.Acknowledged(id, cluster) },
	})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = server.New(server.Options{Logger: testr.NewWithOptions(t, testr.Options{Verbosity: 0}), Registerer: prometheus.NewRegistry(), AckTimeout: ackTimeout, LoadReporting: h.lrs, RequireIdentity: true})
	h.addr = serveLegacy(t, h.srv.Register)
	for i, tr := range []router.Track{router.TrackStable, router.TrackCanary} {
		b := &backend{track: tr, rng: rand.New(rand.NewPCG(uint64(i+1), 7))}
		addr := serve(t, func(g grpc.ServiceRegistrar) { testgrpc.RegisterTestServiceServer(g, b) })
		_, p, _ := net.SplitHostPort(addr)
		fmt.Sscan(p, &b.port) //nolint:errcheck // a port from net.Listen
		h.backends[tr] = b
	}
	return h
}

// attribute maps a reported cluster and locality to the track that served
// the load: the cluster's track, or for the sticky cluster the locality's
// sub_zone (which starts with the track).
func attribute(cluster, subZone string) (lrs.Key, bool) {
	id, err := router.ParseClusterName(cluster)
	if err != nil {
		return lrs.Key{}, false
	}
	track := string(id.Track)
	if id.Track == router.TrackSticky {
		track, _, _ = strings.Cut(subZone, "/")
	}
	return lrs.Key{Namespace: id.Namespace, Service: id.Service, Track: track}, true
}

// serveLegacy serves the xDS server as Sluice's plaintext legacy listener
// does, for namespace shop only: these clients predate call credentials
// (or their versions here are tested without), so they name their
// namespace in node metadata.
func serveLegacy(t *testing.T, register func(grpc.ServiceRegistrar)) string {
	t.Helper()
	guard, err := auth.NewGuard(auth.GuardOptions{Legacy: true, Logger: testr.New(t), LegacyAllowed: func(_ context.Context, ns string) error {
		if ns != namespace {
			return fmt.Errorf("only %s is opted in", namespace)
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, register, guard.ServerOptions()...)
}

func serve(t *testing.T, register func(grpc.ServiceRegistrar), opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(opts...)
	register(g)
	go g.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// published lists the names of the resources of a type the proxies carry
// or were sent.
func (h *harness) published(typ string) []string {
	var out []string
	for _, p := range h.srv.Proxies() {
		for _, ts := range p.Types {
			if ts.TypeURL == typ {
				out = append(out, ts.Subscribed...)
				for name := range ts.Acked {
					out = append(out, name)
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// publish builds, translates and publishes the service with a strategy and
// returns the default content version of its proxyless route.
func (h *harness) publish(st router.Strategy) string {
	h.t.Helper()
	var eps []router.Endpoint
	for _, tr := range []router.Track{router.TrackStable, router.TrackCanary} {
		eps = append(eps, router.Endpoint{Pod: service + "-" + string(tr), IP: "127.0.0.1", Ports: map[string]uint32{"grpc": h.backends[tr].port}, Ready: true, Track: tr})
	}
	plan, err := router.Build(router.State{Services: []router.Service{{
		Namespace: namespace, Name: service,
		Ports:     []router.Port{{Name: "grpc", Number: port, Protocol: router.ProtocolGRPC}},
		Endpoints: eps, Strategy: st,
	}}})
	if err != nil {
		h.t.Fatalf("build: %v", err)
	}
	res, err := translate.Translate(plan, translate.Options{})
	if err != nil {
		h.t.Fatalf("translate: %v", err)
	}
	desired := server.Resources{}
	for _, typ := range server.Types {
		desired[typ] = res.ByType(typ)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.srv.Publish(ctx, desired, server.VariantsOf(res), server.GrantsOf(res)); err != nil {
		h.t.Fatalf("publish: %v", err)
	}
	v, ok := h.srv.Version(resource.RouteType, routeName)
	if !ok {
		h.t.Fatal("route not published")
	}
	return v
}

var routeName = translate.GRPCListenerName(namespace, service, port)

// applied waits until every proxy carries the published route content (in
// its own form) and every listener, cluster and endpoint assignment it
// subscribed to, and fails on a NACK.
func (h *harness) applied(version string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fail := func(what string, acked, nacked []string, err error) {
		for _, p := range h.srv.Proxies() {
			for _, ts := range p.Types {
				if ts.LastNack != nil {
					h.t.Logf("%s (%s %s) NACK: %s", p.NodeID, p.UserAgentName, p.UserAgentVersion, ts.LastNack.Message)
				}
			}
		}
		h.t.Fatalf("%s: acked %v, nacked %v, err %v", what, acked, nacked, err)
	}
	acked, nacked, err := h.srv.WaitAcked(ctx, resource.RouteType, routeName, version)
	if err != nil || len(nacked) > 0 || len(acked) == 0 {
		fail("route "+shortV(version), acked, nacked, err)
	}
	for _, typ := range []string{resource.ListenerType, resource.ClusterType, resource.EndpointType} {
		for _, name := range h.published(typ) {
			v, _ := h.srv.Version(typ, name)
			if acked, nacked, err := h.srv.WaitAcked(ctx, typ, name, v); err != nil || len(nacked) > 0 {
				fail(typ+" "+name, acked, nacked, err)
			}
		}
	}
}

func shortV(v string) string { return v[:min(12, len(v))] }

// batch runs n RPCs and fails on any error other than an injected one.
func batch(t *testing.T, c client, n int, md map[string]string) result {
	t.Helper()
	if err := c.Send(n, md); err != nil {
		t.Fatal(err)
	}
	return recvClean(t, c)
}

func recvClean(t *testing.T, c client) result {
	t.Helper()
	r, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	for code, n := range r.Errors {
		if !injected(code) {
			t.Fatalf("%s: %d RPCs failed with %s (%v)", c.Name(), n, code, r.Messages)
		}
	}
	return r
}

// injected reports whether a status code name (in any client's spelling)
// is the backends' injected failure.
func injected(code string) bool {
	return strings.ReplaceAll(strings.ToUpper(code), "_", "") == "DATALOSS"
}

func canaryShare(t *testing.T, name string, r result, n int, p float64) {
	t.Helper()
	lo, hi := binomialInterval(n, p, confidence)
	got := r.Tracks[string(router.TrackCanary)]
	t.Logf("%s: %d of %d RPCs on the canary (%.2f%% step; %.1f%% interval [%d, %d])", name, got, n, 100*p, 100*confidence, lo, hi)
	if r.total() != n || got < lo || got > hi {
		t.Errorf("%s: %d of %d RPCs on the canary (answered %d), want within [%d, %d]", name, got, n, r.total(), lo, hi)
	}
}

// proxy returns the status of the one connected proxy.
func (h *harness) proxy() server.ProxyStatus {
	h.t.Helper()
	ps := h.srv.Proxies()
	if len(ps) != 1 {
		h.t.Fatalf("%d proxies connected, want 1", len(ps))
	}
	return ps[0]
}

// scenario drives one client through two rollouts, each with a client
// process started while the rollout is under way (the case that used to
// leave old clients without any route):
//   - a canary: a 0.5% step with a beta cohort, a 25% step published under
//     traffic, then a bad canary at 50% rolled back under traffic;
//   - an A/B experiment: a sticky split by header raised from 30% to 60%,
//     then a sticky split by cookie, which proxyless clients cannot hash
//     (they get stable and the proxy status says so).
//
// A client of a form without ring hash must get stable for every sticky
// user and see the limit; every other client must keep its users sticky.
func scenario(t *testing.T, start starter, wantForm translate.Form) {
	t.Run("canary", func(t *testing.T) { canaryRollout(t, start, wantForm) })
	t.Run("ab", func(t *testing.T) { abRollout(t, start, wantForm) })
}

// connect starts a client and waits for its first answered RPC and its
// ACK of the published route; it checks the form the server chose.
func connect(t *testing.T, h *harness, start starter, v string, wantForm translate.Form, md map[string]string) client {
	t.Helper()
	c := start(t, bootstrap(bootstrapConfig{ServerURI: h.addr, NodeID: "interop-" + strings.ReplaceAll(t.Name(), "/", "-")}), target)
	t.Logf("client: %s", c.Name())
	// First RPCs: the client has no config yet, so poll until one answers.
	deadline := time.Now().Add(45 * time.Second)
	for {
		if err := c.Send(1, md); err != nil {
			t.Fatal(err)
		}
		r, err := c.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.total() == 1 && len(r.Errors) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no RPC answered within 45s: %v", c.Name(), r.Messages)
		}
	}
	h.applied(v)
	p := h.proxy()
	t.Logf("xDS node: user agent %q %q; form %q (%s)", p.UserAgentName, p.UserAgentVersion, p.Form, p.FormReason)
	if want := formKey(wantForm); p.Form != want {
		t.Errorf("form %q, want %q", p.Form, want)
	}
	return c
}

func formKey(f translate.Form) string {
	if f == translate.FormCurrent {
		return ""
	}
	return string(f)
}

func canaryRollout(t *testing.T, start starter, wantForm translate.Form) {
	h := newHarness(t)
	cohort := []router.Cohort{{Source: router.SourceHeader, Name: "x-cohort", Match: router.MatchExact, Value: "beta"}}
	v := h.publish(router.Strategy{CanaryWeight: 50, Cohorts: cohort})
	c := connect(t, h, start, v, wantForm, nil)

	const n = 2000
	canaryShare(t, "0.5% step", batch(t, c, n, nil), n, 0.005)
	if r := batch(t, c, 200, map[string]string{"x-cohort": "beta"}); r.Tracks[string(router.TrackCanary)] != 200 {
		t.Errorf("beta cohort: %v, want all 200 on the canary", r.Tracks)
	}
	if r := batch(t, c, 200, map[string]string{"x-cohort": "alpha"}); r.Tracks[string(router.TrackCanary)] > 10 {
		t.Errorf("non-cohort at 0.5%%: %v", r.Tracks)
	}

	// 25% step, published while RPCs are in flight.
	if err := c.Send(500, nil); err != nil {
		t.Fatal(err)
	}
	v = h.publish(router.Strategy{CanaryWeight: 2500, Cohorts: cohort})
	recvClean(t, c)
	h.applied(v)
	batch(t, c, 20, nil)
	canaryShare(t, "25% step", batch(t, c, n, nil), n, 0.25)

	// A bad canary at 50%, then rolled back while RPCs are in flight.
	h.backends[router.TrackCanary].failRate.Store(300_000)
	h.applied(h.publish(router.Strategy{CanaryWeight: 5000}))
	r := batch(t, c, 1000, nil)
	bad := 0
	for code, k := range r.Errors {
		if injected(code) {
			bad += k
		}
	}
	t.Logf("bad canary at 50%%: %d stable, %d canary, %d injected failures", r.Tracks[string(router.TrackStable)], r.Tracks[string(router.TrackCanary)], bad)
	if bad == 0 {
		t.Error("the bad canary's failures never reached the client")
	}
	// The verdict comes from the client's own load reports: wait until they
	// count every failure the client saw, then judge the canary on them.
	canaryKey := lrs.Key{Namespace: namespace, Service: service, Track: string(router.TrackCanary)}
	var reported lrs.Totals
	deadline := time.Now().Add(30 * time.Second)
	for reported = h.lrs.Aggregator().Totals()[canaryKey]; reported.Errors < uint64(bad); reported = h.lrs.Aggregator().Totals()[canaryKey] {
		if time.Now().After(deadline) {
			t.Fatalf("load reports count %d canary errors of %d requests, the client saw %d injected failures", reported.Errors, reported.Requests, bad)
		}
		time.Sleep(50 * time.Millisecond) // the reporting interval paces this poll
	}
	t.Logf("load reports: canary %d requests, %d errors (%.1f%%); client saw %d canary answers and %d injected failures",
		reported.Requests, reported.Errors, 100*reported.ErrorRate(), r.Tracks[string(router.TrackCanary)], bad)
	if reported.Errors != uint64(bad) {
		t.Errorf("load reports count %d canary errors, the client saw %d", reported.Errors, bad)
	}
	if reported.ErrorRate() < 0.05 {
		t.Fatalf("load reports show a %.1f%% canary error rate: no rollback verdict", 100*reported.ErrorRate())
	}
	if err := c.Send(500, nil); err != nil {
		t.Fatal(err)
	}
	v = h.publish(router.Strategy{})
	recvClean(t, c)
	h.applied(v)
	batch(t, c, 20, nil)
	if r := batch(t, c, 500, nil); r.Tracks[string(router.TrackStable)] != 500 {
		t.Errorf("after rollback: %v %v, want all 500 on stable", r.Tracks, r.Errors)
	}
}

func abRollout(t *testing.T, start starter, wantForm translate.Form) {
	h := newHarness(t)
	noRing := wantForm == translate.FormLegacyNoRing
	sticky := func(share router.Weight) router.Strategy {
		return router.Strategy{Sticky: &router.Sticky{Source: router.SourceHeader, Name: "x-user", Share: share}}
	}
	v := h.publish(sticky(3000))
	c := connect(t, h, start, v, wantForm, map[string]string{"x-user": "first"})
	// Sticky split by header: users keep their version; raising the share
	// moves users to the canary only. Clients without ring hash get stable.
	const users = 300
	assign := func() map[int]string {
		out := map[int]string{}
		for u := range users {
			r := batch(t, c, 1, map[string]string{"x-user": fmt.Sprint("user-", u)})
			for tr := range r.Tracks {
				out[u] = tr
			}
		}
		return out
	}
	onCanary := func(a map[int]string) int {
		k := 0
		for _, tr := range a {
			if tr == string(router.TrackCanary) {
				k++
			}
		}
		return k
	}
	before, again := assign(), assign()
	for u := range users {
		if before[u] != again[u] {
			t.Fatalf("sticky 30%%: user %d moved from %s to %s with no change", u, before[u], again[u])
		}
	}
	if noRing {
		if k := onCanary(before); k != 0 {
			t.Errorf("no ring hash: %d sticky users on the canary, want all on stable", k)
		}
		if p := h.proxy(); !slices.ContainsFunc(p.Limits, func(l string) bool { return strings.Contains(l, `sticky split by header "x-user"`) }) {
			t.Errorf("proxy status limits %q do not name the sticky split", p.Limits)
		}
		t.Logf("sticky split: not expressible for this client, all %d users on stable; status: %q", users, h.proxy().Limits)
		return
	}
	lo, hi := binomialInterval(users, 0.3, confidence)
	t.Logf("sticky 30%%: %d of %d users on the canary (interval [%d, %d])", onCanary(before), users, lo, hi)
	if k := onCanary(before); k < lo || k > hi {
		t.Errorf("sticky 30%%: %d of %d users on the canary, want within [%d, %d]", k, users, lo, hi)
	}
	h.applied(h.publish(sticky(6000)))
	// The new locality weights reach the ring a moment after the ACK: wait
	// for two equal assignments in a row with more users on the canary.
	var after map[int]string
	deadline := time.Now().Add(30 * time.Second)
	for {
		after = assign()
		if again := assign(); maps.Equal(after, again) && onCanary(after) > onCanary(before) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sticky 60%%: the assignment did not settle (%d users on the canary)", onCanary(after))
		}
	}
	var back []int
	for u := range users {
		if before[u] == string(router.TrackCanary) && after[u] != string(router.TrackCanary) {
			back = append(back, u)
		}
	}
	t.Logf("sticky 60%%: %d of %d users on the canary; %d moved back to stable", onCanary(after), users, len(back))
	if len(back) > 0 {
		t.Errorf("raising the sticky share moved users %v back to stable", back)
	}
	if lo, hi := binomialInterval(users, 0.6, confidence); onCanary(after) < lo || onCanary(after) > hi {
		t.Errorf("sticky 60%%: %d of %d users on the canary, want within [%d, %d]", onCanary(after), users, lo, hi)
	}

	// Sticky split by cookie: not expressible for proxyless clients; they
	// send those users to stable, and the proxy status says so.
	h.applied(h.publish(router.Strategy{Sticky: &router.Sticky{Source: router.SourceCookie, Name: "session", Share: 5000}}))
	if r := batch(t, c, 100, map[string]string{"cookie": "session=abc"}); r.Tracks[string(router.TrackStable)] != 100 {
		t.Errorf("sticky by cookie: %v, want all on stable", r.Tracks)
	}
	if p := h.proxy(); !slices.ContainsFunc(p.Limits, func(l string) bool { return strings.Contains(l, `sticky split by cookie "session"`) }) {
		t.Errorf("proxy status limits %q do not name the cookie split", p.Limits)
	}
	// What the Rollout's status.proxies.limits counts: this one client.
	counted := 0
	for l, n := range h.srv.RouteLimits([]string{routeName}) {
		if strings.Contains(l, `sticky split by cookie "session"`) {
			counted += n
		}
	}
	if counted != 1 {
		t.Errorf("RouteLimits counts %d clients that cannot split by cookie, want this one", counted)
	}
}

func cacheDir(t *testing.T) string {
	d, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(d, "sluice")
}

func TestPythonGRPCIO(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a python3-grpcio client")
	}
	recordClient(t, pythonClient(t))
	scenario(t, startPython(t), translate.FormLegacyNoRing)
}

func TestNodeGRPCJSXDS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a grpc-js-xds client")
	}
	recordClient(t, nodeClient(t))
	scenario(t, startNode(t), translate.FormLegacyNoRing)
}

func TestOlderGRPCGo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a client on an older grpc-go")
	}
	recordClient(t, oldGRPCClient(t))
	scenario(t, startOldGRPC(t), translate.FormLegacyNoRing)
}

func TestCurrentGRPCGo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a grpc-go xDS client")
	}
	recordClient(t, currentGRPCClient())
	scenario(t, startCurrentGo, translate.FormCurrent)
}

// TestPythonIdleDoesNotHoldRemoval: an idle gRPC C-core client reads its
// xDS stream only while it makes calls, so it answers a route change late
// (seconds later, or at its next RPC). Removing the sticky cluster at the
// end of a sticky split, which its routes (the form without ring hash)
// never named, must not wait for it: with an ack timeout of an hour, the
// publication returns while the client has not acknowledged the change.
func TestPythonIdleDoesNotHoldRemoval(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a python3-grpcio client")
	}
	recordClient(t, pythonClient(t))
	h := newHarnessAck(t, time.Hour)
	v := h.publish(router.Strategy{CanaryWeight: 2000, Sticky: &router.Sticky{Source: router.SourceHeader, Name: "x-user", Share: 3000}})
	c := connect(t, h, startPython(t), v, translate.FormLegacyNoRing, nil)
	sticky := router.ClusterName(namespace, service, port, router.TrackSticky)
	if _, ok := h.srv.Version(resource.ClusterType, sticky); !ok {
		t.Fatal("the sticky cluster is not published")
	}
	v = h.publish(router.Strategy{})
	if acked, pending, nacked := h.srv.Synced(resource.RouteType, routeName, v); pending != 1 {
		t.Errorf("when the publication returned, the idle client had the route change: acked %d, pending %d, nacked %d; want it pending (the removal waited for it)", acked, pending, nacked)
	}
	if _, ok := h.srv.Version(resource.ClusterType, sticky); ok {
		t.Fatal("the sticky cluster is still published")
	}
	// An idle C-core client reads its xDS stream when it makes calls, so
	// its first calls may still follow the routes it had: it must come to
	// the new routes without a failed call (batch fails on any).
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := batch(t, c, 20, nil)
		if r.Tracks[string(router.TrackStable)] == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the sticky split ended: %v %v, want all 20 on stable", r.Tracks, r.Errors)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
