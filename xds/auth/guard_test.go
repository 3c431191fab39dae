package auth_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluice-dev/sluice/xds/auth"
)

const sa = "system:serviceaccount:shop:web"

// wantCode fails unless err has code c and its message contains each of
// parts.
func wantCode(t *testing.T, err error, c codes.Code, parts ...string) {
	t.Helper()
	if status.Code(err) != c {
		t.Fatalf("got %v, want code %s", err, c)
	}
	for _, p := range parts {
		if !strings.Contains(status.Convert(err).Message(), p) {
			t.Errorf("message %q does not say %q", status.Convert(err).Message(), p)
		}
	}
}

func TestTokenBindsTheNodeToItsNamespace(t *testing.T) {
	p := newPlane(t, auth.GuardOptions{})
	c := p.conn(t, nil)
	tok := p.rev.token(sa, "sluice", time.Time{})
	for _, claim := range []string{"shop", ""} {
		got, err := stream(timeout(t), c, tok, request(claim))
		if err != nil || got != "token:shop/web" {
			t.Fatalf("claim %q: the server saw %q, %v; want token:shop/web", claim, got, err)
		}
	}
	// A token of namespace shop whose node claims bank.
	_, err := stream(timeout(t), c, tok, request("bank"))
	wantCode(t, err, codes.PermissionDenied, "bank")
}

func TestRefusedIdentities(t *testing.T) {
	p := newPlane(t, auth.GuardOptions{})
	c := p.conn(t, nil)
	for _, tc := range []struct {
		name, token string
		code        codes.Code
		says        string
	}{
		{"no credentials", "", codes.Unauthenticated, "no identity"},
		{"unknown token", "not-a-token", codes.Unauthenticated, "did not authenticate"},
		{"token for another audience", p.rev.token(sa, "vault", time.Time{}), codes.Unauthenticated, `audience "sluice"`},
		{"a user, not a ServiceAccount", p.rev.token("alice", "sluice", time.Time{}), codes.Unauthenticated, "not a ServiceAccount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := stream(timeout(t), c, tc.token, request("shop"))
			wantCode(t, err, tc.code, tc.says)
		})
	}
	t.Run("plaintext client on the TLS port", func(t *testing.T) {
		_, err := stream(timeout(t), p.conn(t, insecure.NewCredentials()), "", request("shop"))
		if err == nil || status.Code(err) == codes.OK {
			t.Fatalf("a plaintext client was served: %v", err)
		}
		if len(p.ads.ids) != 0 {
			t.Fatalf("the handler saw %v", p.ads.ids)
		}
	})
}

func TestTooManyNamesRefused(t *testing.T) {
	p := newPlane(t, auth.GuardOptions{})
	c := p.conn(t, nil)
	tok := p.rev.token(sa, "sluice", time.Time{})
	if _, err := stream(timeout(t), c, tok, request("shop", names(auth.DefaultMaxNamesPerRequest)...)); err != nil {
		t.Fatalf("%d names: %v", auth.DefaultMaxNamesPerRequest, err)
	}
	_, err := stream(timeout(t), c, tok, request("shop", names(10_000)...))
	wantCode(t, err, codes.InvalidArgument, "10000 resource names")
}

func TestTooManyDeltaNamesRefused(t *testing.T) {
	p := newPlane(t, auth.GuardOptions{MaxNamesPerRequest: 10})
	c := p.conn(t, nil)
	ctx := metadata.AppendToOutgoingContext(timeout(t), "authorization", "Bearer "+p.rev.token(sa, "sluice", time.Time{}))
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(c).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Eleven names over three requests of one stream.
	for _, n := range [][]string{names(4), names(8)[4:], {"x", "y", "z"}} {
		if err := s.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node("shop"), TypeUrl: "t", ResourceNamesSubscribe: n}); err != nil {
			break
		}
	}
	for err == nil {
		_, err = s.Recv()
	}
	wantCode(t, err, codes.InvalidArgument, "11 resource names")
}

func TestOversizedMessageRefused(t *testing.T) {
	p := newPlane(t, auth.GuardOptions{MaxRecvMsgSize: 64 << 10})
	c := p.conn(t, nil)
	big := request("shop", strings.Repeat("x", 100<<10))
	_, err := stream(timeout(t), c, p.rev.token(sa, "sluice", time.Time{}), big)
	wantCode(t, err, codes.ResourceExhausted)
}

