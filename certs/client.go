package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"
)

// DefaultClientCertValidity is the lifetime of a client certificate: short,
// since nothing revokes it.
const DefaultClientCertValidity = 24 * time.Hour

// SignClient signs a client certificate (ExtKeyUsage ClientAuth only) for
// the public key and subject of template with the signing CA of b, valid
// from now for validity but never beyond the CA's expiry. Only the
// subject's CommonName and the key are taken from template.
func SignClient(b *Bundle, template *x509.Certificate, now time.Time, validity time.Duration) ([]byte, error) {
	st := parseExisting(b)
	if st.caProblem != "" {
		return nil, fmt.Errorf("sign client certificate: %s", st.caProblem)
	}
	if template.PublicKey == nil || template.Subject.CommonName == "" {
		return nil, errors.New("sign client certificate: a public key and a common name are required")
	}
	if validity <= 0 {
		validity = DefaultClientCertValidity
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: template.Subject.CommonName},
		NotBefore:    now.Add(-backdate),
		NotAfter:     minTime(now.Add(validity), st.signer.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, st.signer, template.PublicKey, st.signerKey)
	if err != nil {
		return nil, fmt.Errorf("sign client certificate: %w", err)
	}
	return encodeCertificates(&x509.Certificate{Raw: der}), nil
}

// IssueClient creates a key and a client certificate for commonName signed
// by the signing CA of b, returning both as PEM.
func IssueClient(b *Bundle, commonName string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	certPEM, err = SignClient(b, &x509.Certificate{PublicKey: &key.PublicKey, Subject: pkix.Name{CommonName: commonName}}, now, validity)
	if err != nil {
		return nil, nil, err
	}
	if keyPEM, err = encodePrivateKey(key); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}
