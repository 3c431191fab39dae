package server

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

const resumeSvc = "checkout.shop"

var resumeClusters = []string{"shop/checkout/canary", "shop/checkout/stable"}

// publishWithHistory publishes final to s after the given earlier states,
// so two servers reach the same content through different cache counters.
func publishWithHistory(t *testing.T, s *Server, final Resources, earlier ...Resources) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range append(earlier, final) {
		if err := s.Update(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
}

func weighted(t *testing.T, stable, canary uint32) Resources {
	return service(t, resumeSvc, map[string]uint32{"shop/checkout/stable": stable, "shop/checkout/canary": canary}, "127.0.0.1", 9)
}

// subscriptions are the requests of a proxy of resumeSvc, in ADS order.
var subscriptions = []struct {
	typeURL string
	names   []string
}{
	{resource.ListenerType, nil},
	{resource.RouteType, []string{resumeSvc}},
	{resource.ClusterType, nil},
	{resource.EndpointType, resumeClusters},
}

// syncAll subscribes c to every type, acknowledges each response, and
// returns the version_info of each type.
func syncAll(c *sotwClient) map[string]string {
	c.t.Helper()
	versions := map[string]string{}
	for _, sub := range subscriptions {
		c.request(sub.typeURL, sub.names, nil, "")
		resp := c.recv()
		if resp.GetTypeUrl() != sub.typeURL {
			c.t.Fatalf("got a %s response, want %s", resp.GetTypeUrl(), sub.typeURL)
		}
		c.request(sub.typeURL, sub.names, resp, "")
		versions[sub.typeURL] = resp.GetVersionInfo()
	}
	return versions
}

// resumeAll opens every subscription of c presenting versions, as a proxy
// does on a new stream, without a nonce.
func resumeAll(c *sotwClient, versions map[string]string) {
	c.t.Helper()
	for _, sub := range subscriptions {
		req := &discovery.DiscoveryRequest{Node: c.node, TypeUrl: sub.typeURL, ResourceNames: sub.names, VersionInfo: versions[sub.typeURL]}
		if err := c.stream.Send(req); err != nil {
			c.t.Fatal(err)
		}
	}
}

func pushes(s *Server) float64 {
	n := 0.0
	for _, t := range Types {
		n += testutil.ToFloat64(s.tracker.metrics.pushes.WithLabelValues(typeLabel(t)))
	}
	return n
}

// TestSotwVersionsAreContentVersions: two servers that publish the same
// content, one of them after other states (as a replica that has run longer
// than a restarted one), give every type the same version_info, and a
// different content gives a different one.
func TestSotwVersionsAreContentVersions(t *testing.T) {
	a, addrA := testServer(t, Options{AckTimeout: time.Second})
	b, addrB := testServer(t, Options{AckTimeout: time.Second})
	final := weighted(t, 90, 10)
	publishWithHistory(t, a, final)
	publishWithHistory(t, b, final, weighted(t, 100, 0), weighted(t, 50, 50))

	va := syncAll(newSotw(t, addrA, "proxy-1"))
	vb := syncAll(newSotw(t, addrB, "proxy-1"))
	for _, sub := range subscriptions {
		if va[sub.typeURL] == "" || va[sub.typeURL] != vb[sub.typeURL] {
			t.Errorf("%s version: %q on one server, %q on the other; want the same non-empty version", typeLabel(sub.typeURL), va[sub.typeURL], vb[sub.typeURL])
		}
	}
	publishWithHistory(t, b, weighted(t, 80, 20))
	vc := syncAll(newSotw(t, addrB, "proxy-2"))
	if vc[resource.RouteType] == va[resource.RouteType] {
		t.Errorf("route version %q unchanged for a different route", vc[resource.RouteType])
	}
	if vc[resource.ListenerType] != va[resource.ListenerType] {
		t.Errorf("listener version %q changed to %q although the listener did not", va[resource.ListenerType], vc[resource.ListenerType])
	}
}

// TestResumeAtCurrentContents: a proxy that synced with one server opens a
// stream to another with the same content, presenting its versions and no
// nonce. It counts as acknowledged at once and is sent nothing until the
// content changes.
func TestResumeAtCurrentContents(t *testing.T) {
	a, addrA := testServer(t, Options{AckTimeout: time.Second})
	b, addrB := testServer(t, Options{AckTimeout: time.Second})
	final := weighted(t, 90, 10)
	publishWithHistory(t, a, final)
	publishWithHistory(t, b, final, weighted(t, 100, 0))
	versions := syncAll(newSotw(t, addrA, "proxy-1"))

	moved := newSotw(t, addrB, "proxy-1")
	resumeAll(moved, versions)
	eventually(t, "the resumed proxy to count as acknowledged", func() bool {
		acked, _, _ := b.Synced(resource.EndpointType, resumeClusters[0], mustVersion(t, final[resource.EndpointType][resumeClusters[0]]))
		return acked == 1
	})
	for typeURL, named := range final {
		for name, m := range named {
			if acked, pending, nacked := b.Synced(typeURL, name, mustVersion(t, m)); acked != 1 || pending != 0 || nacked != 0 {
				t.Errorf("Synced(%s %s) = %d, %d, %d; want the resumed proxy acked", typeLabel(typeURL), name, acked, pending, nacked)
			}
		}
	}

	// The first response it gets is the changed route: nothing was sent again.
	next := weighted(t, 50, 50)
	publishWithHistory(t, b, next)
	resp := moved.recv()
	if resp.GetTypeUrl() != resource.RouteType || resp.GetVersionInfo() == versions[resource.RouteType] {
		t.Fatalf("first response after resuming: %s version %q; want the changed route, nothing sent again", typeLabel(resp.GetTypeUrl()), resp.GetVersionInfo())
	}
	if n := pushes(b); n != 1 {
		t.Fatalf("%v responses pushed to the resumed proxy, want only the changed route", n)
	}
	if acked, pending, _ := b.Synced(resource.RouteType, resumeSvc, mustVersion(t, next[resource.RouteType][resumeSvc])); acked != 0 || pending != 1 {
		t.Fatalf("changed route counted %d acked, %d pending before the proxy answered; want pending", acked, pending)
	}
}

// TestResumeRefusedForOtherContent: a version that is not the content this
// server serves is not an acknowledgement, whether the proxy carries it from
// a replica with other content or forges it: it is sent everything and
// counts only once it acknowledges.
func TestResumeRefusedForOtherContent(t *testing.T) {
	a, addrA := testServer(t, Options{AckTimeout: time.Second})
	b, addrB := testServer(t, Options{AckTimeout: time.Second})
	publishWithHistory(t, a, weighted(t, 90, 10))
	current := weighted(t, 50, 50)
	publishWithHistory(t, b, current)
	versions := syncAll(newSotw(t, addrA, "proxy-1"))

	forged := map[string]string{}
	for typeURL, v := range versions {
		forged[typeURL] = v
	}
	// A proxy that was never sent anything claims a route it could compute.
	forged[resource.RouteType] = heldVersion(map[string]string{resumeSvc: mustVersion(t, routes(resumeSvc, map[string]uint32{"shop/checkout/canary": 1}))})
	for _, claim := range []map[string]string{versions, forged} {
		c := newSotw(t, addrB, "proxy-x")
		resumeAll(c, claim)
		routeV := mustVersion(t, current[resource.RouteType][resumeSvc])
		var route *discovery.DiscoveryResponse
		for route == nil {
			if resp := c.recv(); resp.GetTypeUrl() == resource.RouteType {
				route = resp
			}
		}
		if len(route.GetResources()) != 1 || route.GetVersionInfo() == claim[resource.RouteType] {
			t.Fatalf("route response %q with %d resources; want this server's route", route.GetVersionInfo(), len(route.GetResources()))
		}
		if acked, pending, _ := b.Synced(resource.RouteType, resumeSvc, routeV); acked != 0 || pending != 1 {
			t.Fatalf("route counted %d acked, %d pending for a proxy claiming other content; want pending", acked, pending)
		}
		c.request(resource.RouteType, []string{resumeSvc}, route, "")
		eventually(t, "the route's ACK", func() bool {
			acked, _, _ := b.Synced(resource.RouteType, resumeSvc, routeV)
			return acked == 1
		})
		c.cancel()
		eventually(t, "the stream to close", func() bool { return len(b.Proxies()) == 0 })
	}
}

// switchFront is a TCP front that forwards to one backend at a time, like a
// Service in front of replicas; moving it closes every open connection.
type switchFront struct {
	lis    net.Listener
	mu     sync.Mutex
	target string
	conns  []net.Conn
}

func newSwitchFront(t *testing.T, target string) *switchFront {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &switchFront{lis: lis, target: target}
	t.Cleanup(func() { lis.Close(); f.moveTo("") })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			target := f.target
			f.mu.Unlock()
			d, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, d)
			f.mu.Unlock()
			go func() { io.Copy(d, c); d.Close() }() //nolint:errcheck // ends with either side
			go func() { io.Copy(c, d); c.Close() }() //nolint:errcheck // ends with either side
		}
	}()
	return f
}

