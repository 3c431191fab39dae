package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestControllerClientIsNotThrottledToTheDefault: a configuration read from
// a kubeconfig file gets client-go's default limit of 5 requests per second
// unless the controller raises it; the leader's status patches need more.
func TestControllerClientIsNotThrottledToTheDefault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kubeconfig := `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:6443
users:
- name: u
  user:
    token: t
contexts:
- name: x
  context:
    cluster: c
    user: u
current-context: x
`
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := controllerOptions{kubeconfig: path}.restConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QPS < controllerQPS || cfg.Burst < controllerBurst {
		t.Fatalf("QPS %v, burst %d; want at least %d and %d", cfg.QPS, cfg.Burst, controllerQPS, controllerBurst)
	}
}
