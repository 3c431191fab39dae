package auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/xds/auth"
)

// reviewer is a fake TokenReview API: tokens map to users, every token is
// valid for audience "sluice" only unless audiences says otherwise.
type reviewer struct {
	mu        sync.Mutex
	users     map[string]string   // token -> user name
	audiences map[string][]string // token -> audiences it was minted for
	calls     atomic.Int64
	delay     time.Duration
}

func newReviewer() *reviewer {
	return &reviewer{users: map[string]string{}, audiences: map[string][]string{}}
}

// token mints a token of user for audience, expiring at exp (zero: in an
// hour), shaped as a JWT so its "exp" claim can be read.
func (r *reviewer) token(user, audience string, exp time.Time) string {
	if exp.IsZero() {
		exp = time.Now().Add(time.Hour)
	}
	claims, _ := json.Marshal(map[string]any{"exp": exp.Unix(), "sub": user, "aud": audience, "n": r.calls.Load() + int64(len(r.users))})
	tok := "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString(claims) + ".sig"
	r.mu.Lock()
	defer r.mu.Unlock()
	r.users[tok] = user
	r.audiences[tok] = []string{audience}
	return tok
}

func (r *reviewer) client() *fake.Clientset {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r.calls.Add(1)
		if r.delay > 0 {
			time.Sleep(r.delay)
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		r.mu.Lock()
		defer r.mu.Unlock()
		user, ok := r.users[tr.Spec.Token]
		aud := r.audiences[tr.Spec.Token]
		want := tr.Spec.Audiences
		if !ok || len(want) != 1 || len(aud) != 1 || aud[0] != want[0] {
			tr.Status = authnv1.TokenReviewStatus{Error: "invalid bearer token, token audiences are invalid"}
			return true, tr, nil
		}
		tr.Status = authnv1.TokenReviewStatus{Authenticated: true, Audiences: aud, User: authnv1.UserInfo{Username: user}}
		return true, tr, nil
	})
	return cs
}

// ads is an ADS and LRS server that answers every request with an empty
// response and records the identity each stream acts as; a request of
// type "panic" panics. Its state-of-the-world handler swallows receive
// errors, as go-control-plane's does.
type ads struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	lrsv3.UnimplementedLoadReportingServiceServer
	mu  sync.Mutex
	ids []auth.Identity
}

func (a *ads) StreamAggregatedResources(s discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	for {
		req, err := s.Recv()
		if err != nil {
			// As go-control-plane's server does: a failed receive ends
			// the stream without an error of the handler's own.
			return nil
		}
		if req.GetTypeUrl() == "panic" {
			panic("a handler bug")
		}
		id, _ := auth.FromContext(s.Context())
		a.mu.Lock()
		a.ids = append(a.ids, id)
		a.mu.Unlock()
		if err := s.Send(&discoveryv3.DiscoveryResponse{TypeUrl: req.GetTypeUrl(), VersionInfo: id.String()}); err != nil {
			return err
		}
	}
}

func (a *ads) DeltaAggregatedResources(s discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	for {
		req, err := s.Recv()
		if err != nil {
			return err
		}
		if err := s.Send(&discoveryv3.DeltaDiscoveryResponse{TypeUrl: req.GetTypeUrl()}); err != nil {
			return err
		}
	}
}

func (a *ads) StreamLoadStats(s lrsv3.LoadReportingService_StreamLoadStatsServer) error {
	for {
		if _, err := s.Recv(); err != nil {
			return err
		}
		id, _ := auth.FromContext(s.Context())
		if err := s.Send(&lrsv3.LoadStatsResponse{Clusters: []string{id.String()}}); err != nil {
			return err
		}
	}
}

// plane is a real gRPC server guarded by a Guard.
type plane struct {
	addr   string
	pool   *x509.CertPool // trusts the serving certificate
	bundle *certs.Bundle
	rev    *reviewer
	ads    *ads
}

// newPlane serves a fake ADS on loopback: TLS unless opts.Legacy.
func newPlane(t testing.TB, opts auth.GuardOptions) *plane {
	t.Helper()
	p := &plane{rev: newReviewer(), ads: &ads{}}
	b, err := certs.Issue(certs.IssueRequest{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p.bundle = b
	p.pool = x509.NewCertPool()
	p.pool.AppendCertsFromPEM(b.CACert)
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		t.Fatal(err)
	}
	if !opts.Legacy {
		tokens, err := auth.NewTokenVerifier(auth.TokenOptions{Reviews: p.rev.client().AuthenticationV1().TokenReviews()})
		if err != nil {
			t.Fatal(err)
		}
		opts.Tokens = tokens
	}
	opts.Logger = testr.NewWithInterface(t, testr.Options{})
	g, err := auth.NewGuard(opts)
	if err != nil {
		t.Fatal(err)
	}
	sopts := g.ServerOptions()
	if !opts.Legacy {
		get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }
		sopts = append(sopts, grpc.Creds(auth.ServerCredentials(get, func() *x509.CertPool { return p.pool })))
	}
	srv := grpc.NewServer(sopts...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, p.ads)
	lrsv3.RegisterLoadReportingServiceServer(srv, p.ads)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(srv.Stop)
	p.addr = lis.Addr().String()
	return p
}

// conn dials the plane with TLS (and the client certificate, if any), or
// with creds when given.
func (p *plane) conn(t testing.TB, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = credentials.NewTLS(&tls.Config{RootCAs: p.pool})
	}
	c, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// node is a node claiming namespace ns ("" claims none).
func node(ns string) *corev3.Node {
	n := &corev3.Node{Id: "n"}
	if ns != "" {
		n.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{auth.NodeNamespaceKey: structpb.NewStringValue(ns)}}
	}
	return n
}

// stream opens an ADS stream with token (none if ""), sends req and
// returns the response's version (the identity the server saw) or the
// error that ended the stream.
func stream(ctx context.Context, c *grpc.ClientConn, token string, req *discoveryv3.DiscoveryRequest) (string, error) {
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(c).StreamAggregatedResources(ctx)
	if err != nil {
		return "", err
	}
	if err := s.Send(req); err != nil {
		_, err = s.Recv()
		return "", err
	}
	resp, err := s.Recv()
	if err != nil {
		return "", err
	}
	return resp.GetVersionInfo(), nil
}

func request(ns string, names ...string) *discoveryv3.DiscoveryRequest {
	return &discoveryv3.DiscoveryRequest{Node: node(ns), TypeUrl: "type.googleapis.com/envoy.config.listener.v3.Listener", ResourceNames: names}
}

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("svc-%d.ns", i)
	}
	return out
}

// clientCertificate issues a client certificate for commonName from the
// plane's CA.
func clientCertificate(t *testing.T, b *certs.Bundle, commonName string) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := certs.IssueClient(b, commonName, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}
