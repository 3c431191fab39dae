package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// Keys of the Secret that holds a [Bundle]. tls.crt and tls.key follow the
// kubernetes.io/tls convention, and ca.crt the cert-manager one, so the same
// Secret can be mounted by tools that expect either layout.
const (
	// SecretKeyCACert holds the trust bundle: the signing CA first, then any
	// previous CAs that have not expired yet.
	SecretKeyCACert = "ca.crt"
	// SecretKeyCAKey holds the private key of the signing CA (the first
	// certificate of ca.crt).
	SecretKeyCAKey = "ca.key"
	// SecretKeyCert holds the serving certificate.
	SecretKeyCert = corev1.TLSCertKey
	// SecretKeyKey holds the serving certificate's private key.
	SecretKeyKey = corev1.TLSPrivateKeyKey
)

// Bundle is the PEM-encoded content of the certificate Secret.
//
// CACert is the trust bundle that clients (kube-apiserver, through caBundle)
// must trust. Its first certificate is the signing CA, whose key is CAKey; any
// further certificates are earlier CAs kept until they expire, so clients that
// still hold a certificate chain from them keep verifying during a CA
// rotation. Cert and Key are the serving certificate and its key.
type Bundle struct {
	CACert []byte
	CAKey  []byte
	Cert   []byte
	Key    []byte
}

// Equal reports whether two bundles hold byte-identical PEM data.
func (b *Bundle) Equal(o *Bundle) bool {
	if b == nil || o == nil {
		return b == o
	}
	return bytes.Equal(b.CACert, o.CACert) && bytes.Equal(b.CAKey, o.CAKey) &&
		bytes.Equal(b.Cert, o.Cert) && bytes.Equal(b.Key, o.Key)
}

// SecretData returns the bundle as Secret data, keyed by the SecretKey*
// constants. The byte slices are copies.
func (b *Bundle) SecretData() map[string][]byte {
	return map[string][]byte{
		SecretKeyCACert: bytes.Clone(b.CACert),
		SecretKeyCAKey:  bytes.Clone(b.CAKey),
		SecretKeyCert:   bytes.Clone(b.Cert),
		SecretKeyKey:    bytes.Clone(b.Key),
	}
}

// BundleFromSecretData copies the bundle fields out of Secret data. It does
// not validate them: [Issue] decides what is usable and what must be
// re-issued, so garbage in the Secret is repaired rather than fatal.
func BundleFromSecretData(data map[string][]byte) *Bundle {
	return &Bundle{
		CACert: bytes.Clone(data[SecretKeyCACert]),
		CAKey:  bytes.Clone(data[SecretKeyCAKey]),
		Cert:   bytes.Clone(data[SecretKeyCert]),
		Key:    bytes.Clone(data[SecretKeyKey]),
	}
}

// ParseCertificates decodes every CERTIFICATE block of a PEM document, in
// order. It fails on an empty document, on any non-certificate block and on
// trailing bytes that are not PEM, so garbage never passes as "no
// certificates".
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", len(certs)+1, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after the last PEM block")
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

// parsePrivateKey decodes one PKCS#8 or SEC 1 ECDSA private key block.
func parsePrivateKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key found")
	}
	var key crypto.PrivateKey
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, want PRIVATE KEY or EC PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %T, want ECDSA", key)
	}
	return ec, nil
}

// encodeCertificates PEM-encodes certificates in the given order.
func encodeCertificates(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		// pem.Encode into a bytes.Buffer cannot fail.
		buf.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	return buf.Bytes()
}

// encodePrivateKey PEM-encodes an ECDSA key as PKCS#8.
func encodePrivateKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// publicKeyMatches reports whether key is the private half of cert's public
// key.
func publicKeyMatches(cert *x509.Certificate, key *ecdsa.PrivateKey) bool {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	return ok && pub.Equal(&key.PublicKey)
}
