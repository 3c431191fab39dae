package main

import (
	"crypto/tls"
	"fmt"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/sluice-dev/sluice/monitoring"
)

// metricsAuth says how the metrics endpoint is protected.
type metricsAuth struct {
	// secure serves /metrics over HTTPS to authenticated and authorized
	// callers only.
	secure bool
}

func (m *metricsAuth) addFlags(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&m.secure, "metrics-secure", false,
		"serve metrics over HTTPS with the serving certificate, only to callers whose bearer token the API server "+
			"authenticates (TokenReview) and allows to get the non-resource URL /metrics (SubjectAccessReview)")
}

// serverOptions are the metrics server's options for addr. With
// --metrics-secure the server presents the certificate tlsOpts configure and
// asks the API server about every caller: without a token, or with one not
// allowed to get /metrics, a request gets 401 or 403 and no metrics.
func (m metricsAuth) serverOptions(addr string, tlsOpts ...func(*tls.Config)) metricsserver.Options {
	o := metricsserver.Options{BindAddress: addr}
	if m.secure {
		o.SecureServing = true
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
		o.TLSOpts = tlsOpts
	}
	return o
}

// registerRolloutMetrics exports, while this replica leads, the Rollout
// statuses it writes (proxies by state, unconfirmed steps, verdicts): what
// the chart's alerts and dashboards read.
func registerRolloutMetrics(mgr manager.Manager, leading func() bool, log logr.Logger) error {
	c := monitoring.NewRolloutCollector(mgr.GetCache(), leading, log.WithName("rollout-metrics"))
	if err := ctrlmetrics.Registry.Register(c); err != nil {
		return fmt.Errorf("register rollout status metrics: %w", err)
	}
	return nil
}
