package lrs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluice-dev/sluice/xds/auth"
)

// DefaultInterval is the load reporting interval sent to clients when
// Options.Interval is zero.
const DefaultInterval = time.Second

// maxLoggedUnknown bounds how many distinct unknown cluster names are
// remembered for log-once purposes.
const maxLoggedUnknown = 1024

// Options configure a [Server].
type Options struct {
	// Interval is the load_reporting_interval sent to every client. Zero means
	// DefaultInterval; a negative value is rejected, because grpc-go panics on a
	// zero interval.
	Interval time.Duration
	// Attribute maps a reported cluster and locality sub_zone to a key.
	// Required.
	Attribute Attribution
	// Aggregator receives the attributed load; nil means a new one.
	Aggregator *Aggregator
	// Registerer receives the route metrics; nil means they are not exported.
	Registerer prometheus.Registerer
	// Logger logs unknown clusters and stream errors.
	Logger logr.Logger
	// RequireIdentity refuses (codes.Unauthenticated) every stream whose
	// context carries no auth.Identity once its first request is read. Set
	// it whenever the listeners authenticate; without it such streams are
	// served and their load counts as ClassUnidentified.
	RequireIdentity bool
	// Acknowledged reports whether a stream of exactly identity id
	// acknowledged cluster. Load for a cluster its reporter never
	// acknowledged is not counted (reason "unacknowledged"). Nil counts every
	// cluster (for tests and servers without ADS).
	Acknowledged func(id auth.Identity, cluster string) bool
	// LookupAck is Acknowledged for a source whose answer may come later
	// (server.FleetAcks asks the other replicas): the stream's receive loop
	// never waits for it. A report's localities whose answer is not known
	// yet are held aside, uncounted, and judged once it comes (at most 5s;
	// no answer by then counts as no); a stream holds at most 4 reports so,
	// and entries beyond are not counted (reason "ack-unanswered"). At most
	// one of Acknowledged and LookupAck may be set.
	LookupAck func(id auth.Identity, cluster string) Ack
	// LegacyAllowed returns nil when a service's namespace may be reported on
	// over the legacy listener, else why not. Load from a legacy identity for
	// another namespace is not counted (reason "legacy-not-allowed"); nil
	// allows none. It is called for every locality of a legacy report: keep
	// it cheap (a cached read).
	LegacyAllowed func(ctx context.Context, namespace string) error
}

// Reasons a locality of a load report is not counted, the values of the
// reason label of sluice_lrs_rejected_reports_total. The set is closed.
const (
	// RejectOverflow: counts above MaxRequestsPerReport in one report.
	RejectOverflow = "overflow"
	// RejectUnacknowledged: the reporter never acknowledged the cluster.
	RejectUnacknowledged = "unacknowledged"
	// RejectLegacyNotAllowed: a legacy reporter reported on a namespace
	// that did not opt in to the legacy listener.
	RejectLegacyNotAllowed = "legacy-not-allowed"
	// RejectAckUnanswered: whether the reporter acknowledged the cluster
	// could not be learnt in time (too many of the stream's reports were
	// already waiting for answers, or no answer came within the bound).
	RejectAckUnanswered = "ack-unanswered"
)

// Server is a Load Reporting Service: it asks every client to report the load
// of all its clusters every Interval and feeds the reports into an
// [Aggregator] and Prometheus metrics.
type Server struct {
	lrsv3.UnimplementedLoadReportingServiceServer

	interval  time.Duration
	attribute Attribution
	agg       *Aggregator
	metrics   *metrics
	log       logr.Logger
	streams   atomic.Int64
	// requireIdentity, acknowledged and legacyAllowed: see Options.
	requireIdentity bool
	acknowledged    func(auth.Identity, string) bool
	lookupAck       func(auth.Identity, string) Ack
	legacyAllowed   func(context.Context, string) error
	// holdFor bounds the wait of held entries (maxHold); judged, when set,
	// is called after each held batch is judged (tests).
	holdFor time.Duration
	judged  func()

	mu      sync.Mutex
	unknown map[string]struct{}
	// serves, once set, says which cluster localities are published now.
	serves atomic.Pointer[func(cluster, subZone string) bool]
}

