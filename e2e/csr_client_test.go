package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sluice-dev/sluice/certs"
)

// csrRequesterRole lets ServiceAccounts request certificates.
const csrRequesterRole = "e2e-csr-requester"

// submitCSR creates, as ServiceAccount xds-client of namespace, a request
// to Sluice's client signer for a certificate naming commonName, and
// returns it and the new key (PEM).
func submitCSR(t *testing.T, namespace, commonName, name string) (*certificatesv1.CertificateSigningRequest, []byte) {
	t.Helper()
	ctx := context.Background()
	user := "system:serviceaccount:" + namespace + ":" + xdsClientAccount
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: csrRequesterRole}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"create", "get"},
	}}}
	if _, err := env.Client().RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: csrRequesterRole + "-" + namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: csrRequesterRole},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: namespace, Name: xdsClientAccount}},
	}
	if _, err := env.Client().RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Client().RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete binding: %v", err)
		}
	})
	if _, err := env.Client().CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: xdsClientAccount}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	cfg := env.RESTConfig()
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}}
	as, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: commonName}}, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certs.ClientSignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth, certificatesv1.UsageDigitalSignature},
		},
	}
	created, err := as.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create CSR as %s: %v", user, err)
	}
	t.Cleanup(func() {
		if err := env.Client().CertificatesV1().CertificateSigningRequests().Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete CSR: %v", err)
		}
	})
	return created, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// requestClientCertificate requests a certificate naming commonName as
// ServiceAccount xds-client of namespace and waits until it is issued.
func requestClientCertificate(t *testing.T, namespace, commonName, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	csr, key := submitCSR(t, namespace, commonName, name)
	got := waitCSR(t, csr.Name)
	if len(got.Status.Certificate) == 0 {
		t.Fatalf("CSR %s not issued: %+v", name, got.Status)
	}
	return got.Status.Certificate, key
}

// waitCSR waits until Sluice decided the request (issued or denied).
func waitCSR(t *testing.T, name string) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	var out *certificatesv1.CertificateSigningRequest
	eventually(t, time.Minute, "CSR "+name+" decided", func(ctx context.Context) error {
		got, err := env.Client().CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(got.Status.Certificate) == 0 && !csrDenied(got) {
			return errors.New("still pending")
		}
		out = got
		return nil
	})
	return out
}

func csrDenied(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateDenied {
			return true
		}
	}
	return false
}
