package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
)

// envoyLike subscribes one sotw stream the way Envoy does for the types
// involved: wildcard CDS and RDS by name; it ACKs both initial responses.
func envoyLike(t *testing.T, addr, route string) *sotwClient {
	t.Helper()
	c := newSotw(t, addr, "envoy-1")
	c.request(resource.ClusterType, nil, nil, "")
	cds := c.recv()
	c.request(resource.ClusterType, nil, cds, "")
	c.request(resource.RouteType, []string{route}, nil, "")
	rds := c.recv()
	if rds.GetTypeUrl() != resource.RouteType {
		t.Fatalf("got %s, want the route configuration", rds.GetTypeUrl())
	}
	c.request(resource.RouteType, []string{route}, rds, "")
	return c
}

func updateAsync(s *Server, ctx context.Context, r Resources) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.Update(ctx, r) }()
	return done
}

func wantType(t *testing.T, got, want string, names, wantNames []string) {
	t.Helper()
	if got != want {
		t.Fatalf("next response is %s %v, want %s %v", got, names, want, wantNames)
	}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Fatalf("%s names (-want +got):\n%s", want, diff)
	}
}

func TestMakeBeforeBreak(t *testing.T) {
	s, addr := testServer(t, Options{AckTimeout: time.Minute})
	ctx := context.Background()
	const svc = "checkout.shop"
	if err := s.Update(ctx, service(t, svc, map[string]uint32{"blue": 1}, "127.0.0.1", 80)); err != nil {
		t.Fatal(err)
	}
	c := envoyLike(t, addr, svc)

	done := updateAsync(s, ctx, service(t, svc, map[string]uint32{"green": 1}, "127.0.0.1", 81))

	// 1. The new cluster comes first, next to the old one.
	cds := c.recv()
	wantType(t, cds.GetTypeUrl(), resource.ClusterType, resourceNames(cds.GetResources()), []string{"blue", "green"})
	c.request(resource.ClusterType, nil, cds, "")

	// 2. Then the route that uses it.
	rds := c.recv()
	wantType(t, rds.GetTypeUrl(), resource.RouteType, resourceNames(rds.GetResources()), []string{svc})
	if _, ok := s.Version(resource.ClusterType, "blue"); !ok {
		t.Fatal("the old cluster was removed before the proxy acknowledged the new route")
	}
	select {
	case err := <-done:
		t.Fatalf("Update returned (%v) before the proxy acknowledged the new route", err)
	default:
	}
	c.request(resource.RouteType, []string{svc}, rds, "")

	// 3. Only then the old cluster goes.
	cds = c.recv()
	wantType(t, cds.GetTypeUrl(), resource.ClusterType, resourceNames(cds.GetResources()), []string{"green"})
	c.request(resource.ClusterType, nil, cds, "")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Update did not return after the proxy acknowledged everything")
	}
	if _, ok := s.Version(resource.EndpointType, "blue"); ok {
		t.Fatal("the old endpoints are still published")
	}
}

func TestMakeBeforeBreakBoundedWait(t *testing.T) {
	s, addr := testServer(t, Options{AckTimeout: 100 * time.Millisecond})
	ctx := context.Background()
	const svc = "checkout.shop"
	if err := s.Update(ctx, service(t, svc, map[string]uint32{"blue": 1}, "127.0.0.1", 80)); err != nil {
		t.Fatal(err)
	}
	c := envoyLike(t, addr, svc)
	// The proxy never answers: each wait times out and the update goes on.
	if err := s.Update(ctx, service(t, svc, map[string]uint32{"green": 1}, "127.0.0.1", 81)); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Version(resource.ClusterType, "blue"); ok {
		t.Fatal("the old cluster is still published after the bounded wait")
	}
	cds := c.recv()
	wantType(t, cds.GetTypeUrl(), resource.ClusterType, resourceNames(cds.GetResources()), []string{"blue", "green"})
	rds := c.recv()
	wantType(t, rds.GetTypeUrl(), resource.RouteType, resourceNames(rds.GetResources()), []string{svc})
	// A late ACK gets the current state: without the old cluster.
	c.request(resource.ClusterType, nil, cds, "")
	cds = c.recv()
	wantType(t, cds.GetTypeUrl(), resource.ClusterType, resourceNames(cds.GetResources()), []string{"green"})
}

func TestMakeBeforeBreakInterrupted(t *testing.T) {
	s, addr := testServer(t, Options{AckTimeout: time.Minute})
	const svc = "checkout.shop"
	if err := s.Update(context.Background(), service(t, svc, map[string]uint32{"blue": 1}, "127.0.0.1", 80)); err != nil {
		t.Fatal(err)
	}
	c := envoyLike(t, addr, svc)
	ctx, cancel := context.WithCancel(context.Background())
	next := service(t, svc, map[string]uint32{"green": 1}, "127.0.0.1", 81)
	done := updateAsync(s, ctx, next)
	cds := c.recv()
	c.request(resource.ClusterType, nil, cds, "")
	rds := c.recv()
	cancel()
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "stale clusters and endpoints kept until the next update") {
		t.Fatalf("interrupted Update error = %v, want one saying the stale clusters were kept", err)
	}
	if _, ok := s.Version(resource.ClusterType, "blue"); !ok {
		t.Fatal("the old cluster was removed although the route was never acknowledged")
	}
	// Once the proxy acknowledges, the next update removes the leftovers.
	c.request(resource.RouteType, []string{svc}, rds, "")
	if err := s.Update(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Version(resource.ClusterType, "blue"); ok {
		t.Fatal("the next update kept the stale cluster")
	}
}

func TestMakeBeforeBreakKeepsClustersOnNack(t *testing.T) {
	s, addr := testServer(t, Options{AckTimeout: time.Minute})
	ctx := context.Background()
	const svc = "checkout.shop"
	if err := s.Update(ctx, service(t, svc, map[string]uint32{"blue": 1}, "127.0.0.1", 80)); err != nil {
		t.Fatal(err)
	}
	c := envoyLike(t, addr, svc)
	done := updateAsync(s, ctx, service(t, svc, map[string]uint32{"green": 1}, "127.0.0.1", 81))
	cds := c.recv()
	c.request(resource.ClusterType, nil, cds, "")
	rds := c.recv()
	c.request(resource.RouteType, []string{svc}, rds, "route rejected")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Update kept waiting after the proxy rejected the route")
	}
	if _, ok := s.Version(resource.ClusterType, "blue"); !ok {
		t.Fatal("the old cluster was removed although the proxy still routes to it")
	}
}
