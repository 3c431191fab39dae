package certs

import (
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

var (
	t0        = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	year      = 365 * 24 * time.Hour
	testNames = []string{"sluice-webhook.sluice-system.svc", "sluice-webhook.sluice-system.svc.cluster.local"}
	loopback  = []net.IP{net.ParseIP("127.0.0.1")}
)

func testRequest(existing *Bundle) IssueRequest {
	return IssueRequest{Existing: existing, DNSNames: testNames, IPAddresses: loopback}
}

func mustIssue(t *testing.T, req IssueRequest, now time.Time) *Bundle {
	t.Helper()
	b, err := Issue(req, now)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return b
}

func mustCerts(t *testing.T, pemData []byte) []*x509.Certificate {
	t.Helper()
	certs, err := ParseCertificates(pemData)
	if err != nil {
		t.Fatalf("ParseCertificates: %v", err)
	}
	return certs
}

// verifyServing checks that a client trusting b.CACert accepts b's serving
// certificate for every wanted name at now, and returns the CA that signed it.
func verifyServing(t *testing.T, b *Bundle, now time.Time) *x509.Certificate {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.CACert) {
		t.Fatal("CA bundle holds no certificate")
	}
	leaf := mustCerts(t, b.Cert)[0]
	var chains [][]*x509.Certificate
	for _, name := range append(append([]string{}, testNames...), "127.0.0.1") {
		var err error
		chains, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, CurrentTime: now})
		if err != nil {
			t.Fatalf("serving certificate does not verify for %q at %s: %v", name, now, err)
		}
	}
	a, err := Assess(testRequest(b), now)
	if err != nil || !a.OK() {
		t.Fatalf("Assess of an issued bundle = %+v, %v; want OK", a, err)
	}
	return chains[0][len(chains[0])-1]
}

func TestIssueFresh(t *testing.T) {
	b := mustIssue(t, testRequest(nil), t0)
	cas := mustCerts(t, b.CACert)
	if len(cas) != 1 || !cas[0].IsCA {
		t.Fatalf("fresh bundle has %d CA certificates, want 1 CA", len(cas))
	}
	if got, want := cas[0].NotAfter, t0.Add(DefaultCAValidity); !got.Equal(want.Truncate(time.Second)) {
		t.Errorf("CA NotAfter = %s, want %s", got, want)
	}
	leaf := mustCerts(t, b.Cert)[0]
	if got, want := leaf.NotAfter, t0.Add(DefaultCertValidity); !got.Equal(want) {
		t.Errorf("serving NotAfter = %s, want %s", got, want)
	}
	if !strings.HasPrefix(cas[0].Subject.CommonName, DefaultCAName+"@") {
		t.Errorf("CA common name = %q", cas[0].Subject.CommonName)
	}
	if signer := verifyServing(t, b, t0); !signer.Equal(cas[0]) {
		t.Error("serving certificate not signed by the bundle's CA")
	}
}