func (f *switchFront) moveTo(target string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.target = target
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// TestGRPCClientMovesToAnotherReplica: grpc-go's xDS client, synced with one
// server, is moved to another with the same content (a front in between,
// as a Service before two replicas). The new server counts it as
// acknowledged without sending it anything, and its RPCs go on.
func TestGRPCClientMovesToAnotherReplica(t *testing.T) {
	a, addrA := testServer(t, Options{AckTimeout: 30 * time.Second})
	b, addrB := testServer(t, Options{AckTimeout: 30 * time.Second})
	stable := startBackend(t, "stable")
	final := service(t, resumeSvc, map[string]uint32{"shop/checkout/stable": 1}, "127.0.0.1", stable.port)
	publishWithHistory(t, a, final)
	publishWithHistory(t, b, final, service(t, resumeSvc, map[string]uint32{"shop/checkout/other": 1}, "127.0.0.1", stable.port))
	front := newSwitchFront(t, addrA)
	client := xdsClient(t, front.lis.Addr().String(), "grpc-client-1", resumeSvc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatal(err)
	}
	for typeURL, named := range final {
		for name, m := range named {
			if acked, _, err := a.WaitAcked(ctx, typeURL, name, mustVersion(t, m)); err != nil || len(acked) != 1 {
				t.Fatalf("WaitAcked(%s %s) on the first server = %v, %v", typeLabel(typeURL), name, acked, err)
			}
		}
	}

	moved := time.Now()
	front.moveTo(addrB)
	var pushed float64
	eventually(t, "the second server to count the client acknowledged", func() bool {
		for typeURL, named := range final {
			for name, m := range named {
				if acked, _, _ := b.Synced(typeURL, name, mustVersion(t, m)); acked != 1 {
					return false
				}
			}
		}
		pushed = pushes(b)
		return true
	})
	t.Logf("client counted as synced on the second server %v after the move, %v responses pushed", time.Since(moved).Round(time.Millisecond), pushed)
	if pushed != 0 {
		t.Fatalf("the second server pushed %v responses before counting the client synced; want none (it resumed)", pushed)
	}
	for typeURL, named := range final {
		for name, m := range named {
			if acked, pending, nacked := b.Synced(typeURL, name, mustVersion(t, m)); acked != 1 || pending+nacked != 0 {
				t.Errorf("Synced(%s %s) on the second server = %d, %d, %d; want the client acked", typeLabel(typeURL), name, acked, pending, nacked)
			}
		}
	}
	if resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true)); err != nil || resp.GetServerId() != "stable" {
		t.Fatalf("RPC after the move = %v, %v", resp, err)
	}
	if ps := b.Proxies(); len(ps) != 1 || ps[0].NodeID != "grpc-client-1" {
		t.Fatalf("second server's proxies = %+v, want the moved client", ps)
	}
}

