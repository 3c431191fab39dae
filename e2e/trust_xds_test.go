package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/xds/auth"
)

// adsProbe opens an ADS stream to addr with creds (and token as call
// credentials, if set), sends req and returns the error that ended the
// stream; nil if the server answered instead.
func adsProbe(t *testing.T, addr string, creds credentials.TransportCredentials, token string, req *discoveryv3.DiscoveryRequest) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	if err := s.Send(req); err != nil {
		_, err = s.Recv()
		return err
	}
	_, err = s.Recv()
	return err
}

// listenerRequest asks for one Listener as a node claiming namespace ns.
func listenerRequest(ns string, names ...string) *discoveryv3.DiscoveryRequest {
	n := &corev3.Node{Id: "probe", Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		auth.NodeNamespaceKey: structpb.NewStringValue(ns)}}}
	return &discoveryv3.DiscoveryRequest{Node: n, TypeUrl: "type.googleapis.com/envoy.config.listener.v3.Listener", ResourceNames: names}
}

// tokenOf returns the content of a token file of clientToken.
func tokenOf(t *testing.T, namespace, audience string) string {
	t.Helper()
	b, err := os.ReadFile(clientToken(t, namespace, xdsClientAccount, audience))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTrustXDSProbes plays, against the controller under test with its
// default (authenticated) settings, what an ordinary tenant could try on
// the xDS ports. Every probe must be refused with a clear status, while a
// client that proves its ServiceAccount is served.
func TestTrustXDSProbes(t *testing.T) {
	f := newDelivery(t, "example.com/checkout:v1", nil)
	target := "xds:///checkout." + f.Namespace
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	call := func(t *testing.T, conn *grpc.ClientConn) {
		t.Helper()
		if _, err := testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
			t.Fatalf("call through xDS: %v", err)
		}
	}
	call(t, newXDSConn(t, target))

	caPEM, err := os.ReadFile(sluice.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tlsCreds := credentials.NewTLS(&tls.Config{RootCAs: pool})
	other := rolloutNamespace(t)
	for _, tc := range []struct {
		name  string
		addr  string
		creds credentials.TransportCredentials
		token string
		req   *discoveryv3.DiscoveryRequest
		code  codes.Code
		says  string
	}{
		{"no credentials", sluice.XDSAddr, tlsCreds, "", listenerRequest(f.Namespace), codes.Unauthenticated, "no identity"},
		{"token for another audience", sluice.XDSAddr, tlsCreds, tokenOf(t, f.Namespace, "vault"), listenerRequest(f.Namespace), codes.Unauthenticated, `audience "sluice"`},
		{"token of another namespace claiming this one", sluice.XDSAddr, tlsCreds, tokenOf(t, other, auth.DefaultAudience), listenerRequest(f.Namespace), codes.PermissionDenied, f.Namespace},
		{"10,000 names on one stream", sluice.XDSAddr, tlsCreds, tokenOf(t, f.Namespace, auth.DefaultAudience), listenerRequest(f.Namespace, manyNames(10_000)...), codes.InvalidArgument, "10000 resource names"},
		{"an oversized message", sluice.XDSAddr, tlsCreds, tokenOf(t, f.Namespace, auth.DefaultAudience), listenerRequest(f.Namespace, strings.Repeat("x", 5<<20)), codes.ResourceExhausted, ""},
		{"plaintext client on the TLS port", sluice.XDSAddr, insecure.NewCredentials(), "", listenerRequest(f.Namespace), codes.Unavailable, ""},
		{"legacy listener, namespace not opted in", sluice.LegacyAddr, insecure.NewCredentials(), "", listenerRequest(f.Namespace), codes.PermissionDenied, auth.LegacyNamespaceLabel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := adsProbe(t, tc.addr, tc.creds, tc.token, tc.req)
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.says) {
				t.Fatalf("got %v; want %s saying %q", err, tc.code, tc.says)
			}
		})
	}
	t.Run("refusals are counted", func(t *testing.T) {
		for _, reason := range []string{auth.ReasonUnauthenticated, auth.ReasonNamespaceMismatch, auth.ReasonTooManyNames, auth.ReasonMessageTooLarge, auth.ReasonLegacyNotAllowed} {
			n, err := metricWith(ctx, sluice.MetricsURL, "sluice_xds_refused_streams_total", `reason="`+reason+`"`)
			if err != nil || n < 1 {
				t.Errorf("sluice_xds_refused_streams_total{reason=%q} = %v, %v; want at least 1", reason, n, err)
			}
		}
	})

	t.Run("a client certificate issued by Sluice's CA", func(t *testing.T) {
		sec, err := env.Client().CoreV1().Secrets(sluiceNamespace).Get(ctx, "sluice-webhook-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		certPEM, keyPEM, err := certs.IssueClient(certs.BundleFromSecretData(sec.Data), "system:serviceaccount:"+f.Namespace+":"+xdsClientAccount, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		call(t, dialXDS(t, target, certBootstrap(t, certPEM, keyPEM)))
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		withCert := credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}})
		err = adsProbe(t, sluice.XDSAddr, withCert, "", listenerRequest(other))
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("a certificate of %s claiming %s: %v, want PermissionDenied", f.Namespace, other, err)
		}
	})

	t.Run("a client certificate through the CSR API", func(t *testing.T) {
		user := "system:serviceaccount:" + f.Namespace + ":" + xdsClientAccount
		certPEM, keyPEM := requestClientCertificate(t, f.Namespace, user, "csr-"+f.Namespace)
		call(t, dialXDS(t, target, certBootstrap(t, certPEM, keyPEM)))
		// The same ServiceAccount asking for another's name is denied.
		csr, _ := submitCSR(t, f.Namespace, "system:serviceaccount:"+other+":"+xdsClientAccount, "csr-other-"+f.Namespace)
		if got := waitCSR(t, csr.Name); len(got.Status.Certificate) > 0 || !csrDenied(got) {
			t.Fatalf("a request for another ServiceAccount's name: %+v, want denied", got.Status)
		}
	})

	t.Run("legacy listener, namespace opted in", func(t *testing.T) {
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, auth.LegacyNamespaceLabel, auth.LegacyNamespaceEnabled)
		if _, err := env.Client().CoreV1().Namespaces().Patch(ctx, f.Namespace, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		bs, err := auth.Bootstrap{Server: sluice.LegacyAddr, NodeID: "legacy-client", Zone: "e2e", Namespace: f.Namespace}.JSON()
		if err != nil {
			t.Fatal(err)
		}
		// The controller's cache sees the label a moment later. Until then
		// the stream is refused, and grpc-go fails RPCs at once (even
		// wait-for-ready ones) while its listener is in error, so the
		// client dials only once a probe is served.
		eventually(t, time.Minute, "the legacy listener serves "+f.Namespace, func(context.Context) error {
			return adsProbe(t, sluice.LegacyAddr, insecure.NewCredentials(), "", listenerRequest(f.Namespace, "checkout."+f.Namespace))
		})
		call(t, dialXDS(t, target, bs))
	})

	t.Run("the CA bundle reaches the namespace", func(t *testing.T) {
		eventually(t, time.Minute, "ConfigMap sluice-ca holds the CA", func(ctx context.Context) error {
			cm, err := env.Client().CoreV1().ConfigMaps(f.Namespace).Get(ctx, certs.CAConfigMapName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cm.Data[certs.SecretKeyCACert] != string(caPEM) {
				return fmt.Errorf("ca.crt differs from the CA that signs the serving certificate")
			}
			return nil
		})
	})
}

func manyNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("svc-%d.ns", i)
	}
	return out
}

// certBootstrap is the bootstrap of a client of the controller under test
// that proves itself with a client certificate.
func certBootstrap(t *testing.T, certPEM, keyPEM []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	for path, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bs, err := auth.Bootstrap{Server: sluice.XDSAddr, CAFile: sluice.CAFile, CertFile: certFile, KeyFile: keyFile,
		NodeID: "cert-client-" + filepath.Base(dir), Zone: "e2e"}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

// TestTrustXDSStreamsPerIdentity: one identity, proven by a real token
// verified by the API server, cannot hold more streams than the limit
// (xds/auth's tests show other identities are not affected).
func TestTrustXDSStreamsPerIdentity(t *testing.T) {
	ns := rolloutNamespace(t)
	creds, caFile := testServingCredentials(t)
	guard := testGuard(t, auth.GuardOptions{MaxStreamsPerIdentity: 2})
	g := grpc.NewServer(append(guard.ServerOptions(), grpc.Creds(creds))...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, echoADS{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(g.Stop)
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok := tokenOf(t, ns, auth.DefaultAudience)
	// Each stream is answered once and stays open, holding its slot.
	open := func() error {
		s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok))
		if err != nil {
			return err
		}
		// A Send refused because the server already ended the stream
		// returns io.EOF; the server's status is what Recv returns.
		if err := s.Send(listenerRequest(ns)); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		_, err = s.Recv()
		return err
	}
	for i := range 2 {
		if err := open(); err != nil {
			t.Fatalf("stream %d: %v", i+1, err)
		}
	}
	if err := open(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a third stream of one identity: %v, want ResourceExhausted", err)
	}
}

// echoADS answers every request with an empty response.
type echoADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
}

func (echoADS) StreamAggregatedResources(s discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	for {
		req, err := s.Recv()
		if err != nil {
			return err
		}
		if err := s.Send(&discoveryv3.DiscoveryResponse{TypeUrl: req.GetTypeUrl()}); err != nil {
			return err
		}
	}
}
