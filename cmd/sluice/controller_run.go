package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/rollout/metrics"
	"github.com/sluice-dev/sluice/traffic"
	"github.com/sluice-dev/sluice/webhook"
	"github.com/sluice-dev/sluice/xds/lrs"
	"github.com/sluice-dev/sluice/xds/server"
)

// Certificate modes.
const (
	certModeSelf        = "self"         // Sluice issues, rotates and injects its own CA
	certModeCertManager = "cert-manager" // cert-manager writes the Secret and injects the CA
)

type controllerOptions struct {
	kubeconfig   string
	webhookPort  int
	webhookHost  string
	xdsPort      int
	xdsHost      string
	metricsAddr  string
	healthAddr   string
	pprofAddr    string
	dashAddr     string // the dashboard for many people; empty: none
	leaderElect  bool
	namespace    string
	certMode     string
	certSecret   string
	certDNSNames []string
	certIPs      []string
	webhookName  string
	lrsInterval  time.Duration
	promURL      string
	promQueries  string
	promTimeout  time.Duration
	peers        string
	podIP        string
	staleAfter   time.Duration
	canaryWait   time.Duration
	selfUsername string
	metrics      metricsAuth
	xdsAuth      xdsAuthOptions
	peerPort     int

	leaseDuration, renewDeadline, retryPeriod time.Duration
	replicaName                               string
	// incarnation names this process among the replicas' load counters: the
	// replica's name and start, since a restarted replica's counts start at
	// zero (set by runController).
	incarnation string
}

func (o *controllerOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then in-cluster)")
	f.IntVar(&o.webhookPort, "webhook-port", 9443, "port of the admission webhook server (TLS)")
	f.StringVar(&o.webhookHost, "webhook-host", "", "address the webhook server binds (default: all)")
	f.IntVar(&o.xdsPort, "xds-port", 18000, "port of the xDS (ADS) and load reporting server (TLS with the serving certificate; clients prove a ServiceAccount with a token or a client certificate)")
	f.StringVar(&o.xdsHost, "xds-host", "", "address the xDS server binds (default: all)")
	f.StringVar(&o.metricsAddr, "metrics-addr", ":8080", "address of the Prometheus metrics endpoint (0 disables)")
	f.StringVar(&o.healthAddr, "health-addr", ":8081", "address of the /healthz and /readyz endpoints")
	f.StringVar(&o.pprofAddr, "pprof-addr", "", "address of the Go profiler's /debug/pprof endpoints; empty (the default) serves none")
	f.StringVar(&o.dashAddr, "dashboard-addr", "", "address of the web dashboard over HTTPS for many people (bearer token, TokenReview, SubjectAccessReview); empty (the default) serves none")
	f.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader among replicas: only it drives rollouts and rotates certificates; a replica that loses the lease keeps serving webhooks and xDS and campaigns again")
	f.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", leaseFlags.duration, "how long a leader's lease lasts without renewal before another replica may take it")
	f.DurationVar(&o.renewDeadline, "leader-elect-renew-deadline", leaseFlags.renew, "how long the leader keeps trying to renew before it stops its leader-only work (< lease duration)")
	f.DurationVar(&o.retryPeriod, "leader-elect-retry-period", leaseFlags.retry, "how often replicas try to take or renew the lease")
	f.StringVar(&o.namespace, "namespace", "sluice-system", "namespace Sluice runs in (leader lease, certificate Secret)")
	f.StringVar(&o.certMode, "cert-mode", certModeSelf, "webhook certificates: self (issued, rotated and injected by Sluice) or cert-manager (Sluice only serves the Secret)")
	f.StringVar(&o.certSecret, "cert-secret", "sluice-webhook-tls", "Secret holding the webhook CA and serving certificate")
	f.StringSliceVar(&o.certDNSNames, "cert-dns-names", nil, "DNS names of the serving certificate of the webhook and xDS listeners (default: sluice-webhook.<namespace>.svc, sluice-xds.<namespace>.svc, and both .svc.cluster.local)")
	f.StringSliceVar(&o.certIPs, "cert-ips", nil, "IP addresses of the serving certificate (e.g. 127.0.0.1 for webhooks registered by URL)")
	f.StringVar(&o.webhookName, "webhook-config-name", "sluice", "name of the Mutating- and ValidatingWebhookConfiguration to keep the CA bundle in")
	f.DurationVar(&o.lrsInterval, "load-report-interval", lrs.DefaultInterval, "load reporting interval asked of every xDS client (> 0)")
	f.StringVar(&o.promURL, "prometheus-url", "", "Prometheus base URL; when set, rollout analysis reads request and error rates there instead of from load reports")
	f.StringVar(&o.promQueries, "prometheus-queries", "sluice", "built-in queries for --prometheus-url: sluice (sluice_route_* from load reports) or envoy (Envoy per-cluster stats)")
	f.DurationVar(&o.promTimeout, "prometheus-timeout", 5*time.Second, "timeout of one Prometheus query")
	f.StringVar(&o.peers, "peers", "", "the replicas, comma-separated: DNS names resolving to replicas (a headless Service; their --peer-port is dialled) or host:port addresses; replicas forward their load reports to each other so the leader judges canaries on the sum")
	f.StringVar(&o.podIP, "pod-ip", os.Getenv("POD_IP"), "this replica's IP as --peers resolves it (default $POD_IP)")
	f.DurationVar(&o.canaryWait, "canary-deletion-wait", traffic.DefaultCanaryDeletionWait, "how long a rolled-back or abandoned canary is kept for a proxy that rejected the stable routes or disconnected while its last acknowledged routes still send the canary traffic; then the canary is deleted anyway")
	f.DurationVar(&o.staleAfter, "proxy-stale-after", server.DefaultStaleAfter, "how long a connected proxy may leave xDS responses unanswered before rollouts stop waiting for it (it is named on the Rollout as stale); negative: wait forever")
	o.addPeerFlags(f)
	f.StringVar(&o.selfUsername, "self-username", "", "user name Sluice's own API requests carry; only its writes create canaries that policies do not judge again (default: asked of the API server with a SelfSubjectReview)")
	o.metrics.addFlags(cmd)
	o.xdsAuth.addFlags(f)
}

