package certs

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// ExpiryMetricName is the gauge of certificate expiry, in Unix seconds of
// NotAfter, labelled cert="serving" or cert="ca".
const ExpiryMetricName = "sluice_cert_expiry_timestamp_seconds"

// Values of the cert label of [ExpiryMetricName].
const (
	CertLabelServing = "serving"
	CertLabelCA      = "ca"
)

// registerExpiry registers the expiry gauge on reg, or returns the gauge a
// previous caller already registered there. A nil reg gives an unregistered
// gauge.
func registerExpiry(reg prometheus.Registerer) (*prometheus.GaugeVec, error) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: ExpiryMetricName,
		Help: "NotAfter of the certificate this replica serves (cert=\"serving\") and of the CA that signs it (cert=\"ca\"), as Unix seconds.",
	}, []string{"cert"})
	if reg == nil {
		return g, nil
	}
	if err := reg.Register(g); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.GaugeVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("register %s: %w", ExpiryMetricName, err)
	}
	return g, nil
}
