package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/e2e/testkit"
	"github.com/sluice-dev/sluice/xds/auth"

	// grpc-go's xDS client sends the bootstrap's token only with this.
	_ "github.com/sluice-dev/sluice/xds/auth/callcreds"
)

// xdsClientAccount is the ServiceAccount e2e xDS clients prove, in the
// namespace of the service they call.
const xdsClientAccount = "xds-client"

// clientToken mints a token of ServiceAccount namespace/name for audience
// and writes it to a file of t's, returning the path.
func clientToken(t testing.TB, namespace, name, audience string) string {
	t.Helper()
	return testkit.ClientToken(t, env.Client(), namespace, name, audience)
}

// authBootstrap is the bootstrap of an xDS client of server that proves
// ServiceAccount xds-client of namespace with a token over TLS.
func authBootstrap(t testing.TB, server, caFile, namespace, node string) []byte {
	t.Helper()
	b, err := auth.Bootstrap{
		Server:    server,
		CAFile:    caFile,
		TokenFile: clientToken(t, namespace, xdsClientAccount, auth.DefaultAudience),
		NodeID:    node,
		Zone:      "e2e",
	}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// targetNamespace is the namespace of an xDS target xds:///<service>.<namespace>.
func targetNamespace(t testing.TB, target string) string {
	t.Helper()
	host := strings.TrimPrefix(target, "xds:///")
	_, ns, ok := strings.Cut(host, ".")
	if !ok || ns == "" {
		t.Fatalf("xDS target %q names no namespace", target)
	}
	return ns
}

// dialXDS returns a connection of grpc-go's own xDS client to target,
// configured by bootstrap.
func dialXDS(t testing.TB, target string, bootstrap []byte) *grpc.ClientConn {
	t.Helper()
	return testkit.DialTarget(t, bootstrap, target)
}

// testServingCredentials issues a CA and a serving certificate for
// 127.0.0.1, and returns TLS server credentials with it and the path of a
// file holding the CA.
func testServingCredentials(t testing.TB) (credentials.TransportCredentials, string) {
	t.Helper()
	b, err := certs.Issue(certs.IssueRequest{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.CACert) {
		t.Fatal("CA bundle holds no certificate")
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, b.CACert, 0o644); err != nil {
		t.Fatal(err)
	}
	get := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &pair, nil }
	return auth.ServerCredentials(get, func() *x509.CertPool { return pool }), caFile
}

// testGuard returns a guard verifying tokens with the shared cluster's
// TokenReview API, as the controller does.
func testGuard(t testing.TB, opts auth.GuardOptions) *auth.Guard {
	t.Helper()
	tokens, err := auth.NewTokenVerifier(auth.TokenOptions{Reviews: env.Client().AuthenticationV1().TokenReviews()})
	if err != nil {
		t.Fatal(err)
	}
	opts.Tokens = tokens
	g, err := auth.NewGuard(opts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}