// Client-side rate limit of the controller's API client, whichever way its
// configuration was found: the leader patches the status of every active
// Rollout every few seconds (counts, callers), beyond client-go's default of
// 5 requests per second for a configuration read from a kubeconfig file.
// The API server's priority and fairness still protects it.
const (
	controllerQPS   = 50
	controllerBurst = 100
)

func (o controllerOptions) restConfig() (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if o.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	} else {
		cfg, err = ctrl.GetConfig()
	}
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = max(cfg.QPS, controllerQPS), max(cfg.Burst, controllerBurst)
	return cfg, nil
}

// scheme knows the built-in kinds and Sluice's CRDs.
func scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

func runController(ctx context.Context, o controllerOptions) error {
	log := newLogger().WithName("controller")
	ctx = logr.NewContext(ctx, log)
	tuneGC(log)
	o.incarnation = fmt.Sprintf("%s-%d", o.replicaName, time.Now().UnixNano())
	cfg, err := o.restConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	sch, err := scheme()
	if err != nil {
		return err
	}

	reloader, err := o.reloader(cs, log)
	if err != nil {
		return err
	}
	campaign, err := o.campaign(cs, log)
	if err != nil {
		return err
	}
	base, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:  sch,
		Metrics: o.metrics.serverOptions(o.metricsAddr, reloader.ConfigureTLS),
		// The admission handlers read a Namespace on every request and
		// never modify it: hand them the cached object, not a deep copy.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Namespace{}: {UnsafeDisableDeepCopy: ptr.To(true)},
		}},
		HealthProbeBindAddress: o.healthAddr,
		PprofBindAddress:       o.pprofAddr,
		// No leader election here: controller-runtime's ends the process
		// when the lease is lost. The campaign stops only the leader-only
		// work, and campaigns again.
		WebhookServer: ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host:    o.webhookHost,
			Port:    o.webhookPort,
			TLSOpts: []func(*tls.Config){reloader.ConfigureTLS},
		}),
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := base.Add(campaign); err != nil {
		return err
	}
	mgr := electedManager{Manager: base, campaign: campaign}
	if err := mgr.Add(reloader); err != nil {
		return err
	}
	if err := registerRolloutMetrics(mgr, campaign.Leading, log); err != nil {
		return err
	}
	if err := addControllerDashboard(mgr, o.dashAddr, reloader.ConfigureTLS, log); err != nil {
		return err
	}
	if o.certMode == certModeSelf {
		rot, err := o.rotator(cs, log)
		if err != nil {
			return err
		}
		if err := mgr.Add(rot); err != nil {
			return err
		}
	}
	if err := addClientTrust(mgr, cs, o, log); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("certificates", reloader.Checker); err != nil {
		return err
	}

	// Load counts only for clusters the reporting identity acknowledged
	// over ADS, on this replica or another (a client's load reports may
	// reach another replica than its ADS stream). The xDS server is built
	// with the load server, so the check reaches it through this value,
	// completed just below.
	acks := &server.FleetAcks{}
	loads, err := lrs.NewServer(lrs.Options{
		LookupAck:  acks.Lookup,
		Interval:   o.lrsInterval,
		Attribute:  lrs.AttributeCluster,
		Registerer: ctrlmetrics.Registry,
		Logger:     log.WithName("lrs"),
		// Both xDS listeners authenticate every stream (xdsListeners).
		RequireIdentity: true,
		LegacyAllowed:   legacyRule(mgr.GetCache(), o.xdsAuth.legacyAll),
	})
	if err != nil {
		return fmt.Errorf("load reporting: %w", err)
	}
	xdsServer := server.New(server.Options{
		Logger:        log.WithName("xds"),
		Registerer:    ctrlmetrics.Registry,
		LoadReporting: loads,
		StaleAfter:    o.staleAfter,
		// Every listener authenticates (or, for the legacy listener, binds
		// a namespace): a stream without an identity is a wiring bug.
		RequireIdentity: true,
	})
	acks.Local = xdsServer
	// A replica is ready once it has published a complete configuration:
	// before that its ADS streams are held, never answered with less than
	// the truth.
	if err := mgr.AddReadyzCheck("xds-published", func(*http.Request) error {
		if !xdsServer.Published() {
			return errors.New("no complete xDS configuration published yet")
		}
		return nil
	}); err != nil {
		return err
	}
	listeners, err := o.xdsListeners(cs, reloader, mgr.GetCache(), log)
	if err != nil {
		return err
	}
	for _, l := range listeners {
		xdsServer.Register(l.server)
		if err := mgr.Add(grpcRunnable{server: l.server, addr: l.addr}); err != nil {
			return err
		}
	}
	fleet, err := o.peerChannel(mgr, reloader.GetCertificate, xdsServer, loads, log)
	if err != nil {
		return err
	}
	if fleet != nil {
		defer fleet.Close()
		acks.Peers = fleet.Peers
	}
	prom, err := o.prometheus()
	if err != nil {
		return err
	}
	self := o.selfUsername
	if self == "" {
		if self, err = webhook.Identity(ctx, cs.AuthenticationV1()); err != nil {
			return fmt.Errorf("%w (or set --self-username)", err)
		}
	}
	log.Info("admission trusts canaries written by Sluice's own identity", "user", self)
	if err := addComponents(mgr, components{xds: xdsServer, loads: loads, fleet: fleet, namespace: o.namespace, self: self, replica: o.replicaName, incarnation: o.incarnation, prometheus: prom, log: log, canaryDeletionWait: o.canaryWait}); err != nil {
		return err
	}
	log.Info("starting", "webhookPort", o.webhookPort, "xdsPort", o.xdsPort, "metrics", o.metricsAddr, "health", o.healthAddr, "leaderElect", o.leaderElect)
	return mgr.Start(ctx)
}

