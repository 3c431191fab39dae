package certs

import (
	"testing"
	"time"
)

// FuzzIssueRepairsAnySecret feeds arbitrary Secret content to Issue: it must
// never panic or fail, and must always return a fit bundle.
func FuzzIssueRepairsAnySecret(f *testing.F) {
	good, err := Issue(testRequest(nil), t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.CACert, good.CAKey, good.Cert, good.Key)
	f.Add([]byte("garbage"), []byte{}, good.Cert, good.Key)
	f.Add(good.CACert, good.Key, good.Cert, good.CAKey)
	f.Add(good.Cert, good.Key, good.CACert, good.CAKey)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, caCert, caKey, cert, key []byte) {
		req := testRequest(&Bundle{CACert: caCert, CAKey: caKey, Cert: cert, Key: key})
		b, err := Issue(req, t0)
		if err != nil {
			t.Fatalf("Issue failed on garbage instead of repairing it: %v", err)
		}
		req.Existing = b
		if a, err := Assess(req, t0); err != nil || !a.OK() {
			t.Fatalf("repaired bundle not fit: %+v %v", a, err)
		}
	})
}

// FuzzNeedsRotation checks that unparsable input is reported, never a
// panic, and that "no rotation" always comes with a parsable certificate.
func FuzzNeedsRotation(f *testing.F) {
	good, err := Issue(testRequest(nil), t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good.Cert, int64(0))
	f.Add(good.CACert, int64(time.Hour))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), int64(-1))
	f.Fuzz(func(t *testing.T, data []byte, lookahead int64) {
		rotate, reason, err := NeedsRotation(data, t0, time.Duration(lookahead))
		if err != nil && (!rotate || reason == "") {
			t.Fatalf("error %v without a rotation and reason", err)
		}
		if !rotate {
			if _, perr := ParseCertificates(data); perr != nil {
				t.Fatalf("no rotation for unparsable input: %v", perr)
			}
		}
	})
}
