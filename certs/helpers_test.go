package certs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

const (
	testNS        = "sluice-system"
	testSecret    = "sluice-webhook-certs"
	testMutating  = "sluice-mutating"
	testValidting = "sluice-validating"
)

// fakeClock is a settable clock shared by the code under test and the test.
type fakeClock struct{ nanos atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.Set(t)
	return c
}

func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.nanos.Load()).UTC() }
func (c *fakeClock) Set(t time.Time)     { c.nanos.Store(t.UnixNano()) }
func (c *fakeClock) Add(d time.Duration) { c.nanos.Add(int64(d)) }

// watchRecorder counts watches opened on a fake clientset, by resource, so
// a test can wait until informers listen before it changes objects (the
// fake does not replay changes made between list and watch).
type watchRecorder struct {
	mu     sync.Mutex
	counts map[string]int
}

func recordWatches(cs *fake.Clientset) *watchRecorder {
	w := &watchRecorder{counts: map[string]int{}}
	cs.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		w.mu.Lock()
		w.counts[a.GetResource().Resource]++
		w.mu.Unlock()
		return false, nil, nil
	})
	return w
}

func (w *watchRecorder) waitFor(t *testing.T, resource string, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d watches on %s", n, resource), func() (bool, string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.counts[resource] >= n, fmt.Sprintf("%d watches", w.counts[resource])
	})
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last state: %s", what, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// start runs a Runnable until the test ends and fails the test if it
// returns an error.
func start(t *testing.T, r manager.Runnable) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start returned %v", err)
		}
	})
}

// logSink collects log lines for assertions.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		l.lines = append(l.lines, prefix+" "+args)
		l.mu.Unlock()
	}, funcr.Options{Verbosity: 1})
}

func (l *logSink) contains(s string) (bool, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true, ""
		}
	}
	return false, fmt.Sprintf("%d log lines, none containing %q", len(l.lines), s)
}

func webhookConfigs() []runtime.Object {
	mw := func(name string) admissionv1.MutatingWebhook {
		return admissionv1.MutatingWebhook{Name: name, ClientConfig: admissionv1.WebhookClientConfig{
			Service: &admissionv1.ServiceReference{Namespace: testNS, Name: "sluice-webhook"}}}
	}
	return []runtime.Object{
		&admissionv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: testMutating},
			Webhooks:   []admissionv1.MutatingWebhook{mw("deployments.sluice.dev"), mw("rollouts.sluice.dev")},
		},
		&admissionv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: testValidting},
			Webhooks: []admissionv1.ValidatingWebhook{{Name: "deployments.sluice.dev", ClientConfig: admissionv1.WebhookClientConfig{
				Service: &admissionv1.ServiceReference{Namespace: testNS, Name: "sluice-webhook"}}}},
		},
	}
}

func testRotatorOptions(clock *fakeClock) RotatorOptions {
	return RotatorOptions{
		Namespace:          testNS,
		SecretName:         testSecret,
		DNSNames:           testNames,
		IPAddresses:        loopback,
		MutatingWebhooks:   []string{testMutating},
		ValidatingWebhooks: []string{testValidting},
		CheckInterval:      time.Hour,
		Now:                clock.Now,
	}
}

func getSecret(cs *fake.Clientset) (*corev1.Secret, error) {
	return cs.CoreV1().Secrets(testNS).Get(context.Background(), testSecret, metav1.GetOptions{})
}

// caBundles returns the caBundle of every webhook of both test
// configurations.
func caBundles(cs *fake.Clientset) ([][]byte, error) {
	ctx := context.Background()
	m, err1 := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, testMutating, metav1.GetOptions{})
	v, err2 := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, testValidting, metav1.GetOptions{})
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	var out [][]byte
	for _, w := range m.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	for _, w := range v.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	return out, nil
}

// injected reports whether every webhook's caBundle equals the Secret's
// ca.crt and the Secret holds a fit bundle at now.
func injected(cs *fake.Clientset, now time.Time) (bool, string) {
	sec, err := getSecret(cs)
	if err != nil {
		return false, err.Error()
	}
	a, err := Assess(IssueRequest{Existing: BundleFromSecretData(sec.Data), DNSNames: testNames, IPAddresses: loopback}, now)
	if err != nil || !a.OK() {
		return false, fmt.Sprintf("secret not fit: %+v %v", a, err)
	}
	bundles, err := caBundles(cs)
	if err != nil {
		return false, err.Error()
	}
	for i, b := range bundles {
		if string(b) != string(sec.Data[SecretKeyCACert]) {
			return false, fmt.Sprintf("webhook %d has caBundle of %d bytes, secret ca.crt has %d", i, len(b), len(sec.Data[SecretKeyCACert]))
		}
	}
	return true, ""
}
