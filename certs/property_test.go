package certs

import (
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestIssueNeverStrandsClients checks the invariant behind zero failed
// admissions across any sequence of checks: whenever the CA that clients
// already trust is still valid, the serving certificate Issue returns
// verifies against the previous trust bundle (the caBundle clients hold
// until the new one is injected), every still-valid CA stays in the bundle,
// and the result is fit and stable.
func TestIssueNeverStrandsClients(t *testing.T) {
	day := 24 * time.Hour
	rapid.Check(t, func(rt *rapid.T) {
		req := IssueRequest{DNSNames: testNames, IPAddresses: loopback, CAValidity: 90 * day, CertValidity: 30 * day}
		now := t0
		b, err := Issue(req, now)
		if err != nil {
			rt.Fatal(err)
		}
		steps := rapid.IntRange(1, 12).Draw(rt, "steps")
		for i := range steps {
			now = now.Add(time.Duration(rapid.Int64Range(int64(time.Minute), int64(40*day)).Draw(rt, fmt.Sprintf("step%d", i))))
			prevCAs, err := ParseCertificates(b.CACert)
			if err != nil {
				rt.Fatal(err)
			}
			req.Existing = b
			next, err := Issue(req, now)
			if err != nil {
				rt.Fatal(err)
			}
			a, err := Assess(IssueRequest{Existing: next, DNSNames: req.DNSNames, IPAddresses: req.IPAddresses,
				CAValidity: req.CAValidity, CertValidity: req.CertValidity}, now)
			if err != nil || !a.OK() {
				rt.Fatalf("step %d at %s: issued bundle not fit: %+v %v", i, now, a, err)
			}
			nextCAs, err := ParseCertificates(next.CACert)
			if err != nil {
				rt.Fatal(err)
			}
			prevPool := x509.NewCertPool()
			prevValid := false
			for _, ca := range prevCAs {
				prevPool.AddCert(ca)
				if now.Before(ca.NotAfter) {
					prevValid = true
					if !containsCert(nextCAs, ca) {
						rt.Fatalf("step %d: still-valid CA %s dropped from the bundle", i, ca.Subject.CommonName)
					}
				}
			}
			leaf, err := ParseCertificates(next.Cert)
			if err != nil {
				rt.Fatal(err)
			}
			if prevValid {
				if _, err := leaf[0].Verify(x509.VerifyOptions{Roots: prevPool, CurrentTime: now, DNSName: testNames[0]}); err != nil {
					rt.Fatalf("step %d at %s: a client holding the previous caBundle rejects the new serving certificate: %v", i, now, err)
				}
			}
			if again, err := Issue(IssueRequest{Existing: next, DNSNames: req.DNSNames, IPAddresses: req.IPAddresses,
				CAValidity: req.CAValidity, CertValidity: req.CertValidity}, now); err != nil || !again.Equal(next) {
				rt.Fatalf("step %d: Issue is not stable on its own output (%v)", i, err)
			}
			b = next
		}
	})
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range certs {
		if x.Equal(c) {
			return true
		}
	}
	return false
}
