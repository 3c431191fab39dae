package translate

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/sluice-dev/sluice/router"
)

// TestExternalDependency: an external dependency becomes a listener
// "<name>.<namespace>", a route sending everything to a LOGICAL_DNS cluster
// of the declared host and port with load reports to Sluice, no
// ClusterLoadAssignment, every resource visible to the declaring namespace
// only; one named like a service of its namespace is refused and the
// service keeps its routes; the same name in another namespace is that
// namespace's own and captures nothing.
func TestExternalDependency(t *testing.T) {
	plan, conflicts := router.AddExternals(build(t, service("shop", "checkout", 0)), []router.External{
		{Namespace: "shop", Name: "payments", Host: "api.payments.example", Port: 443},
		{Namespace: "shop", Name: "checkout", Host: "evil.example", Port: 443},
		{Namespace: "web", Name: "checkout", Host: "evil.example", Port: 9090},
		{Namespace: "web", Name: "bad", Host: "not a host", Port: 1},
	})
	if len(conflicts) != 2 || conflicts[0].External.Name != "checkout" || conflicts[0].External.Namespace != "shop" ||
		conflicts[1].External.Name != "bad" {
		t.Fatalf("conflicts %+v, want shop/checkout (a service) and web/bad (malformed)", conflicts)
	}
	res, err := Translate(plan, Options{})
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	name := router.ExternalCluster("shop", "payments", 443)
	cl := get[*clusterv3.Cluster](t, res, resource.ClusterType, name)
	sa := cl.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if cl.GetType() != clusterv3.Cluster_LOGICAL_DNS || sa.GetAddress() != "api.payments.example" || sa.GetPortValue() != 443 ||
		cl.GetLrsServer().GetSelf() == nil {
		t.Errorf("cluster %s: type %v address %s:%d lrs %v, want LOGICAL_DNS to api.payments.example:443 reporting to self",
			name, cl.GetType(), sa.GetAddress(), sa.GetPortValue(), cl.GetLrsServer())
	}
	if _, ok := res.Get(resource.EndpointType, name); ok {
		t.Errorf("an external cluster has a ClusterLoadAssignment resource; the client resolves its name")
	}
	get[*listenerv3.Listener](t, res, resource.ListenerType, "payments.shop")
	rc := get[*routev3.RouteConfiguration](t, res, resource.RouteType, "payments.shop:443")
	if got := rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster(); got != name {
		t.Errorf("route goes to %q, want %q", got, name)
	}
	for _, typ := range []string{resource.ClusterType, resource.ListenerType, resource.RouteType} {
		for _, n := range []string{name, "payments.shop", "payments.shop:443"} {
			if a, ok := res.Access(typ, n); ok && (a.Namespace != "shop" || a.Allows("web")) {
				t.Errorf("%s %s: access %+v, want shop only", shortType(typ), n, a)
			}
		}
	}
	// shop's checkout still routes to its pods.
	rc = get[*routev3.RouteConfiguration](t, res, resource.RouteType, "checkout.shop:9090")
	for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
		for _, c := range append([]string{r.GetRoute().GetCluster()}, clusterNames(r)...) {
			if id, err := router.ParseClusterName(c); c != "" && (err != nil || id.Track == router.TrackExternal) {
				t.Errorf("checkout.shop routes to %q", c)
			}
		}
	}
	// web's own external of the same name is web's, visible to web only.
	webCluster := router.ExternalCluster("web", "checkout", 9090)
	if a, ok := res.Access(resource.ClusterType, webCluster); !ok || a.Namespace != "web" || a.Allows("shop") {
		t.Errorf("web's external: access %+v (%v), want web only", a, ok)
	}
}

func clusterNames(r *routev3.Route) []string {
	var out []string
	for _, w := range r.GetRoute().GetWeightedClusters().GetClusters() {
		out = append(out, w.GetName())
	}
	return out
}
