package traffic

import (
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// newManager returns a manager that is never started, on a scheme built by add.
func newManager(t *testing.T, add ...func(*runtime.Scheme) error) manager.Manager {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, f := range add {
		if err := f(scheme); err != nil {
			t.Fatal(err)
		}
	}
	mgr, err := manager.New(&rest.Config{Host: "https://127.0.0.1:1"}, manager.Options{
		Scheme:                 scheme,
		Logger:                 logr.Discard(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	return mgr
}

// TestNewChecksItsInputs covers New's refusals; e2e/xds_test.go runs New on a
// real cluster.
func TestNewChecksItsInputs(t *testing.T) {
	srv, _ := xdsServer(t, logr.Discard())
	tests := map[string]struct {
		add     []func(*runtime.Scheme) error
		nilSrv  bool
		wantErr string
	}{
		"scheme without sluice.dev": {
			add:     []func(*runtime.Scheme) error{clientgoscheme.AddToScheme},
			wantErr: "the manager's scheme lacks *v1alpha1.Rollout (register client-go's scheme and v1alpha1.AddToScheme)",
		},
		"scheme without client-go": {
			add:     []func(*runtime.Scheme) error{v1alpha1.AddToScheme},
			wantErr: "the manager's scheme lacks *v1.Pod",
		},
		"no xDS server": {
			add:     []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme},
			nilSrv:  true,
			wantErr: "no xDS server given",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := srv
			if tc.nilSrv {
				s = nil
			}
			c, err := New(newManager(t, tc.add...), s, Options{Registerer: prometheus.NewRegistry()})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New = %v, %v; want an error containing %q", c, err, tc.wantErr)
			}
		})
	}
}
