package server

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-dev/sluice/xds/lrs"
)

// Resources is a complete desired xDS state: type URL (resource.ListenerType,
// RouteType, ClusterType or EndpointType) to resource name to message.
type Resources map[string]map[string]proto.Message

// DefaultAckTimeout bounds how long an update waits for proxies to
// acknowledge before it moves on.
const DefaultAckTimeout = 10 * time.Second

// Types are the type URLs the server serves, in make-before-break order.
var Types = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType}

// Options configure a [Server].
type Options struct {
	// Logger receives the server's logs; NACKs are logged at level 0.
	Logger logr.Logger
	// Registerer receives the xDS metrics; nil means they are not exported.
	Registerer prometheus.Registerer
	// LoadReporting, when set, is registered next to ADS by Register.
	LoadReporting *lrs.Server
	// AckTimeout bounds each wait of an update for proxy ACKs; zero means
	// DefaultAckTimeout.
	AckTimeout time.Duration
	// Instance prefixes every state-of-the-world version, so a proxy that
	// reconnects to another replica or a restarted server is sent everything
	// again. Zero means a value derived from the start time.
	Instance string
	// Forms names the route configuration forms served besides the default
	// one (see Variant); names are non-empty and contain no '.' or '#'.
	Forms []string
	// FormOf picks the form of a stream from its node and says why; ""
	// means the default form. It must be a pure function of the node. When
	// both Forms and FormOf are unset, the server serves ClientForms chosen
	// by ClientForm.
	FormOf func(*corev3.Node) (form, reason string)
}

// Server serves xDS resources over ADS and tracks proxy ACKs and NACKs.
type Server struct {
	log        logr.Logger
	lrs        *lrs.Server
	ackTimeout time.Duration
	metricsErr error
	configErr  error

	classify      func(*corev3.Node) (string, string)
	forms         map[string]bool
	formCaches    map[string]*cache.LinearCache
	formPublished map[string]map[string]string
	formLimits    map[string]map[string][]string
	defaultLimits map[string][]string

	caches  map[string]*cache.LinearCache
	xds     serverv3.Server
	tracker *tracker
	hist    *history

	// updateMu serializes Update calls and guards versions.
	updateMu sync.Mutex
	versions map[string]uint64

	pubMu     sync.RWMutex
	published map[string]map[string]string
}

// New returns a server with no resources. If the metrics cannot be
// registered, every Update fails with that error.
func New(opts Options) *Server {
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	if opts.Instance == "" {
		opts.Instance = strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	prefix := opts.Instance + "-"
	if opts.Forms == nil && opts.FormOf == nil {
		opts.Forms, opts.FormOf = ClientForms, ClientForm
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		opts.Logger.Error(err, "xDS metrics are not exported")
		m, _ = newMetrics(nil)
	}
	s := &Server{
		log:        opts.Logger,
		lrs:        opts.LoadReporting,
		ackTimeout: opts.AckTimeout,
		metricsErr: err,
		caches:     map[string]*cache.LinearCache{},
		hist:       newHistory(),
		versions:   map[string]uint64{},
		published:  map[string]map[string]string{},

		configErr:     checkForms(opts.Forms),
		classify:      opts.FormOf,
		forms:         map[string]bool{},
		formCaches:    map[string]*cache.LinearCache{},
		formPublished: map[string]map[string]string{},
		formLimits:    map[string]map[string][]string{},
	}
	mux := &cache.MuxCache{
		Classify: func(r *cache.Request) string {
			f, _ := s.formOf(r.GetNode())
			return cacheKey(r.GetTypeUrl(), f)
		},
		ClassifyDelta: func(r *cache.DeltaRequest) string {
			f, _ := s.formOf(r.GetNode())
			return cacheKey(r.GetTypeUrl(), f)
		},
		Caches: map[string]cache.Cache{},
	}
	cacheLog := cpLogger{opts.Logger.WithName("cache")}
	for _, t := range Types {
		c := cache.NewLinearCache(t, cache.WithVersionPrefix(prefix), cache.WithLogger(cacheLog))
		s.caches[t] = c
		mux.Caches[t] = c
		s.published[t] = map[string]string{}
	}
	if s.configErr == nil {
		for _, f := range opts.Forms {
			key := cacheKey(resource.RouteType, f)
			c := cache.NewLinearCache(resource.RouteType, cache.WithVersionPrefix(prefix+f+formSep), cache.WithLogger(cacheLog))
			s.forms[f] = true
			s.formCaches[f] = c
			s.formPublished[f] = map[string]string{}
			mux.Caches[key] = c
		}
	}
	s.tracker = newTracker(opts.Logger, m, s.hist, prefix)
	s.tracker.formOf = s.formOf
	// The go-control-plane server's context only bounds its stream loops;
	// streams end when their gRPC server stops, so it is never cancelled.
	s.xds = serverv3.NewServer(context.Background(), mux, s.tracker,
		sotw.WithOrderedADS(),
		sotw.WithLogger(cpLogger{opts.Logger.WithName("ads")}),
		sotw.DeactivateLegacyWildcardForTypes([]string{resource.RouteType, resource.EndpointType}),
	)
	return s
}

// Register adds the Aggregated Discovery Service (sotw and delta) to g, and
// the Load Reporting Service when Options.LoadReporting is set.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	discovery.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	if s.lrs != nil {
		s.lrs.Register(g)
	}
}

// Version returns the content version currently published for typeURL/name.
func (s *Server) Version(typeURL, name string) (string, bool) {
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	v, ok := s.published[typeURL][name]
	return v, ok
}

// cpLogger adapts logr to go-control-plane's logger. Its Info messages are
// per-request chatter, so they go to verbosity 2.
type cpLogger struct{ l logr.Logger }

// Debugf logs at verbosity 3.
func (c cpLogger) Debugf(format string, args ...any) { c.l.V(3).Info(fmt.Sprintf(format, args...)) }

// Infof logs at verbosity 2.
func (c cpLogger) Infof(format string, args ...any) { c.l.V(2).Info(fmt.Sprintf(format, args...)) }

// Warnf logs at verbosity 0.
func (c cpLogger) Warnf(format string, args ...any) { c.l.Info(fmt.Sprintf(format, args...)) }

// Errorf logs an error.
func (c cpLogger) Errorf(format string, args ...any) {
	c.l.Error(fmt.Errorf(format, args...), "go-control-plane")
}
