package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults used when an [IssueRequest] leaves a field zero.
const (
	DefaultCAName       = "sluice-webhook-ca"
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
	// backdate is subtracted from NotBefore so that peers whose clocks lag
	// a little still accept a freshly issued certificate.
	backdate = 5 * time.Minute
)

// IssueRequest describes the bundle that should exist.
type IssueRequest struct {
	// Existing is the bundle currently stored, nil if none. Parts of it
	// that are unusable (garbage, wrong key, expired) are re-issued.
	Existing *Bundle
	// DNSNames the serving certificate must carry, e.g.
	// "sluice-webhook.sluice-system.svc". At least one DNS name or IP is
	// required.
	DNSNames []string
	// IPAddresses the serving certificate must carry, e.g. 127.0.0.1 for
	// webhooks registered by URL on loopback.
	IPAddresses []net.IP
	// CommonName of the serving certificate; defaults to the first DNS
	// name, else the first IP. Clients verify SANs, not this.
	CommonName string
	// CAName prefixes the CA's common name; a creation timestamp is
	// appended so successive CAs are distinguishable. Default
	// [DefaultCAName].
	CAName string
	// CAValidity is the lifetime of a new CA. Default [DefaultCAValidity].
	CAValidity time.Duration
	// CertValidity is the lifetime of a new serving certificate, capped at
	// the signing CA's expiry. Default [DefaultCertValidity].
	CertValidity time.Duration
	// CALookahead is how long before its expiry the CA is replaced; zero
	// means the last third of its validity.
	CALookahead time.Duration
	// CertLookahead is how long before its expiry the serving certificate
	// is replaced; zero means the last third of its validity.
	CertLookahead time.Duration
}

// withDefaults validates the request and returns a copy with defaults
// filled in and name slices copied.
func (r IssueRequest) withDefaults() (IssueRequest, error) {
	var errs []error
	r.DNSNames = slices.Clone(r.DNSNames)
	r.IPAddresses = slices.Clone(r.IPAddresses)
	if len(r.DNSNames) == 0 && len(r.IPAddresses) == 0 {
		errs = append(errs, errors.New("at least one DNS name or IP address is required for the serving certificate"))
	}
	for i, n := range r.DNSNames {
		if msgs := validation.IsDNS1123Subdomain(strings.ToLower(n)); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("DNS name %d %q: %s", i, n, strings.Join(msgs, "; ")))
		}
	}
	for i, ip := range r.IPAddresses {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			errs = append(errs, fmt.Errorf("IP address %d is not a valid IPv4 or IPv6 address (length %d)", i, len(ip)))
		}
	}
	if r.CAName == "" {
		r.CAName = DefaultCAName
	}
	if r.CAValidity == 0 {
		r.CAValidity = DefaultCAValidity
	}
	if r.CertValidity == 0 {
		r.CertValidity = DefaultCertValidity
	}
	if r.CAValidity < 0 || r.CertValidity < 0 {
		errs = append(errs, fmt.Errorf("validity must be positive (CA %s, serving %s)", r.CAValidity, r.CertValidity))
	}
	if r.CertValidity > r.CAValidity {
		errs = append(errs, fmt.Errorf("serving certificate validity %s exceeds CA validity %s", r.CertValidity, r.CAValidity))
	}
	if r.CALookahead < 0 || r.CALookahead >= r.CAValidity {
		errs = append(errs, fmt.Errorf("CA lookahead %s must be at least 0 and less than the CA validity %s", r.CALookahead, r.CAValidity))
	}
	if r.CertLookahead < 0 || r.CertLookahead >= r.CertValidity {
		errs = append(errs, fmt.Errorf("serving lookahead %s must be at least 0 and less than the serving validity %s", r.CertLookahead, r.CertValidity))
	}
	if r.CommonName == "" {
		switch {
		case len(r.DNSNames) > 0:
			r.CommonName = r.DNSNames[0]
		case len(r.IPAddresses) > 0:
			r.CommonName = r.IPAddresses[0].String()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return r, fmt.Errorf("invalid certificate request: %w", err)
	}
	return r, nil
}

// existingState is what could be salvaged from a stored bundle.
type existingState struct {
	signer    *x509.Certificate
	signerKey *ecdsa.PrivateKey
	// cas are all CA certificates of the stored trust bundle, in stored
	// order, including the signer.
	cas []*x509.Certificate
	// caProblem is why the stored signer cannot sign, or "".
	caProblem string
}

// parseExisting salvages what it can from b; it never fails.
func parseExisting(b *Bundle) existingState {
	if b == nil || len(b.CACert) == 0 {
		return existingState{caProblem: "no CA"}
	}
	certs, err := ParseCertificates(b.CACert)
	if err != nil {
		return existingState{caProblem: "unparsable CA bundle: " + err.Error()}
	}
	st := existingState{}
	for _, c := range certs {
		if c.IsCA {
			st.cas = append(st.cas, c)
		}
	}
	if !certs[0].IsCA {
		st.caProblem = "first certificate of the CA bundle is not a CA"
		return st
	}
	key, err := parsePrivateKey(b.CAKey)
	if err != nil {
		st.caProblem = "unusable CA key: " + err.Error()
		return st
	}
	if !publicKeyMatches(certs[0], key) {
		st.caProblem = "CA key does not match the CA certificate"
		return st
	}
	st.signer, st.signerKey = certs[0], key
	return st
}