func TestStreamsPerIdentityBounded(t *testing.T) {
	const limit = 3
	p := newPlane(t, auth.GuardOptions{MaxStreamsPerIdentity: limit})
	c := p.conn(t, nil)
	tok := p.rev.token(sa, "sluice", time.Time{})
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(timeout(t), "authorization", "Bearer "+tok))
	open := func() error {
		s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(c).StreamAggregatedResources(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(request("shop")); err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	for i := range limit {
		if err := open(); err != nil {
			t.Fatalf("stream %d: %v", i+1, err)
		}
	}
	wantCode(t, open(), codes.ResourceExhausted, "3 streams")
	// Another identity is not affected.
	if _, err := stream(timeout(t), c, p.rev.token("system:serviceaccount:shop:other", "sluice", time.Time{}), request("shop")); err != nil {
		t.Fatalf("another identity: %v", err)
	}
	// Closed streams give their slots back.
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := stream(timeout(t), c, tok, request("shop"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing its streams the identity is still refused: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestHandlerPanicEndsOnlyItsStream(t *testing.T) {
	p := newPlane(t, auth.GuardOptions{})
	c := p.conn(t, nil)
	tok := p.rev.token(sa, "sluice", time.Time{})
	_, err := stream(timeout(t), c, tok, &discoveryv3.DiscoveryRequest{Node: node("shop"), TypeUrl: "panic"})
	wantCode(t, err, codes.Internal)
	if got, err := stream(timeout(t), c, tok, request("shop")); err != nil || got != "token:shop/web" {
		t.Fatalf("after a panic: %q, %v", got, err)
	}
}

func TestLoadReportsBindTheNode(t *testing.T) {
	p := newPlane(t, auth.GuardOptions{})
	c := p.conn(t, nil)
	tok := p.rev.token(sa, "sluice", time.Time{})
	report := func(ns string) ([]string, error) {
		ctx := metadata.AppendToOutgoingContext(timeout(t), "authorization", "Bearer "+tok)
		s, err := lrsv3.NewLoadReportingServiceClient(c).StreamLoadStats(ctx)
		if err != nil {
			return nil, err
		}
		if err := s.Send(&lrsv3.LoadStatsRequest{Node: node(ns)}); err != nil {
			return nil, err
		}
		r, err := s.Recv()
		return r.GetClusters(), err
	}
	if got, err := report("shop"); err != nil || len(got) != 1 || got[0] != "token:shop/web" {
		t.Fatalf("own namespace: %v, %v", got, err)
	}
	_, err := report("bank")
	wantCode(t, err, codes.PermissionDenied)
}

func TestLegacyListener(t *testing.T) {
	allowed := func(_ context.Context, ns string) error {
		if ns != "old" {
			return errors.New("not labelled")
		}
		return nil
	}
	p := newPlane(t, auth.GuardOptions{Legacy: true, LegacyAllowed: allowed, MaxStreamsPerIdentity: 1})
	c := p.conn(t, insecure.NewCredentials())
	if got, err := stream(timeout(t), c, "", request("old")); err != nil || got != "legacy:old" {
		t.Fatalf("opted-in namespace: %q, %v", got, err)
	}
	_, err := stream(timeout(t), c, "", request("shop"))
	wantCode(t, err, codes.PermissionDenied, `"shop"`, "not labelled")
	_, err = stream(timeout(t), c, "", request(""))
	wantCode(t, err, codes.InvalidArgument, auth.NodeNamespaceKey)
	_, err = stream(timeout(t), c, "", &discoveryv3.DiscoveryRequest{TypeUrl: "t"})
	wantCode(t, err, codes.InvalidArgument, "must name its node")
}

// TestReconnectStormCostsOneReview: many streams presenting one token at
// once cost one TokenReview; tokens are reviewed again only after expiry.
func TestReconnectStormCostsOneReview(t *testing.T) {
	rev := newReviewer()
	rev.delay = 50 * time.Millisecond
	now := time.Now()
	v, err := auth.NewTokenVerifier(auth.TokenOptions{Reviews: rev.client().AuthenticationV1().TokenReviews(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	tok := rev.token(sa, "sluice", now.Add(time.Hour))
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for range 1000 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := rev.calls.Load(); n != 1 {
		t.Fatalf("%d TokenReviews for 1,000 streams with one token, want 1", n)
	}
	// A refused token is cached too, for a short time.
	for range 3 {
		if _, err := v.Verify(context.Background(), "bad"); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("bad token: %v", err)
		}
	}
	if n := rev.calls.Load(); n != 2 {
		t.Fatalf("%d TokenReviews after three tries of one bad token, want 2", n)
	}
}

func TestVerdictExpiresWithTheToken(t *testing.T) {
	rev := newReviewer()
	v, err := auth.NewTokenVerifier(auth.TokenOptions{Reviews: rev.client().AuthenticationV1().TokenReviews()})
	if err != nil {
		t.Fatal(err)
	}
	tok := rev.token(sa, "sluice", time.Now().Add(time.Second))
	for range 2 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := rev.calls.Load(); n != 1 {
		t.Fatalf("%d reviews before expiry, want 1", n)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if n := rev.calls.Load(); n != 2 {
		t.Fatalf("%d reviews after the token's expiry, want 2 (the verdict outlived the token)", n)
	}
}

// TestClientCertificateIsAnIdentity: a client certificate issued by the
// CA for a ServiceAccount proves it; one for anything else proves nothing.
func TestClientCertificateIsAnIdentity(t *testing.T) {
	p := newPlane(t, auth.GuardOptions{})
	dial := func(cn string) *grpc.ClientConn {
		pair := clientCertificate(t, p.bundle, cn)
		return p.conn(t, credentials.NewTLS(&tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{pair}}))
	}
	if got, err := stream(timeout(t), dial(sa), "", request("shop")); err != nil || got != "certificate:shop/web" {
		t.Fatalf("certificate: %q, %v", got, err)
	}
	_, err := stream(timeout(t), dial(sa), "", request("bank"))
	wantCode(t, err, codes.PermissionDenied)
	_, err = stream(timeout(t), dial("alice"), "", request("shop"))
	wantCode(t, err, codes.Unauthenticated, "not a ServiceAccount")
}