// MaxRequestsPerReport bounds the requests one locality may report in one
// report. A real client reports what it sent in one interval (a second by
// default); a report above this is a forgery or a bug, and is dropped rather
// than allowed to overflow the counters the analysis sums.
const MaxRequestsPerReport = 1 << 32

// Restrict makes the server count load only for the cluster localities that
// serves accepts (those published now): a client cannot create counters,
// metric series or revisions of its choosing by naming them. Load for others
// counts as unattributed.
func (s *Server) Restrict(serves func(cluster, subZone string) bool) {
	s.serves.Store(&serves)
}

var _ lrsv3.LoadReportingServiceServer = (*Server)(nil)

// NewServer validates opts and returns a server. It fails when the interval is
// negative or no attribution is given, or when the metrics cannot be
// registered.
func NewServer(opts Options) (*Server, error) {
	switch {
	case opts.Interval < 0:
		return nil, fmt.Errorf("load reporting interval %s: must be > 0 (grpc-go clients panic on 0), or 0 for the default %s", opts.Interval, DefaultInterval)
	case opts.Interval == 0:
		opts.Interval = DefaultInterval
	}
	if opts.Acknowledged != nil && opts.LookupAck != nil {
		return nil, errors.New("load reporting: set Acknowledged or LookupAck, not both")
	}
	if opts.Attribute == nil {
		return nil, errors.New("load reporting: an Attribute func is required to map clusters to namespace/service/track")
	}
	if opts.Aggregator == nil {
		opts.Aggregator = NewAggregator()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Server{
		interval:  opts.Interval,
		attribute: opts.Attribute,
		agg:       opts.Aggregator,
		metrics:   m,
		log:       opts.Logger,
		unknown:   map[string]struct{}{},

		requireIdentity: opts.RequireIdentity,
		acknowledged:    opts.Acknowledged,
		lookupAck:       opts.LookupAck,
		holdFor:         maxHold,
		legacyAllowed:   opts.LegacyAllowed,
	}, nil
}

// Interval is the load reporting interval sent to clients; always > 0.
func (s *Server) Interval() time.Duration { return s.interval }

// Aggregator returns the aggregator the server feeds.
func (s *Server) Aggregator() *Aggregator { return s.agg }

// Register adds the Load Reporting Service to g.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	lrsv3.RegisterLoadReportingServiceServer(g, s)
}

// StreamLoadStats serves one client: it reads the first request (which
// carries the node), reads the identity the connection proved, answers once
// with send_all_clusters and the interval, then aggregates every report until
// the client goes away. Without an identity it refuses the stream when
// Options.RequireIdentity is set.
func (s *Server) StreamLoadStats(stream grpc.BidiStreamingServer[lrsv3.LoadStatsRequest, lrsv3.LoadStatsResponse]) error {
	id := s.streams.Add(1)
	defer s.agg.dropStream(id)
	defer s.refreshInFlight()

	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	node := first.GetNode().GetId()
	who, _ := auth.FromContext(stream.Context())
	r := reporter{origin: OriginOf(who), id: who}
	if r.origin.Class == ClassUnidentified && s.requireIdentity {
		return status.Error(codes.Unauthenticated, "load reporting needs an authenticated connection: a ServiceAccount token or a client certificate")
	}
	log := s.log.WithValues("node", node, "stream", id, "identity", r.origin.String())
	resp := &lrsv3.LoadStatsResponse{
		SendAllClusters:       true,
		LoadReportingInterval: durationpb.New(s.interval),
	}
	if err := stream.Send(resp); err != nil {
		log.Error(err, "send load reporting interval")
		return err
	}
	log.V(1).Info("load reporting stream open", "interval", s.interval)
	held := &heldReports{}
	s.record(stream.Context(), log, id, r, held, first)
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				log.V(1).Info("load reporting stream closed")
				return nil
			}
			log.V(1).Info("load reporting stream ended", "error", err.Error())
			return err
		}
		s.record(stream.Context(), log, id, r, held, req)
	}
}

// reporter is who reports on one stream.
type reporter struct {
	id     auth.Identity
	origin Origin
}