func TestIssueKeepsOrRenews(t *testing.T) {
	base := mustIssue(t, testRequest(nil), t0)
	other := mustIssue(t, testRequest(nil), t0)
	tests := map[string]struct {
		existing    *Bundle
		mutate      func(*IssueRequest)
		now         time.Time
		wantCA      bool // CA (and trust bundle) replaced
		wantServing bool // serving certificate replaced
	}{
		"fit bundle is kept byte for byte": {existing: base, now: t0.Add(30 * 24 * time.Hour)},
		"serving in its last third": {
			existing: base, now: t0.Add(9 * 30 * 24 * time.Hour), wantServing: true,
		},
		"serving custom lookahead not reached": {
			existing: base, now: t0.Add(9 * 30 * 24 * time.Hour),
			mutate: func(r *IssueRequest) { r.CertLookahead = 30 * 24 * time.Hour },
		},
		"serving expired": {existing: base, now: t0.Add(2 * year), wantServing: true},
		"DNS name added": {
			existing: base, now: t0, wantServing: true,
			mutate: func(r *IssueRequest) { r.DNSNames = append(r.DNSNames, "sluice.example.com") },
		},
		"DNS name case differs only": {
			existing: base, now: t0,
			mutate: func(r *IssueRequest) { r.DNSNames = []string{strings.ToUpper(testNames[0]), testNames[1]} },
		},
		"IP removed": {
			existing: base, now: t0, wantServing: true,
			mutate: func(r *IssueRequest) { r.IPAddresses = nil },
		},
		"serving signed by a foreign CA": {
			existing: &Bundle{CACert: base.CACert, CAKey: base.CAKey, Cert: other.Cert, Key: other.Key},
			now:      t0, wantServing: true,
		},
		"serving key does not match": {
			existing: &Bundle{CACert: base.CACert, CAKey: base.CAKey, Cert: base.Cert, Key: other.Key},
			now:      t0, wantServing: true,
		},
		"garbage serving certificate": {
			existing: &Bundle{CACert: base.CACert, CAKey: base.CAKey, Cert: []byte("garbage"), Key: base.Key},
			now:      t0, wantServing: true,
		},
		"garbage CA bundle": {
			existing: &Bundle{CACert: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), CAKey: base.CAKey, Cert: base.Cert, Key: base.Key},
			now:      t0, wantCA: true, wantServing: true,
		},
		"garbage CA key keeps serving signed by the still-trusted old CA": {
			existing: &Bundle{CACert: base.CACert, CAKey: []byte{0, 1, 2}, Cert: base.Cert, Key: base.Key},
			now:      t0, wantCA: true,
		},
		"CA key of another CA": {
			existing: &Bundle{CACert: base.CACert, CAKey: other.CAKey, Cert: base.Cert, Key: base.Key},
			now:      t0, wantCA: true,
		},
		"CA bundle whose first certificate is a leaf": {
			existing: &Bundle{CACert: base.Cert, CAKey: base.Key, Cert: base.Cert, Key: base.Key},
			now:      t0, wantCA: true, wantServing: true,
		},
		"empty secret": {existing: &Bundle{}, now: t0, wantCA: true, wantServing: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req := testRequest(tc.existing)
			if tc.mutate != nil {
				tc.mutate(&req)
			}
			got := mustIssue(t, req, tc.now)
			if caChanged := string(got.CACert) != string(tc.existing.CACert); caChanged != tc.wantCA {
				t.Errorf("CA bundle replaced = %v, want %v", caChanged, tc.wantCA)
			}
			if servingChanged := string(got.Cert) != string(tc.existing.Cert); servingChanged != tc.wantServing {
				t.Errorf("serving certificate replaced = %v, want %v", servingChanged, tc.wantServing)
			}
			if !tc.wantCA && !tc.wantServing && !got.Equal(tc.existing) {
				t.Error("fit bundle was not returned byte for byte")
			}
			a, err := Assess(req, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if (a.CA != "" || a.Trust != "") != tc.wantCA || (a.Serving != "") != tc.wantServing {
				t.Errorf("Assess = %+v disagrees with what Issue did", a)
			}
			req.Existing = got
			again, err := Assess(req, tc.now)
			if err != nil || !again.OK() {
				t.Errorf("issued bundle is not fit: %+v, %v", again, err)
			}
		})
	}
}

