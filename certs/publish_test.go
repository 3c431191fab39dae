package certs

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestPublisherKeepsTheBundleInEveryNamespace(t *testing.T) {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "sluice-system", Name: "tls"},
		Data:       map[string][]byte{SecretKeyCACert: []byte("CA-1")},
	}
	ns := func(name string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	}
	cs := fake.NewClientset(secret, ns("sluice-system"), ns("shop"))
	p, err := NewPublisher(cs, PublisherOptions{Namespace: "sluice-system", SecretName: "tls", CheckInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	wait := func(namespace, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			cm, err := cs.CoreV1().ConfigMaps(namespace).Get(ctx, CAConfigMapName, metav1.GetOptions{})
			if err == nil && cm.Data[SecretKeyCACert] == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("configmap %s/%s: %v, %v; want ca.crt %q", namespace, CAConfigMapName, cm.Data, err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("shop", "CA-1")
	wait("sluice-system", "CA-1")
	// A new namespace gets it; a rotation reaches every namespace.
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns("bank"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("bank", "CA-1")
	secret.Data[SecretKeyCACert] = []byte("CA-2\nCA-1")
	if _, err := cs.CoreV1().Secrets("sluice-system").Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"shop", "bank", "sluice-system"} {
		wait(n, "CA-2\nCA-1")
	}
	// A tampered copy is put back.
	cm, err := cs.CoreV1().ConfigMaps("shop").Get(ctx, CAConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[SecretKeyCACert] = "attacker's CA"
	if _, err := cs.CoreV1().ConfigMaps("shop").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("shop", "CA-2\nCA-1")
}
