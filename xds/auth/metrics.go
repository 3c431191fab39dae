package auth

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a stream or call is refused: the values of the reason label of
// sluice_xds_refused_streams_total.
const (
	ReasonUnauthenticated   = "unauthenticated"    // no identity, or one that did not verify
	ReasonReviewFailed      = "review_failed"      // the TokenReview call itself failed
	ReasonNamespaceMismatch = "namespace_mismatch" // a node claims a namespace its identity is not in
	ReasonNoNamespace       = "no_namespace"       // a legacy node names no namespace
	ReasonLegacyNotAllowed  = "legacy_not_allowed" // a legacy node's namespace did not opt in
	ReasonTooManyStreams    = "too_many_streams"   // one identity opened more than its share
	ReasonTooManyNames      = "too_many_names"     // a request subscribes or reports too many names
	ReasonMessageTooLarge   = "message_too_large"  // a message over the receive size limit
)

// Metrics count what a [Guard] refuses and what it recovers from. One
// Metrics serves every Guard of a process.
type Metrics struct {
	refused *prometheus.CounterVec
	panics  prometheus.Counter
	reviews *prometheus.CounterVec
}

// NewMetrics registers the counters with reg (nil registers nothing).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_xds_refused_streams_total",
			Help: "xDS and load reporting streams and calls refused, by reason.",
		}, []string{"reason"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_xds_handler_panics_total",
			Help: "Panics recovered in xDS and load reporting handlers; the stream ends with INTERNAL and the process keeps serving.",
		}),
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_xds_token_reviews_total",
			Help: "TokenReview calls made to verify xDS client tokens (cache misses), by result (ok: the API server answered; error: the call failed).",
		}, []string{"result"}),
	}
	for _, r := range []string{ReasonUnauthenticated, ReasonReviewFailed, ReasonNamespaceMismatch, ReasonNoNamespace,
		ReasonLegacyNotAllowed, ReasonTooManyStreams, ReasonTooManyNames, ReasonMessageTooLarge} {
		m.refused.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.refused, m.panics, m.reviews} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// Review counts one TokenReview call; pass it as [TokenOptions].OnReview.
func (m *Metrics) Review(err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.reviews.WithLabelValues(result).Inc()
}