// TestIssueCARotation walks one CA through its life: the new CA joins the
// trust bundle before it signs anything, the old CA keeps verifying the
// serving certificate it signed, and leaves the bundle when it expires.
func TestIssueCARotation(t *testing.T) {
	b0 := mustIssue(t, testRequest(nil), t0)
	oldCA := mustCerts(t, b0.CACert)[0]

	// 6.5 years on: the serving certificate has been renewed by the old CA.
	t1 := t0.Add(6*year + year/2)
	b1 := mustIssue(t, testRequest(b0), t1)
	if string(b1.CACert) != string(b0.CACert) {
		t.Fatal("CA replaced before its last third")
	}
	verifyServing(t, b1, t1)

	// 6.7 years: the CA enters its last third; the serving cert is fit.
	t2 := t0.Add(6*year + 7*year/10)
	b2 := mustIssue(t, testRequest(b1), t2)
	cas := mustCerts(t, b2.CACert)
	if len(cas) != 2 || cas[0].Equal(oldCA) || !cas[1].Equal(oldCA) {
		t.Fatalf("after CA rotation the bundle holds %d CAs; want [new, old]", len(cas))
	}
	if string(b2.Cert) != string(b1.Cert) {
		t.Error("serving certificate replaced together with the CA")
	}
	if signer := verifyServing(t, b2, t2); !signer.Equal(oldCA) {
		t.Error("serving certificate should still chain to the old CA")
	}
	if b := mustIssue(t, testRequest(b2), t2.Add(time.Minute)); !b.Equal(b2) {
		t.Error("rotated bundle is not stable")
	}

	// 7.3 years: the serving certificate renews, now under the new CA.
	t3 := t0.Add(7*year + 3*year/10)
	b3 := mustIssue(t, testRequest(b2), t3)
	if string(b3.CACert) != string(b2.CACert) {
		t.Error("trust bundle changed while both CAs are valid")
	}
	if signer := verifyServing(t, b3, t3); !signer.Equal(cas[0]) {
		t.Error("renewed serving certificate should chain to the new CA")
	}

	// Past the old CA's expiry it leaves the bundle.
	t4 := oldCA.NotAfter.Add(time.Hour)
	if a, err := Assess(testRequest(b3), t4); err != nil || a.Trust == "" || a.CA != "" {
		t.Errorf("Assess with an expired old CA = %+v, %v; want a trust bundle rewrite", a, err)
	}
	b4 := mustIssue(t, testRequest(b3), t4)
	if got := mustCerts(t, b4.CACert); len(got) != 1 || !got[0].Equal(cas[0]) {
		t.Errorf("after the old CA expired the bundle holds %d CAs, want only the new one", len(got))
	}
	verifyServing(t, b4, t4)
}

// TestIssueCARotationStagesServing covers a CA and serving certificate due
// in the same call: the new serving certificate is signed by the old CA,
// which clients already trust.
func TestIssueCARotationStagesServing(t *testing.T) {
	b0 := mustIssue(t, testRequest(nil), t0)
	oldCA := mustCerts(t, b0.CACert)[0]
	now := t0.Add(7 * year)
	b1 := mustIssue(t, testRequest(b0), now)
	if len(mustCerts(t, b1.CACert)) != 2 {
		t.Fatal("CA not rotated")
	}
	if string(b1.Cert) == string(b0.Cert) {
		t.Fatal("expired serving certificate kept")
	}
	signer := verifyServing(t, b1, now)
	if !signer.Equal(oldCA) {
		t.Error("serving certificate issued during CA rotation must chain to the old CA")
	}
	if leaf := mustCerts(t, b1.Cert)[0]; leaf.NotAfter.After(oldCA.NotAfter) {
		t.Errorf("serving NotAfter %s outlives its CA %s", leaf.NotAfter, oldCA.NotAfter)
	}
}

// TestIssueCARotationAtTheLastMinute covers an outgoing CA too close to
// expiry to sign a usable serving certificate: the new CA signs it, and the
// bundle is fit rather than due again at once.
func TestIssueCARotationAtTheLastMinute(t *testing.T) {
	b0 := mustIssue(t, testRequest(nil), t0)
	oldCA := mustCerts(t, b0.CACert)[0]
	now := oldCA.NotAfter.Add(-time.Minute)
	b1 := mustIssue(t, testRequest(b0), now)
	cas := mustCerts(t, b1.CACert)
	if len(cas) != 2 {
		t.Fatalf("bundle holds %d CAs, want new and old", len(cas))
	}
	if signer := verifyServing(t, b1, now); !signer.Equal(cas[0]) {
		t.Error("serving certificate should chain to the new CA when the old one is about to expire")
	}
}

