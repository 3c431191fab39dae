package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// NeedsRotation reports whether the first certificate in certPEM must be
// replaced at now, and why.
//
// A certificate needs rotation when it is expired, not valid yet, or within
// lookahead of its NotAfter. A lookahead of zero or less means the last third
// of the certificate's own validity. When certPEM cannot be parsed it returns
// true, a reason, and the parse error, so a caller that only wants a decision
// can use the boolean alone.
//
// NeedsRotation looks at time only; [Assess] also checks names, key and
// issuer of a serving certificate.
func NeedsRotation(certPEM []byte, now time.Time, lookahead time.Duration) (bool, string, error) {
	certs, err := ParseCertificates(certPEM)
	if err != nil {
		return true, "unparsable certificate: " + err.Error(), fmt.Errorf("parse certificate: %w", err)
	}
	if reason := timeProblem(certs[0], now, lookahead); reason != "" {
		return true, reason, nil
	}
	return false, "", nil
}

// timeProblem returns why c is not fit to keep at now, or "".
func timeProblem(c *x509.Certificate, now time.Time, lookahead time.Duration) string {
	if now.Before(c.NotBefore) {
		return fmt.Sprintf("not valid before %s", c.NotBefore.UTC().Format(time.RFC3339))
	}
	if !now.Before(c.NotAfter) {
		return fmt.Sprintf("expired at %s", c.NotAfter.UTC().Format(time.RFC3339))
	}
	if lookahead <= 0 {
		lookahead = c.NotAfter.Sub(c.NotBefore) / 3
	}
	if renewAt := c.NotAfter.Add(-lookahead); !now.Before(renewAt) {
		return fmt.Sprintf("expires at %s, within the rotation lookahead of %s",
			c.NotAfter.UTC().Format(time.RFC3339), lookahead)
	}
	return ""
}

// Assessment says which parts of a bundle must be re-issued and why. An empty
// reason means that part is fit to keep.
type Assessment struct {
	// CA is why the signing CA must be replaced.
	CA string
	// Trust is why the trust bundle must be rewritten although the signing
	// CA is fit: it holds expired or duplicate CAs, or is out of order.
	Trust string
	// Serving is why the serving certificate must be replaced.
	Serving string
}

// OK reports whether nothing needs rewriting.
func (a Assessment) OK() bool { return a.CA == "" && a.Trust == "" && a.Serving == "" }

// Assess checks req.Existing against the request at now without issuing
// anything. [Issue] acts on exactly these findings.
func Assess(req IssueRequest, now time.Time) (Assessment, error) {
	req, err := req.withDefaults()
	if err != nil {
		return Assessment{}, err
	}
	st := parseExisting(req.Existing)
	a := Assessment{CA: st.caProblem}
	if a.CA == "" {
		a.CA = timeProblem(st.signer, now, req.CALookahead)
	}
	if a.CA == "" && !sameDER(trustList(st.signer, st.cas, now), st.cas) {
		a.Trust = "trust bundle holds expired, duplicate or misordered CAs"
	}
	a.Serving = servingProblem(req.Existing, st.cas, req, now)
	return a, nil
}

// servingProblem returns why the serving certificate of b cannot be kept
// given the trusted CAs, or "".
func servingProblem(b *Bundle, trust []*x509.Certificate, req IssueRequest, now time.Time) string {
	if b == nil || len(b.Cert) == 0 {
		return "no serving certificate"
	}
	certs, err := ParseCertificates(b.Cert)
	if err != nil {
		return "unparsable serving certificate: " + err.Error()
	}
	leaf := certs[0]
	if _, err := tls.X509KeyPair(b.Cert, b.Key); err != nil {
		return "serving key unusable: " + err.Error()
	}
	if reason := timeProblem(leaf, now, req.CertLookahead); reason != "" {
		return "serving certificate " + reason
	}
	if !sameNames(leaf.DNSNames, req.DNSNames) || !sameIPs(leaf.IPAddresses, req.IPAddresses) {
		return fmt.Sprintf("serving certificate names %v %v differ from wanted %v %v",
			leaf.DNSNames, leaf.IPAddresses, req.DNSNames, req.IPAddresses)
	}
	if len(trust) == 0 {
		return "no usable CA to verify the serving certificate against"
	}
	pool := x509.NewCertPool()
	for _, ca := range trust {
		pool.AddCert(ca)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return "serving certificate not signed by a current CA: " + err.Error()
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return "serving certificate cannot authenticate a client (replicas present it to each other)"
	}
	return ""
}

// sameNames compares DNS names as case-insensitive sets.
func sameNames(have, want []string) bool {
	norm := func(in []string) []string {
		out := make([]string, len(in))
		for i, n := range in {
			out[i] = strings.ToLower(n)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(have), norm(want))
}

// sameIPs compares IP addresses as sets, treating IPv4 and IPv4-in-IPv6 forms
// alike.
func sameIPs(have, want []net.IP) bool {
	norm := func(in []net.IP) []string {
		out := make([]string, len(in))
		for i, ip := range in {
			out[i] = ip.String()
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(have), norm(want))
}
