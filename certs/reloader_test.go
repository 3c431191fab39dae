package certs

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// servedSerial returns the serial of the certificate GetCertificate hands
// out, or "" with the reason.
func servedSerial(r *Reloader) (string, string) {
	c, err := r.GetCertificate(nil)
	if err != nil {
		return "", err.Error()
	}
	return c.Leaf.SerialNumber.String(), ""
}

func serialOf(t *testing.T, certPEM []byte) string {
	t.Helper()
	return mustCerts(t, certPEM)[0].SerialNumber.String()
}

// expiryGauge returns the value of sluice_cert_expiry_timestamp_seconds for
// the given cert label.
func expiryGauge(t *testing.T, reg *prometheus.Registry, label string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != ExpiryMetricName {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cert" && l.GetValue() == label {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

func putSecret(t *testing.T, cs *fake.Clientset, data map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	api := cs.CoreV1().Secrets(testNS)
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: testSecret, Namespace: testNS}, Data: data}
	if _, err := api.Update(ctx, sec, metav1.UpdateOptions{}); err == nil {
		return
	}
	if _, err := api.Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestReloaderFromSecret(t *testing.T) {
	cs := fake.NewClientset()
	watches := recordWatches(cs)
	reg := prometheus.NewRegistry()
	logs := &logSink{}
	r, err := NewReloader(cs, ReloaderOptions{
		Namespace: testNS, SecretName: testSecret, Registerer: reg, Logger: logs.logger(),
		Now: func() time.Time { return t0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.NeedLeaderElection() {
		t.Error("every replica must serve, not only the leader")
	}
	if err := r.Ready(); err == nil || !strings.Contains(err.Error(), "no serving certificate loaded yet") {
		t.Errorf("Ready before start = %v, want not ready", err)
	}
	if _, err := r.GetCertificate(nil); err == nil {
		t.Error("GetCertificate succeeded with nothing loaded")
	}
	start(t, r)
	watches.waitFor(t, "secrets", 1)
	if err := r.Checker(nil); err == nil {
		t.Error("ready without a Secret")
	}

	// Another Secret in the namespace is ignored.
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: testNS}, Data: mustIssue(t, testRequest(nil), t0).SecretData()}
	if _, err := cs.CoreV1().Secrets(testNS).Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	b1 := mustIssue(t, testRequest(nil), t0)
	putSecret(t, cs, b1.SecretData())
	want1 := serialOf(t, b1.Cert)
	eventually(t, "first certificate served", func() (bool, string) { s, why := servedSerial(r); return s == want1, why })
	if err := r.Ready(); err != nil {
		t.Errorf("Ready after load: %v", err)
	}
	leaf := mustCerts(t, b1.Cert)[0]
	ca := mustCerts(t, b1.CACert)[0]
	for label, want := range map[string]*x509.Certificate{CertLabelServing: leaf, CertLabelCA: ca} {
		if got, ok := expiryGauge(t, reg, label); !ok || got != float64(want.NotAfter.Unix()) {
			t.Errorf("expiry gauge cert=%q = %v (present %v), want %d", label, got, ok, want.NotAfter.Unix())
		}
	}

	// Garbage never replaces a good certificate.
	putSecret(t, cs, map[string][]byte{SecretKeyCert: []byte("garbage"), SecretKeyKey: b1.Key})
	eventually(t, "garbage reported", func() (bool, string) { return logs.contains("certificate not (fully) loaded") })
	if s, why := servedSerial(r); s != want1 {
		t.Errorf("after garbage the served certificate is %q (%s), want the previous %s", s, why, want1)
	}
	if err := r.Ready(); err != nil {
		t.Errorf("Ready after garbage with a good certificate loaded: %v", err)
	}

	// A rotation applies to the next GetCertificate.
	b2 := mustIssue(t, IssueRequest{Existing: b1, DNSNames: []string{"renamed.sluice-system.svc"}}, t0)
	putSecret(t, cs, b2.SecretData())
	want2 := serialOf(t, b2.Cert)
	eventually(t, "rotated certificate served", func() (bool, string) { s, why := servedSerial(r); return s == want2, why })

	// A deleted Secret keeps the current certificate serving.
	if err := cs.CoreV1().Secrets(testNS).Delete(context.Background(), testSecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deletion seen", func() (bool, string) { return logs.contains("certificate secret deleted") })
	if s, why := servedSerial(r); s != want2 {
		t.Errorf("after deletion the served certificate is %q (%s), want %s", s, why, want2)
	}
}

func TestReloaderReadyFailsOnExpiredCertificate(t *testing.T) {
	now := t0
	r, err := NewReloader(fake.NewClientset(), ReloaderOptions{Namespace: testNS, SecretName: testSecret, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	b := mustIssue(t, testRequest(nil), t0)
	if _, err := r.load(b.Cert, b.Key, b.CACert); err != nil {
		t.Fatal(err)
	}
	if err := r.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	now = t0.Add(2 * year)
	if err := r.Ready(); err == nil || !strings.Contains(err.Error(), "expired at") {
		t.Errorf("Ready with an expired certificate = %v, want an expiry error", err)
	}
}

func writeFiles(t *testing.T, dir string, b *Bundle) {
	t.Helper()
	for name, data := range map[string][]byte{"tls.crt": b.Cert, "tls.key": b.Key, "ca.crt": b.CACert} {
		// Write then rename, as kubelet swaps mounted Secret files.
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReloaderFromFiles(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	logs := &logSink{}
	r, err := NewReloader(nil, ReloaderOptions{
		CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), CAFile: filepath.Join(dir, "ca.crt"),
		PollInterval: 5 * time.Millisecond, Registerer: reg, Logger: logs.logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	eventually(t, "missing files reported by Ready", func() (bool, string) {
		err := r.Ready()
		return err != nil && strings.Contains(err.Error(), "tls.crt"), fmt.Sprint(err)
	})

	b1 := mustIssue(t, testRequest(nil), time.Now())
	writeFiles(t, dir, b1)
	want1 := serialOf(t, b1.Cert)
	eventually(t, "files loaded", func() (bool, string) { s, why := servedSerial(r); return s == want1, why })
	if err := r.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
	if _, ok := expiryGauge(t, reg, CertLabelCA); !ok {
		t.Error("no CA expiry gauge in file mode with a CA file")
	}

	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), []byte("half-written"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "garbage reported", func() (bool, string) { return logs.contains("certificate not (fully) loaded") })
	if s, _ := servedSerial(r); s != want1 {
		t.Error("garbage replaced a good certificate")
	}

	b2 := mustIssue(t, testRequest(b1), time.Now().Add(11*30*24*time.Hour))
	writeFiles(t, dir, b2)
	want2 := serialOf(t, b2.Cert)
	eventually(t, "rewritten files loaded", func() (bool, string) { s, why := servedSerial(r); return s == want2, why })
}

func TestReloadersShareRegisterer(t *testing.T) {
	reg := prometheus.NewRegistry()
	for i := range 2 {
		if _, err := NewReloader(nil, ReloaderOptions{CertFile: "a", KeyFile: "b", Registerer: reg}); err != nil {
			t.Fatalf("reloader %d: %v", i, err)
		}
	}
}

func TestNewReloaderRejectsBadOptions(t *testing.T) {
	cs := fake.NewClientset()
	tests := map[string]struct {
		cs   kubernetes.Interface
		opts ReloaderOptions
		want string
	}{
		"no source":         {opts: ReloaderOptions{}, want: "a source is required"},
		"both sources":      {cs: cs, opts: ReloaderOptions{Namespace: testNS, SecretName: testSecret, CertFile: "tls.crt", KeyFile: "tls.key"}, want: "not both"},
		"secret without ns": {cs: cs, opts: ReloaderOptions{SecretName: testSecret}, want: "needs a namespace"},
		"secret without cs": {opts: ReloaderOptions{Namespace: testNS, SecretName: testSecret}, want: "Kubernetes client"},
		"cert without key":  {opts: ReloaderOptions{CertFile: "tls.crt"}, want: "needs a key file"},
		"negative poll":     {opts: ReloaderOptions{CertFile: "tls.crt", KeyFile: "tls.key", PollInterval: -1}, want: "poll interval"},
		"metric name clash": {opts: ReloaderOptions{CertFile: "tls.crt", KeyFile: "tls.key", Registerer: clashingRegistry(t)}, want: ExpiryMetricName},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := NewReloader(tc.cs, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewReloader error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// clashingRegistry holds a different collector under the expiry metric's
// name, which the Reloader must refuse rather than silently not report.
func clashingRegistry(t *testing.T) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	if err := reg.Register(prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ExpiryMetricName, Help: "other"}, []string{"cert"})); err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestReloaderFromFilesWithoutCA covers issuers that publish no ca.crt: the
// serving certificate still loads.
func TestReloaderFromFilesWithoutCA(t *testing.T) {
	dir := t.TempDir()
	b := mustIssue(t, testRequest(nil), time.Now())
	writeFiles(t, dir, b)
	if err := os.Remove(filepath.Join(dir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(nil, ReloaderOptions{
		CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), CAFile: filepath.Join(dir, "ca.crt"),
		PollInterval: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	want := serialOf(t, b.Cert)
	eventually(t, "certificate loaded without a CA file", func() (bool, string) { s, why := servedSerial(r); return s == want, why })
}
