package chaos

import (
	"context"
	"fmt"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/e2e/testkit"
	"github.com/sluice-dev/sluice/xds/auth"
)

func certsCAFile(ctx context.Context, path string) error {
	return certs.WriteCAFile(ctx, env.Client(), sluiceNamespace, "sluice-webhook-tls", path)
}

var namespaces atomic.Int64

// service is one opted-in Deployment, checkout, in a namespace of its own.
type service struct {
	*testkit.Delivery
	token string // the clients' token file, once minted
}

// deploy creates a namespace and checkout at image with the rollout
// annotations, and waits until it is stable with its pods running.
func deploy(t testing.TB, image string, annotations map[string]string) *service {
	t.Helper()
	kube, err := testkit.NewClient(env.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	a := map[string]string{v1alpha1.AnnotationRollout: "canary"}
	maps.Copy(a, annotations)
	return &service{Delivery: testkit.Deploy(t, env.Client(), kube, testkit.DeliverySpec{
		Namespace:       fmt.Sprintf("chaos-%d-%d", namespaces.Add(1), time.Now().UnixNano()%100000),
		NamespaceLabels: map[string]string{"sluice.dev/team": "shop"},
		Name:            "checkout", Image: image, Replicas: 3, Annotations: a,
		StableWithin: 3 * time.Minute,
	})}
}

var nodes atomic.Int64

// dial returns grpc-go's xDS client for xds:///checkout.<ns>, reaching the
// fleet through its front with a token of the namespace's ServiceAccount.
func (s *service) dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	return s.dialVia(t, sluice.XDS.Addr())
}

// dialVia is dial through server, with the service's one token file.
func (s *service) dialVia(t testing.TB, server string) *grpc.ClientConn {
	t.Helper()
	b, err := auth.Bootstrap{Server: server, CAFile: caFile, TokenFile: s.tokenFile(t),
		NodeID: fmt.Sprintf("chaos-%d", nodes.Add(1)), Zone: "chaos"}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return testkit.DialTarget(t, b, "xds:///checkout."+s.Namespace)
}

// tokenFile mints, once, a token of the namespace's ServiceAccount.
func (s *service) tokenFile(t testing.TB) string {
	t.Helper()
	if s.token == "" {
		s.token = testkit.ClientToken(t, env.Client(), s.Namespace, "xds-client", auth.DefaultAudience)
	}
	return s.token
}