// TestResumeIsPerNamespaceView: streams of two namespaces see different
// listeners and get different versions; on another replica a stream of
// frontend resumes at frontend's version, and a stream of team-a that
// presents frontend's version is not taken to hold it: it is sent its own.
func TestResumeIsPerNamespaceView(t *testing.T) {
	a, addrA := authzServer(t, Options{AckTimeout: time.Second})
	b, addrB := authzServer(t, Options{AckTimeout: time.Second})
	publishTenants(t, a, tenants(t, nil))
	publishTenants(t, b, tenants(t, nil))
	listeners := func(addr, node, ns, claim string) (*sotwClient, *discovery.DiscoveryResponse) {
		c := newSotwAs(t, addr, node, ns, "default")
		if err := c.stream.Send(&discovery.DiscoveryRequest{Node: c.node, TypeUrl: resource.ListenerType, VersionInfo: claim}); err != nil {
			t.Fatal(err)
		}
		if claim != "" {
			return c, nil
		}
		return c, c.recv()
	}
	_, front := listeners(addrA, "front-1", "frontend", "")
	_, teamA := listeners(addrA, "team-a-1", "team-a", "")
	if front.GetVersionInfo() == teamA.GetVersionInfo() {
		t.Fatalf("frontend and team-a see different listeners but got the same version %q", front.GetVersionInfo())
	}

	listeners(addrB, "front-1", "frontend", front.GetVersionInfo())
	eventually(t, "frontend's stream to resume on the other replica", func() bool {
		for _, p := range b.Proxies() {
			for _, ts := range p.Types {
				if p.NodeID == "front-1" && ts.TypeURL == resource.ListenerType && len(ts.Acked) == len(front.GetResources()) {
					return true
				}
			}
		}
		return false
	})
	if n := pushes(b); n != 0 {
		t.Fatalf("%v responses pushed to a stream resuming at its own view; want none", n)
	}
	forger, _ := listeners(addrB, "team-a-2", "team-a", front.GetVersionInfo())
	resp := forger.recv()
	if resp.GetVersionInfo() != teamA.GetVersionInfo() || len(resp.GetResources()) != len(teamA.GetResources()) {
		t.Fatalf("team-a stream presenting frontend's version got version %q with %d listeners; want its own view (%q, %d)",
			resp.GetVersionInfo(), len(resp.GetResources()), teamA.GetVersionInfo(), len(teamA.GetResources()))
	}
	for _, p := range b.Proxies() {
		for _, ts := range p.Types {
			if p.NodeID == "team-a-2" && len(ts.Acked) != 0 {
				t.Fatalf("team-a stream counted as carrying %v on a version of another namespace's view", ts.Acked)
			}
		}
	}
}