// Issue returns the bundle that should be stored at now: req.Existing
// unchanged (byte for byte) when it is still fit, otherwise a bundle with the
// CA and/or serving certificate re-issued.
//
// CA rotation is staged for zero failed handshakes: when the signing CA
// nears expiry, a new CA becomes the signer and the old one stays in the
// trust bundle until it expires; a serving certificate that must be
// re-issued in that same call is still signed by the old CA, which every
// client already trusts, so the new CA signs serving certificates only after
// it has been published. Garbage in req.Existing is never an error: it is
// replaced. Issue fails only on an invalid request or a crypto failure.
func Issue(req IssueRequest, now time.Time) (*Bundle, error) {
	req, err := req.withDefaults()
	if err != nil {
		return nil, err
	}
	st := parseExisting(req.Existing)
	caReason := st.caProblem
	if caReason == "" {
		caReason = timeProblem(st.signer, now, req.CALookahead)
	}

	signer, signerKey := st.signer, st.signerKey
	var stagedSigner *x509.Certificate
	var stagedKey *ecdsa.PrivateKey
	caKeyPEM := bundleField(req.Existing, func(b *Bundle) []byte { return b.CAKey })
	if caReason != "" {
		if st.signer != nil && canStage(st.signer, req, now) {
			stagedSigner, stagedKey = st.signer, st.signerKey
		}
		signer, signerKey, err = newCA(req, now)
		if err != nil {
			return nil, fmt.Errorf("issue CA: %w", err)
		}
		if caKeyPEM, err = encodePrivateKey(signerKey); err != nil {
			return nil, fmt.Errorf("issue CA: %w", err)
		}
	}

	trust := trustList(signer, st.cas, now)
	caPEM := bundleField(req.Existing, func(b *Bundle) []byte { return b.CACert })
	if !sameDER(trust, st.cas) {
		caPEM = encodeCertificates(trust...)
	}

	out := &Bundle{CACert: caPEM, CAKey: caKeyPEM}
	if servingProblem(req.Existing, trust, req, now) == "" {
		out.Cert, out.Key = bytes.Clone(req.Existing.Cert), bytes.Clone(req.Existing.Key)
		return out, nil
	}
	s, sk := signer, signerKey
	if stagedSigner != nil {
		s, sk = stagedSigner, stagedKey
	}
	if out.Cert, out.Key, err = newServing(req, s, sk, now); err != nil {
		return nil, fmt.Errorf("issue serving certificate: %w", err)
	}
	return out, nil
}

// canStage reports whether the outgoing CA can still sign a serving
// certificate at now that would not itself be due at once (its validity is
// capped at the CA's expiry).
func canStage(ca *x509.Certificate, req IssueRequest, now time.Time) bool {
	if !now.After(ca.NotBefore) {
		return false
	}
	notBefore, notAfter := now.Add(-backdate), minTime(now.Add(req.CertValidity), ca.NotAfter)
	lookahead := req.CertLookahead
	if lookahead <= 0 {
		lookahead = notAfter.Sub(notBefore) / 3
	}
	return now.Before(notAfter.Add(-lookahead))
}

// bundleField returns a copy of one field of b, nil when b is nil.
func bundleField(b *Bundle, field func(*Bundle) []byte) []byte {
	if b == nil {
		return nil
	}
	return bytes.Clone(field(b))
}

// trustList is the signer followed by every other stored CA that has not
// expired at now, newest expiry first, without duplicates. The order is
// fixed so an unchanged trust set encodes to the same bytes.
func trustList(signer *x509.Certificate, stored []*x509.Certificate, now time.Time) []*x509.Certificate {
	var rest []*x509.Certificate
	for _, c := range stored {
		if !now.Before(c.NotAfter) || c.Equal(signer) ||
			slices.ContainsFunc(rest, c.Equal) {
			continue
		}
		rest = append(rest, c)
	}
	slices.SortStableFunc(rest, func(a, b *x509.Certificate) int {
		if c := b.NotAfter.Compare(a.NotAfter); c != 0 {
			return c
		}
		return a.SerialNumber.Cmp(b.SerialNumber)
	})
	return append([]*x509.Certificate{signer}, rest...)
}

// sameDER reports whether two certificate lists are identical in order.
func sameDER(a, b []*x509.Certificate) bool {
	return slices.EqualFunc(a, b, func(x, y *x509.Certificate) bool { return x.Equal(y) })
}

// newCA creates a self-signed ECDSA P-256 CA valid for req.CAValidity.
func newCA(req IssueRequest, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("%s@%d", req.CAName, now.Unix())},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(req.CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	return cert, key, nil
}

// newServing creates a serving certificate for req's names signed by ca,
// valid for req.CertValidity but never beyond the CA's own expiry.
func newServing(req IssueRequest, ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.CommonName},
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPAddresses,
		NotBefore:    now.Add(-backdate),
		NotAfter:     minTime(now.Add(req.CertValidity), ca.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// ClientAuth too: replicas present the same certificate to each
		// other as clients.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign serving certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse new serving certificate: %w", err)
	}
	keyPEM, err = encodePrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCertificates(cert), keyPEM, nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

// minTime returns the earlier of two times.
func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// ServiceDNSNames returns the names a webhook Service is reached by from
// inside the cluster: <service>.<namespace>.svc, which kube-apiserver uses,
// and the fully qualified <service>.<namespace>.svc.cluster.local.
func ServiceDNSNames(service, namespace string) []string {
	base := service + "." + namespace + ".svc"
	return []string{base, base + ".cluster.local"}
}