// record attributes one report and updates the aggregator and metrics.
// Localities whose reporter's acknowledgement is not known yet are held
// (hold), never waited for here.
func (s *Server) record(ctx context.Context, log logr.Logger, stream int64, r reporter, held *heldReports, req *lrsv3.LoadStatsRequest) {
	s.agg.resetInFlight(stream)
	perKey := map[Key]Totals{}
	serves := s.serves.Load()
	var later []heldEntry
	for _, cs := range req.GetClusterStats() {
		cluster := cs.GetClusterName()
		// Asked only once a locality of the cluster is attributed: a
		// report naming clusters Sluice does not publish costs no lookup.
		var ack Ack
		for _, ls := range cs.GetUpstreamLocalityStats() {
			sub := ls.GetLocality().GetSubZone()
			ok, errs := ls.GetTotalSuccessfulRequests(), ls.GetTotalErrorRequests()
			if ok > MaxRequestsPerReport || errs > MaxRequestsPerReport || ls.GetTotalIssuedRequests() > MaxRequestsPerReport ||
				ls.GetTotalRequestsInProgress() > MaxRequestsPerReport {
				s.reject(log, RejectOverflow, cluster, sub, ok, errs)
				continue
			}
			k, attributed := s.attribute(cluster, sub)
			if attributed && serves != nil && !(*serves)(cluster, sub) {
				attributed = false
			}
			if !attributed {
				s.unknownCluster(log, cluster, sub, ok+errs)
				continue
			}
			if ack == nil {
				ack = s.lookup(r.id, cluster)
			}
			t := Totals{Requests: ok + errs, Errors: errs, Issued: ls.GetTotalIssuedRequests(), InFlight: ls.GetTotalRequestsInProgress()}
			legacyRefused := r.origin.Class == ClassLegacy && !s.legacyMayReport(ctx, k.Namespace)
			switch {
			case ack.Done() != nil:
				later = append(later, heldEntry{ack: ack, cluster: cluster, subZone: sub, key: k, totals: t, legacyRefused: legacyRefused})
				continue
			case !ack.Acked():
				s.reject(log, RejectUnacknowledged, cluster, sub, ok, errs)
				continue
			case legacyRefused:
				s.reject(log, RejectLegacyNotAllowed, cluster, sub, ok, errs)
				continue
			}
			perKey[k] = perKey[k].Add(t)
		}
	}
	for k, t := range perKey {
		s.agg.add(stream, r.origin, k, t)
		s.metrics.requests.WithLabelValues(k.Namespace, k.Service, k.Track).Add(float64(t.Requests))
		s.metrics.errors.WithLabelValues(k.Namespace, k.Service, k.Track).Add(float64(t.Errors))
	}
	s.refreshInFlight()
	if len(later) > 0 {
		s.hold(held, r, later, log)
	}
}

// legacyMayReport reports whether a legacy identity may report on
// namespace.
func (s *Server) legacyMayReport(ctx context.Context, namespace string) bool {
	return s.legacyAllowed != nil && s.legacyAllowed(ctx, namespace) == nil
}

// reject counts a locality entry that is not counted, by reason, and logs it
// at a verbose level (a forger could otherwise flood the log).
func (s *Server) reject(log logr.Logger, reason, cluster, subZone string, ok, errs uint64) {
	s.metrics.rejected.WithLabelValues(reason).Inc()
	log.V(1).Info("load report locality not counted", "reason", reason, "cluster", cluster, "subZone", subZone,
		"successful", ok, "errors", errs)
}

// refreshInFlight sets the in-flight gauge of every local track, summed over
// its revisions (the metric has no revision label: revisions are unbounded).
func (s *Server) refreshInFlight() {
	type track struct{ namespace, service, track string }
	sums := map[track]uint64{}
	for k, t := range s.agg.Local() {
		sums[track{k.Namespace, k.Service, k.Track}] += t.InFlight
	}
	for k, n := range sums {
		s.metrics.inFlight.WithLabelValues(k.namespace, k.service, k.track).Set(float64(n))
	}
}

// unknownCluster counts load for a cluster the attribution rejected and logs
// each such cluster once.
func (s *Server) unknownCluster(log logr.Logger, cluster, subZone string, requests uint64) {
	s.metrics.unknown.Add(float64(requests))
	s.mu.Lock()
	_, seen := s.unknown[cluster]
	if !seen && len(s.unknown) < maxLoggedUnknown {
		s.unknown[cluster] = struct{}{}
	}
	s.mu.Unlock()
	if !seen {
		log.Info("load report for a cluster no service owns; counted as unattributed", "cluster", cluster, "subZone", subZone)
	}
}
