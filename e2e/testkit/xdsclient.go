package testkit

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-dev/sluice/local/cluster"
	// grpc-go's xDS client sends the bootstrap's token only with this.
	_ "github.com/sluice-dev/sluice/xds/auth/callcreds"
)

// ClientToken mints a token of ServiceAccount namespace/name for audience
// (within 30 s) and writes it to a file of t's, returning the path.
func ClientToken(t testing.TB, cs kubernetes.Interface, namespace, name, audience string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "token")
	f := cluster.TokenFile{Client: cs, Path: path, Namespace: namespace, Name: name, Audience: audience}
	if _, err := f.Write(ctx); err != nil {
		t.Fatalf("xDS client token: %v", err)
	}
	return path
}

// DialTarget is a connection of grpc-go's own xDS client to target (such
// as xds:///checkout.shop), configured by bootstrap and closed when the
// test ends.
func DialTarget(t testing.TB, bootstrap []byte, target string) *grpc.ClientConn {
	t.Helper()
	rb, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatalf("xDS resolver: %v", err)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		t.Fatalf("dial %s: %v", target, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
