package server

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-dev/sluice/xds/auth"
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
	// StaleAfter is how long a connected proxy may leave a response
	// unanswered before waits stop waiting for it (it is reported as stale
	// instead). Zero means DefaultStaleAfter; negative never.
	StaleAfter time.Duration
	// Forms names the route configuration forms served besides the default
	// one (see Variant); names are non-empty and contain no '.' or '#'.
	Forms []string
	// FormOf picks the form of a stream from its node and says why; ""
	// means the default form. It must be a pure function of the node. When
	// both Forms and FormOf are unset, the server serves ClientForms chosen
	// by ClientForm.
	FormOf func(*corev3.Node) (form, reason string)
	// RequireIdentity refuses (codes.Unauthenticated) every ADS stream whose
	// context carries no auth.Identity. When false, such a stream is served
	// and sees every resource; a stream with an identity always sees only
	// what its namespace is granted (see Grants).
	RequireIdentity bool
	// MaxSubscribedNames bounds the resource names one stream may subscribe
	// to, all types together; a request beyond it ends the stream with
	// codes.InvalidArgument. Zero means DefaultMaxSubscribedNames.
	MaxSubscribedNames int
}

// DefaultMaxSubscribedNames is the default Options.MaxSubscribedNames: far
// above what a proxy of a large mesh subscribes to by name.
const DefaultMaxSubscribedNames = 5000

// DefaultStaleAfter is how long a proxy may take to answer a response before
// it is stale: far above a healthy proxy's milliseconds, well below a step.
const DefaultStaleAfter = 30 * time.Second

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

	caches map[string]*cache.LinearCache
	xds    serverv3.Server
	// grants is the current publication's visibility; never nil.
	grants          atomic.Pointer[grantIndex]
	requireIdentity bool
	tracker         *tracker
	hist            *history
	// refs are the clusters each published route content sends traffic to.
	refs *routeRefs

	// firstPublished is closed by the first complete Update: until then no
	// stream is served, so a proxy that connects to a fresh replica is
	// never sent a partial (or empty) configuration.
	firstPublished chan struct{}
	publishedOnce  sync.Once

	// updateMu serializes Update calls and guards versions.
	updateMu sync.Mutex
	versions map[string]uint64
	// heldMu guards held and releasing: the route configurations held
	// back until their subscribers loaded a cluster (warmload.go), and
	// whether releaseHeld runs. held changes under updateMu too.
	heldMu    sync.Mutex
	held      map[heldKey]heldRoute
	releasing bool

	pubMu     sync.RWMutex
	published map[string]map[string]string
}

// New returns a server with no resources. If the metrics cannot be
// registered, every Update fails with that error.
func New(opts Options) *Server {
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	if opts.MaxSubscribedNames <= 0 {
		opts.MaxSubscribedNames = DefaultMaxSubscribedNames
	}
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
		refs:       newRouteRefs(),
		versions:   map[string]uint64{},
		published:  map[string]map[string]string{},

		firstPublished: make(chan struct{}),
		configErr:      checkForms(opts.Forms),
		classify:       opts.FormOf,
		forms:          map[string]bool{},
		formCaches:     map[string]*cache.LinearCache{},
		formPublished:  map[string]map[string]string{},
		formLimits:     map[string]map[string][]string{},

		requireIdentity: opts.RequireIdentity,
	}
	s.grants.Store(newGrantIndex(Grants{}))
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
		c := cache.NewLinearCache(t, cache.WithLogger(cacheLog))
		s.caches[t] = c
		mux.Caches[t] = c
		s.published[t] = map[string]string{}
	}
	staleAfter := opts.StaleAfter
	switch {
	case staleAfter == 0:
		staleAfter = DefaultStaleAfter
	case staleAfter < 0:
		staleAfter = 0
	}
	if s.configErr == nil {
		for _, f := range opts.Forms {
			key := cacheKey(resource.RouteType, f)
			c := cache.NewLinearCache(resource.RouteType, cache.WithLogger(cacheLog))
			s.forms[f] = true
			s.formCaches[f] = c
			s.formPublished[f] = map[string]string{}
			mux.Caches[key] = c
		}
	}
	s.tracker = newTracker(opts.Logger, m, s.hist, staleAfter)
	s.tracker.formOf = s.formOf
	s.tracker.grants = &s.grants
	s.tracker.maxNames = opts.MaxSubscribedNames
	scoped := &scopedCache{inner: mux, scopes: s.tracker.scopes, grants: &s.grants}
	// The go-control-plane server's context only bounds its stream loops;
	// streams end when their gRPC server stops, so it is never cancelled.
	s.xds = serverv3.NewServer(context.Background(), scoped, s.tracker,
		sotw.WithOrderedADS(),
		sotw.WithLogger(cpLogger{opts.Logger.WithName("ads")}),
		sotw.DeactivateLegacyWildcardForTypes([]string{resource.RouteType, resource.EndpointType}),
	)
	return s
}

// Register adds the Aggregated Discovery Service (sotw and delta) to g, and
// the Load Reporting Service when Options.LoadReporting is set.
//
// A stream opened before the first complete publication is held, unanswered,
// until that publication (or until the client gives up). With
// Options.RequireIdentity, a stream without an identity is refused first.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	discovery.RegisterAggregatedDiscoveryServiceServer(g, gatedADS{Server: s.xds, s: s})
	if s.lrs != nil {
		s.lrs.Register(g)
	}
}

// Published reports whether a complete configuration has been published;
// until then ADS streams are held. A replica is not ready before it.
func (s *Server) Published() bool {
	select {
	case <-s.firstPublished:
		return true
	default:
		return false
	}
}

// gatedADS holds every ADS stream until the first complete publication.
type gatedADS struct {
	serverv3.Server
	s *Server
}

func (g gatedADS) wait(ctx context.Context) error {
	if _, ok := auth.FromContext(ctx); !ok && g.s.requireIdentity {
		return status.Error(codes.Unauthenticated, "xDS stream without an identity: present a ServiceAccount token or a client certificate")
	}
	select {
	case <-g.s.firstPublished:
		return nil
	case <-ctx.Done():
		return status.Error(codes.Unavailable, "this Sluice replica has not published its first configuration yet")
	}
}

// StreamAggregatedResources serves a state-of-the-world stream once published.
func (g gatedADS) StreamAggregatedResources(stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	if err := g.wait(stream.Context()); err != nil {
		return err
	}
	return g.Server.StreamAggregatedResources(stream)
}

// DeltaAggregatedResources serves a delta stream once published.
func (g gatedADS) DeltaAggregatedResources(stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	if err := g.wait(stream.Context()); err != nil {
		return err
	}
	return g.Server.DeltaAggregatedResources(stream)
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
