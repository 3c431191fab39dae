package certs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestRotatorCreatesSecretAndInjects(t *testing.T) {
	clock := newFakeClock(t0)
	cs := fake.NewClientset(webhookConfigs()...)
	r, err := NewRotator(cs, testRotatorOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	if !r.NeedLeaderElection() {
		t.Error("rotator must run on the leader only")
	}
	start(t, r)
	eventually(t, "secret created and caBundle injected", func() (bool, string) { return injected(cs, clock.Now()) })

	sec, err := getSecret(cs)
	if err != nil {
		t.Fatal(err)
	}
	if sec.Type != corev1.SecretTypeTLS || sec.Labels[ManagedByLabel] != "sluice" {
		t.Errorf("secret type %q labels %v; want %q with %s=sluice", sec.Type, sec.Labels, corev1.SecretTypeTLS, ManagedByLabel)
	}
}

func TestRotatorReinjectsChangedCABundle(t *testing.T) {
	tests := map[string]func(ctx context.Context, cs *fake.Clientset) error{
		"mutating caBundle blanked": func(ctx context.Context, cs *fake.Clientset) error {
			api := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
			cfg, err := api.Get(ctx, testMutating, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cfg.Webhooks[1].ClientConfig.CABundle = nil
			_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
			return err
		},
		"validating caBundle replaced": func(ctx context.Context, cs *fake.Clientset) error {
			api := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations()
			cfg, err := api.Get(ctx, testValidting, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cfg.Webhooks[0].ClientConfig.CABundle = []byte("someone else's CA")
			_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
			return err
		},
		"mutating configuration recreated": func(ctx context.Context, cs *fake.Clientset) error {
			api := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
			if err := api.Delete(ctx, testMutating, metav1.DeleteOptions{}); err != nil {
				return err
			}
			_, err := api.Create(ctx, webhookConfigs()[0].(*admissionv1.MutatingWebhookConfiguration), metav1.CreateOptions{})
			return err
		},
	}
	for name, change := range tests {
		t.Run(name, func(t *testing.T) {
			clock := newFakeClock(t0)
			cs := fake.NewClientset(webhookConfigs()...)
			watches := recordWatches(cs)
			// The periodic check is an hour away: only watch events can
			// trigger the re-injection.
			r, err := NewRotator(cs, testRotatorOptions(clock))
			if err != nil {
				t.Fatal(err)
			}
			start(t, r)
			eventually(t, "first injection", func() (bool, string) { return injected(cs, clock.Now()) })
			watches.waitFor(t, "mutatingwebhookconfigurations", 1)
			watches.waitFor(t, "validatingwebhookconfigurations", 1)

			if err := change(context.Background(), cs); err != nil {
				t.Fatal(err)
			}
			eventually(t, "caBundle re-injected", func() (bool, string) { return injected(cs, clock.Now()) })
		})
	}
}

func TestRotatorRotatesAsTimePasses(t *testing.T) {
	clock := newFakeClock(t0)
	cs := fake.NewClientset(webhookConfigs()...)
	opts := testRotatorOptions(clock)
	opts.CheckInterval = 10 * time.Millisecond
	r, err := NewRotator(cs, opts)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	eventually(t, "first injection", func() (bool, string) { return injected(cs, clock.Now()) })
	first, err := getSecret(cs)
	if err != nil {
		t.Fatal(err)
	}

	clock.Add(9 * 30 * 24 * time.Hour) // serving certificate in its last third
	eventually(t, "serving certificate rotated", func() (bool, string) {
		sec, err := getSecret(cs)
		if err != nil {
			return false, err.Error()
		}
		return string(sec.Data[SecretKeyCert]) != string(first.Data[SecretKeyCert]), "serving unchanged"
	})
	sec, err := getSecret(cs)
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data[SecretKeyCACert]) != string(first.Data[SecretKeyCACert]) {
		t.Error("CA rotated together with a due serving certificate")
	}

	clock.Set(t0.Add(7 * year)) // CA in its last third
	eventually(t, "CA rotated and both CAs injected", func() (bool, string) {
		if ok, state := injected(cs, clock.Now()); !ok {
			return false, state
		}
		sec, err := getSecret(cs)
		if err != nil {
			return false, err.Error()
		}
		cas, err := ParseCertificates(sec.Data[SecretKeyCACert])
		return err == nil && len(cas) == 2, fmt.Sprintf("%d CAs, %v", len(cas), err)
	})
}

func TestRotatorRepairsGarbageSecret(t *testing.T) {
	clock := newFakeClock(t0)
	garbage := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: testSecret, Namespace: testNS},
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			SecretKeyCACert: []byte("-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n"),
			SecretKeyCert:   {0xff, 0xfe},
			"unrelated":     []byte("kept"),
		},
	}
	cs := fake.NewClientset(append(webhookConfigs(), garbage)...)
	r, err := NewRotator(cs, testRotatorOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	eventually(t, "garbage replaced and injected", func() (bool, string) { return injected(cs, clock.Now()) })
	sec, err := getSecret(cs)
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data["unrelated"]) != "kept" {
		t.Error("a key the rotator does not own was dropped")
	}
}

