package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// csrPEM is a certificate request for commonName, with ips as SANs.
func csrPEM(t *testing.T, commonName string, ips ...net.IP) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: commonName}, IPAddresses: ips}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestClientSignerSignsOnlyAServiceAccountForItself(t *testing.T) {
	b, err := Issue(IssueRequest{DNSNames: []string{"sluice-xds.sluice-system.svc"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "sluice-system", Name: "tls"}, Data: b.SecretData()}
	const sa = "system:serviceaccount:shop:web"
	csr := func(name, user string, request []byte) *certificatesv1.CertificateSigningRequest {
		return &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: certificatesv1.CertificateSigningRequestSpec{
				SignerName: ClientSignerName, Username: user, Request: request,
				Usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth},
			},
		}
	}
	cs := fake.NewClientset(secret,
		csr("good", sa, csrPEM(t, sa)),
		csr("other-name", sa, csrPEM(t, "system:serviceaccount:bank:teller")),
		csr("a-user", "alice", csrPEM(t, "alice")),
		csr("with-ip", sa, csrPEM(t, sa, net.IPv4(10, 0, 0, 1))),
	)
	s, err := NewClientSigner(cs, ClientSignerOptions{Namespace: "sluice-system", SecretName: "tls", Validity: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	decided := func(name string) *certificatesv1.CertificateSigningRequest {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !isPending(got) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("csr %s not decided: %+v", name, got.Status)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	good := decided("good")
	certs, err := ParseCertificates(good.Status.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CACert)
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued certificate does not verify as a client certificate: %v", err)
	}
	if cn, life := certs[0].Subject.CommonName, certs[0].NotAfter.Sub(certs[0].NotBefore); cn != sa || life > 2*time.Hour+backdate {
		t.Fatalf("issued %q valid for %s", cn, life)
	}
	for _, name := range []string{"other-name", "a-user", "with-ip"} {
		got := decided(name)
		if len(got.Status.Certificate) > 0 || len(got.Status.Conditions) != 1 || got.Status.Conditions[0].Type != certificatesv1.CertificateDenied {
			t.Errorf("csr %s: %+v, want denied without a certificate", name, got.Status)
		} else {
			t.Logf("csr %s denied: %s", name, got.Status.Conditions[0].Message)
		}
	}
}