func (o controllerOptions) reloader(cs kubernetes.Interface, log logr.Logger) (*certs.Reloader, error) {
	switch o.certMode {
	case certModeSelf, certModeCertManager:
	default:
		return nil, fmt.Errorf("--cert-mode %q: want %s or %s", o.certMode, certModeSelf, certModeCertManager)
	}
	r, err := certs.NewReloader(cs, certs.ReloaderOptions{
		Namespace:  o.namespace,
		SecretName: o.certSecret,
		Registerer: ctrlmetrics.Registry,
		Logger:     log.WithName("certs"),
	})
	if err != nil {
		return nil, fmt.Errorf("certificate reloader: %w", err)
	}
	return r, nil
}

func (o controllerOptions) rotator(cs kubernetes.Interface, log logr.Logger) (*certs.Rotator, error) {
	dns := o.certDNSNames
	if len(dns) == 0 {
		dns = append(certs.ServiceDNSNames("sluice-webhook", o.namespace), certs.ServiceDNSNames("sluice-xds", o.namespace)...)
	}
	var ips []net.IP
	for _, s := range o.certIPs {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil {
			return nil, fmt.Errorf("--cert-ips: %q is not an IP address", s)
		}
		ips = append(ips, ip)
	}
	r, err := certs.NewRotator(cs, certs.RotatorOptions{
		Namespace:          o.namespace,
		SecretName:         o.certSecret,
		DNSNames:           dns,
		IPAddresses:        ips,
		MutatingWebhooks:   []string{o.webhookName},
		ValidatingWebhooks: []string{o.webhookName},
		Logger:             log.WithName("certs"),
	})
	if err != nil {
		return nil, fmt.Errorf("certificate rotator: %w", err)
	}
	return r, nil
}