// TestRotatorLosesCreateRace simulates another leader creating the Secret
// between our read and our create: the rotator must adopt that bundle, not
// overwrite it.
func TestRotatorLosesCreateRace(t *testing.T) {
	clock := newFakeClock(t0)
	cs := fake.NewClientset(webhookConfigs()...)
	theirs := mustIssue(t, testRequest(nil), t0)
	var raced atomic.Bool
	cs.PrependReactor("create", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if raced.Swap(true) {
			return false, nil, nil
		}
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: testSecret, Namespace: testNS},
			Type: corev1.SecretTypeTLS, Data: theirs.SecretData()}
		if err := cs.Tracker().Add(sec); err != nil {
			return true, nil, err
		}
		return true, nil, apierrors.NewAlreadyExists(schema.GroupResource{Resource: "secrets"}, testSecret)
	})
	logs := &logSink{}
	opts := testRotatorOptions(clock)
	opts.Logger = logs.logger()
	r, err := NewRotator(cs, opts)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	eventually(t, "injection after the race", func() (bool, string) { return injected(cs, clock.Now()) })
	sec, err := getSecret(cs)
	if err != nil {
		t.Fatal(err)
	}
	if !BundleFromSecretData(sec.Data).Equal(theirs) {
		t.Error("the rotator overwrote the bundle the other leader created")
	}
	if ok, state := logs.contains("lost a race"); !ok {
		t.Error(state)
	}
}

func TestRotatorRetriesUpdateConflict(t *testing.T) {
	clock := newFakeClock(t0)
	expired := mustIssue(t, testRequest(nil), t0.Add(-2*year))
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: testSecret, Namespace: testNS},
		Type: corev1.SecretTypeTLS, Data: expired.SecretData()}
	cs := fake.NewClientset(append(webhookConfigs(), sec)...)
	var updates atomic.Int32
	cs.PrependReactor("update", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		if updates.Add(1) == 1 {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, testSecret, fmt.Errorf("the object has been modified"))
		}
		return false, nil, nil
	})
	r, err := NewRotator(cs, testRotatorOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	eventually(t, "rotation after a conflict", func() (bool, string) { return injected(cs, clock.Now()) })
	if n := updates.Load(); n < 2 {
		t.Errorf("%d secret updates, want a retry after the conflict", n)
	}
}

func TestRotatorWaitsForMissingWebhookConfiguration(t *testing.T) {
	clock := newFakeClock(t0)
	cs := fake.NewClientset()
	logs := &logSink{}
	opts := testRotatorOptions(clock)
	opts.Logger = logs.logger()
	r, err := NewRotator(cs, opts)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	eventually(t, "missing configuration reported", func() (bool, string) {
		return logs.contains(`mutating webhook configuration \"` + testMutating + `\" does not exist yet`)
	})
	if _, err := getSecret(cs); err != nil {
		t.Errorf("secret not created while webhook configurations are missing: %v", err)
	}
	ctx := context.Background()
	cfgs := webhookConfigs()
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfgs[0].(*admissionv1.MutatingWebhookConfiguration), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, cfgs[1].(*admissionv1.ValidatingWebhookConfiguration), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "injection once the configurations exist", func() (bool, string) { return injected(cs, clock.Now()) })
}

func TestNewRotatorRejectsBadOptions(t *testing.T) {
	cs := fake.NewClientset()
	valid := testRotatorOptions(newFakeClock(t0))
	tests := map[string]struct {
		mutate func(*RotatorOptions)
		noCS   bool
		want   string
	}{
		"no client":          {noCS: true, want: "Kubernetes client is required"},
		"no secret":          {mutate: func(o *RotatorOptions) { o.SecretName = "" }, want: "secret name"},
		"no names":           {mutate: func(o *RotatorOptions) { o.DNSNames, o.IPAddresses = nil, nil }, want: "at least one DNS name"},
		"bad name":           {mutate: func(o *RotatorOptions) { o.DNSNames = []string{"-bad-"} }, want: `"-bad-"`},
		"empty webhook name": {mutate: func(o *RotatorOptions) { o.ValidatingWebhooks = []string{""} }, want: "must not be empty"},
		"negative interval":  {mutate: func(o *RotatorOptions) { o.CheckInterval = -time.Second }, want: "check interval"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			opts := valid
			if tc.mutate != nil {
				tc.mutate(&opts)
			}
			var c kubernetes.Interface = cs
			if tc.noCS {
				c = nil
			}
			_, err := NewRotator(c, opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewRotator error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestOnlyConflicts(t *testing.T) {
	gr := schema.GroupResource{Resource: "secrets"}
	conflict := fmt.Errorf("update secret: %w", apierrors.NewConflict(gr, testSecret, fmt.Errorf("modified")))
	exists := fmt.Errorf("create secret: %w", apierrors.NewAlreadyExists(gr, testSecret))
	missing := fmt.Errorf("inject: %w", apierrors.NewNotFound(gr, testMutating))
	tests := map[string]struct {
		err  error
		want bool
	}{
		"conflict":                  {err: conflict, want: true},
		"already exists":            {err: exists, want: true},
		"not found":                 {err: missing},
		"joined conflicts":          {err: errors.Join(conflict, exists), want: true},
		"conflict joined with miss": {err: errors.Join(conflict, missing)},
		"plain error":               {err: errors.New("connection refused")},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := onlyConflicts(tc.err); got != tc.want {
				t.Errorf("onlyConflicts(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// TestRotatorReconcileOnce covers the synchronous pass `sluice dev` can use
// before registering its webhooks.
func TestRotatorReconcileOnce(t *testing.T) {
	clock := newFakeClock(t0)
	cs := fake.NewClientset()
	r, err := NewRotator(cs, testRotatorOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Reconcile(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does not exist yet") {
		t.Errorf("Reconcile without webhook configurations = %v, want a missing-configuration error", err)
	}
	if b == nil {
		t.Fatal("no bundle returned although the Secret was written")
	}
	sec, err := getSecret(cs)
	if err != nil {
		t.Fatal(err)
	}
	if !BundleFromSecretData(sec.Data).Equal(b) {
		t.Error("returned bundle differs from the stored one")
	}
	again, err := r.Reconcile(context.Background())
	if again == nil || !again.Equal(b) {
		t.Errorf("second pass changed a fit bundle (%v)", err)
	}
}
