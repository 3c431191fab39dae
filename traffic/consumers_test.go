package traffic

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/xds/auth"
	"github.com/sluice-dev/sluice/xds/server"
)

// TestConfirmSkipsConsumerNackAfterStaleBound: shop/checkout grants
// frontend. A frontend proxy rejects the canary routes: the step is held
// (Nacked) at first, and once the rejection is older than the stale bound
// the proxy is named stale and the step confirmed by shop's own proxy.
func TestConfirmSkipsConsumerNackAfterStaleBound(t *testing.T) {
	const bound = 300 * time.Millisecond
	log := testr.New(t)
	srv := server.New(server.Options{Logger: log, Registerer: prometheus.NewRegistry(), StaleAfter: bound})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Stands in for authentication: the namespace comes from metadata.
	withNamespace := func(s any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		id := auth.Identity{Method: auth.MethodToken, Namespace: md.Get("x-test-namespace")[0], Name: "default"}
		return h(s, namespacedStream{ss, auth.NewContext(ss.Context(), id)})
	}
	g := grpc.NewServer(grpc.WaitForHandlers(true), grpc.StreamInterceptor(withNamespace))
	srv.Register(g)
	go g.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(g.Stop)

	objs := func(w v1alpha1.BasisPoints) Objects {
		o := canaryObjects(w)
		o.Deployments = []appsv1.Deployment{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout",
			Labels:      map[string]string{v1alpha1.LabelService: "checkout"},
			Annotations: map[string]string{v1alpha1.AnnotationConsumers: "frontend"}}}}
		return o
	}
	src := newFakeSource(objs(0))
	c := startController(t, srv, src, Options{Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ads := dialADS(t, lis.Addr().String())
	if _, err := startProxy(metadata.AppendToOutgoingContext(ctx, "x-test-namespace", "shop"), ads, "shop-proxy", resource.RouteType, []string{checkoutRoute}, ackAll); err != nil {
		t.Fatal(err)
	}
	if _, err := startProxy(metadata.AppendToOutgoingContext(ctx, "x-test-namespace", "frontend"), ads, "frontend-proxy", resource.RouteType, []string{checkoutRoute}, nackWeighted); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, c, 0, 2)
	src.set(objs(2500), true)
	if got := confirm(t, c, 2500); got.Nacked != 1 || got.Acked != 1 {
		t.Fatalf("right after the rejection: %+v, want the consumer's NACK holding", got)
	}
	deadline := time.Now().Add(20 * time.Second)
	var got Confirmation
	for got = confirm(t, c, 2500); got.Nacked != 0; got = confirm(t, c, 2500) {
		if time.Now().After(deadline) {
			t.Fatalf("the consumer's NACK still holds after the stale bound: %+v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got.Acked != 1 || !slices.Equal(got.Stale, []string{"frontend-proxy on this replica"}) {
		t.Errorf("after the bound: %+v, want shop's proxy acked and frontend's stale", got)
	}
}

type namespacedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s namespacedStream) Context() context.Context { return s.ctx }