func TestIssueRejectsBadRequests(t *testing.T) {
	tests := map[string]struct {
		req  IssueRequest
		want string
	}{
		"no names":            {req: IssueRequest{}, want: "at least one DNS name or IP"},
		"bad DNS name":        {req: IssueRequest{DNSNames: []string{"bad_name.svc"}}, want: `DNS name 0 "bad_name.svc"`},
		"empty DNS name":      {req: IssueRequest{DNSNames: []string{""}}, want: `DNS name 0 ""`},
		"bad IP":              {req: IssueRequest{IPAddresses: []net.IP{{1, 2}}}, want: "IP address 0"},
		"serving outlives CA": {req: IssueRequest{DNSNames: testNames, CAValidity: year, CertValidity: 2 * year}, want: "exceeds CA validity"},
		"negative validity":   {req: IssueRequest{DNSNames: testNames, CertValidity: -time.Hour}, want: "must be positive"},
		"lookahead too long":  {req: IssueRequest{DNSNames: testNames, CertLookahead: 2 * year}, want: "serving lookahead"},
		"negative lookahead":  {req: IssueRequest{DNSNames: testNames, CALookahead: -1}, want: "CA lookahead"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Issue(tc.req, t0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Issue error = %v, want one containing %q", err, tc.want)
			}
			if _, err := Assess(tc.req, t0); err == nil {
				t.Error("Assess accepted an invalid request")
			}
		})
	}
}

func TestNeedsRotation(t *testing.T) {
	b := mustIssue(t, IssueRequest{DNSNames: testNames, CertValidity: 90 * 24 * time.Hour}, t0)
	day := 24 * time.Hour
	tests := map[string]struct {
		cert       []byte
		now        time.Time
		lookahead  time.Duration
		want       bool
		wantReason string
		wantErr    bool
	}{
		"fresh":                        {cert: b.Cert, now: t0},
		"before default last third":    {cert: b.Cert, now: t0.Add(59 * day)},
		"in default last third":        {cert: b.Cert, now: t0.Add(61 * day), want: true, wantReason: "within the rotation lookahead"},
		"custom lookahead not reached": {cert: b.Cert, now: t0.Add(61 * day), lookahead: 10 * day},
		"custom lookahead reached":     {cert: b.Cert, now: t0.Add(81 * day), lookahead: 10 * day, want: true, wantReason: "lookahead of 240h0m0s"},
		"expired":                      {cert: b.Cert, now: t0.Add(91 * day), want: true, wantReason: "expired at"},
		"not yet valid":                {cert: b.Cert, now: t0.Add(-time.Hour), want: true, wantReason: "not valid before"},
		"CA uses its own validity":     {cert: b.CACert, now: t0.Add(6 * year), want: false},
		"garbage":                      {cert: []byte("not a certificate"), now: t0, want: true, wantReason: "unparsable", wantErr: true},
		"empty":                        {cert: nil, now: t0, want: true, wantReason: "unparsable", wantErr: true},
		"private key instead":          {cert: b.Key, now: t0, want: true, wantReason: "want CERTIFICATE", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, reason, err := NeedsRotation(tc.cert, tc.now, tc.lookahead)
			if got != tc.want || (err != nil) != tc.wantErr || !strings.Contains(reason, tc.wantReason) {
				t.Fatalf("NeedsRotation = %v, %q, %v; want %v, reason containing %q, error %v",
					got, reason, err, tc.want, tc.wantReason, tc.wantErr)
			}
			if !got && reason != "" {
				t.Errorf("reason %q given without rotation", reason)
			}
		})
	}
}
