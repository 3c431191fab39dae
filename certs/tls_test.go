package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// handshakeStats is what a client that keeps connecting observed.
type handshakeStats struct {
	mu       sync.Mutex
	ok       int
	failures []string
	serials  map[string]bool
	issuers  map[string]bool
	// seen holds "serial/number of trusted CAs" of successful handshakes.
	seen map[string]bool
}

func (s *handshakeStats) record(leaf *x509.Certificate, trusted int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failures = append(s.failures, err.Error())
		return
	}
	s.ok++
	s.serials[leaf.SerialNumber.String()] = true
	s.issuers[string(leaf.AuthorityKeyId)] = true
	s.seen[fmt.Sprintf("%s/%d", leaf.SerialNumber, trusted)] = true
}

// saw reports whether a handshake succeeded with the given serving
// certificate while the client trusted the given number of CAs.
func (s *handshakeStats) saw(serial string, trusted int) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[fmt.Sprintf("%s/%d", serial, trusted)], fmt.Sprintf("%d handshakes, %d serials, %d failures", s.ok, len(s.serials), len(s.failures))
}

// TestTLSRotationWithoutFailedHandshakes runs the Rotator and a Reloader
// against one fake API server and a real TLS listener. A client that, like
// kube-apiserver, trusts whatever caBundle the mutating webhook
// configuration holds keeps handshaking while the clock moves through two
// serving rotations, a CA rotation and a serving rotation under the new CA.
// Every handshake must succeed, and new handshakes must get the new
// certificate.
func TestTLSRotationWithoutFailedHandshakes(t *testing.T) {
	day := 24 * time.Hour
	clock := newFakeClock(t0)
	cs := fake.NewClientset(webhookConfigs()...)
	watches := recordWatches(cs)
	opts := testRotatorOptions(clock)
	opts.CAValidity, opts.CertValidity = 90*day, 30*day
	opts.CheckInterval = 5 * time.Millisecond
	rot, err := NewRotator(cs, opts)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := NewReloader(cs, ReloaderOptions{Namespace: testNS, SecretName: testSecret, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	start(t, rel)
	watches.waitFor(t, "secrets", 1) // the Reloader listens before anything is written
	start(t, rot)

	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	rel.ConfigureTLS(cfg)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go serveHandshakes(ln)

	eventually(t, "first injection", func() (bool, string) { return injected(cs, clock.Now()) })
	eventually(t, "reloader ready", func() (bool, string) { err := rel.Ready(); return err == nil, fmt.Sprint(err) })

	stats := &handshakeStats{serials: map[string]bool{}, issuers: map[string]bool{}, seen: map[string]bool{}}
	ctx, stop := context.WithCancel(context.Background())
	var clientDone sync.WaitGroup
	clientDone.Add(1)
	go func() {
		defer clientDone.Done()
		for {
			leaf, trusted, err := handshake(ctx, cs, ln.Addr().String(), clock.Now)
			if ctx.Err() != nil {
				return // stopped by the test, not a failed handshake
			}
			stats.record(leaf, trusted, err)
		}
	}()

	// Each step lands inside the validity of the certificate being served,
	// as real time would, and waits until a client handshake has seen the
	// certificate the Secret now holds.
	steps := []struct {
		name     string
		at       time.Duration
		wantCAs  int
		newServe bool
	}{
		{"serving rotation", 21 * day, 1, true},
		{"second serving rotation", 42 * day, 1, true},
		{"CA rotation, serving kept", 61 * day, 2, false},
		{"serving rotation under the new CA", 63 * day, 2, true},
	}
	prevSerial := ""
	if s, why := servedSerial(rel); s == "" {
		t.Fatal(why)
	} else {
		prevSerial = s
	}
	eventually(t, "client handshakes with the first certificate", func() (bool, string) { return stats.saw(prevSerial, 1) })
	for _, step := range steps {
		clock.Set(t0.Add(step.at))
		var serial string
		eventually(t, step.name, func() (bool, string) {
			if ok, state := injected(cs, clock.Now()); !ok {
				return false, state
			}
			sec, err := getSecret(cs)
			if err != nil {
				return false, err.Error()
			}
			cas, err := ParseCertificates(sec.Data[SecretKeyCACert])
			if err != nil || len(cas) != step.wantCAs {
				return false, fmt.Sprintf("%d CAs (%v), want %d", len(cas), err, step.wantCAs)
			}
			serial = serialOf(t, sec.Data[SecretKeyCert])
			if (serial != prevSerial) != step.newServe {
				return false, fmt.Sprintf("serving serial changed = %v, want %v", serial != prevSerial, step.newServe)
			}
			return stats.saw(serial, step.wantCAs)
		})
		prevSerial = serial
	}
	stop()
	clientDone.Wait()

	stats.mu.Lock()
	defer stats.mu.Unlock()
	if len(stats.failures) > 0 {
		t.Fatalf("%d of %d handshakes failed; first: %s", len(stats.failures), stats.ok+len(stats.failures), stats.failures[0])
	}
	if len(stats.serials) != 4 || len(stats.issuers) != 2 {
		t.Errorf("client saw %d serving certificates from %d CAs, want 4 from 2", len(stats.serials), len(stats.issuers))
	}
}

// serveHandshakes completes the TLS handshake on every accepted connection
// and closes it, until the listener closes.
func serveHandshakes(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			// A failed handshake shows up on the client side.
			_ = conn.(*tls.Conn).Handshake()
		}()
	}
}

// handshake connects like kube-apiserver: it trusts the caBundle currently
// in the mutating webhook configuration and verifies the service DNS name.
// It returns the server's certificate and how many CAs it trusted.
func handshake(ctx context.Context, cs *fake.Clientset, addr string, now func() time.Time) (*x509.Certificate, int, error) {
	cfg, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, testMutating, metav1.GetOptions{})
	if err != nil {
		return nil, 0, err
	}
	cas, err := ParseCertificates(cfg.Webhooks[0].ClientConfig.CABundle)
	if err != nil {
		return nil, 0, fmt.Errorf("caBundle: %w", err)
	}
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca)
	}
	d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: testNames[0], Time: now, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], len(cas), nil
}