// grpcRunnable serves a gRPC server on every replica (not only the leader)
// until the manager stops.
type grpcRunnable struct {
	server *grpc.Server
	addr   string
	what   string // names the listener in errors; "xDS" when empty
}

func (r grpcRunnable) NeedLeaderElection() bool { return false }

func (r grpcRunnable) Start(ctx context.Context) error {
	what := r.what
	if what == "" {
		what = "xDS"
	}
	l, err := net.Listen("tcp", r.addr)
	if err != nil {
		return fmt.Errorf("listen for %s on %s: %w", what, r.addr, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- r.server.Serve(l) }()
	select {
	case <-ctx.Done():
		// ADS streams never end on their own: let in-flight requests finish
		// for a moment, then close the streams (clients reconnect elsewhere).
		stopped := make(chan struct{})
		go func() { r.server.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(2 * time.Second):
			r.server.Stop()
		}
		return nil
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", what, err)
	}
}

// xdsKeepalive reaps dead connections (a half-open connection is otherwise
// kept for gRPC's default two hours) and moves long-lived streams between
// replicas now and then, while tolerating the clients' own keepalives:
// grpc-go and C-core ping no more often than every 10 s when configured to,
// grpc-js-xds every 5 minutes.
func xdsKeepalive() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  30 * time.Second,
			Timeout:               10 * time.Second,
			MaxConnectionAge:      30 * time.Minute,
			MaxConnectionAgeGrace: time.Minute,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
}

// prometheus returns the Prometheus metric source, or nil without
// --prometheus-url.
func (o controllerOptions) prometheus() (*metrics.Prometheus, error) {
	if o.promURL == "" {
		return nil, nil
	}
	var queries metrics.QuerySet
	switch o.promQueries {
	case "sluice":
		queries = metrics.SluiceQueries()
	case "envoy":
		queries = metrics.EnvoyQueries(envoyClusterTemplate)
	default:
		return nil, fmt.Errorf("--prometheus-queries %q: want sluice or envoy", o.promQueries)
	}
	p, err := metrics.NewPrometheus(metrics.PrometheusConfig{Address: o.promURL, Timeout: o.promTimeout, Queries: queries})
	if err != nil {
		return nil, fmt.Errorf("prometheus source: %w", err)
	}
	return p, nil
}

// envoyClusterTemplate matches the Envoy clusters of one track of a service,
// all ports (router.ClusterName: namespace/service/port/track).
const envoyClusterTemplate = "{{.Namespace}}/{{.Service}}/[0-9]+/{{.Track}}"
