package auth_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds"

	"github.com/sluice-dev/sluice/xds/auth"
	// Without it grpc-go ignores the bootstrap's call credentials.
	_ "github.com/sluice-dev/sluice/xds/auth/callcreds"
)

// TestGRPCGoClientProvesItsToken: grpc-go's own xDS client, configured by
// a Bootstrap with TLS channel credentials (gRFC A65) and a token file
// (gRFC A97), opens an ADS stream that the guard admits as the token's
// ServiceAccount.
func TestGRPCGoClientProvesItsToken(t *testing.T) {
	p := newPlane(t, auth.GuardOptions{})
	dir := t.TempDir()
	caFile, tokenFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "token")
	if err := os.WriteFile(caFile, p.bundle.CACert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, []byte(p.rev.token(sa, "sluice", time.Time{})), 0o600); err != nil {
		t.Fatal(err)
	}
	bs, err := auth.Bootstrap{Server: p.addr, CAFile: caFile, TokenFile: tokenFile, NodeID: "grpc-go", Namespace: "shop"}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	rb, err := xds.NewXDSResolverWithConfigForTesting(bs)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///checkout.shop", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		p.ads.mu.Lock()
		ids := slices.Clone(p.ads.ids)
		p.ads.mu.Unlock()
		if slices.Contains(ids, auth.Identity{Method: auth.MethodToken, Namespace: "shop", Name: "web"}) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the server never saw the token's identity (saw %v)", ids)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
