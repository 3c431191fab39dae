package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

type controllerOptions struct {
	kubeconfig  string
	webhookPort int
	xdsPort     int
	metricsAddr string
	healthAddr  string
	leaderElect bool
	namespace   string
}

func (o *controllerOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, then $KUBECONFIG)")
	f.IntVar(&o.webhookPort, "webhook-port", 9443, "port of the admission webhook server (TLS)")
	f.IntVar(&o.xdsPort, "xds-port", 18000, "port of the xDS (ADS) and load reporting server")
	f.StringVar(&o.metricsAddr, "metrics-addr", ":8080", "address of the Prometheus metrics endpoint")
	f.StringVar(&o.healthAddr, "health-addr", ":8081", "address of the /healthz and /readyz endpoints")
	f.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader among replicas: only it drives rollouts and rotates certificates")
	f.StringVar(&o.namespace, "namespace", "sluice-system", "namespace Sluice runs in (leader lease, certificate Secret)")
}

func (o controllerOptions) restConfig() (*rest.Config, error) {
	if o.kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	}
	return ctrl.GetConfig()
}

func runController(ctx context.Context, o controllerOptions) error {
	cfg, err := o.restConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:  o.healthAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "sluice-controller",
		LeaderElectionNamespace: o.namespace,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	g := grpc.NewServer()
	if err := mgr.Add(grpcRunnable{server: g, addr: net.JoinHostPort("", strconv.Itoa(o.xdsPort))}); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// grpcRunnable serves a gRPC server on every replica (not only the leader)
// until the manager stops.
type grpcRunnable struct {
	server *grpc.Server
	addr   string
}

func (r grpcRunnable) NeedLeaderElection() bool { return false }

func (r grpcRunnable) Start(ctx context.Context) error {
	l, err := net.Listen("tcp", r.addr)
	if err != nil {
		return fmt.Errorf("listen for xDS on %s: %w", r.addr, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- r.server.Serve(l) }()
	select {
	case <-ctx.Done():
		r.server.GracefulStop()
		return nil
	case err := <-errc:
		return fmt.Errorf("serve xDS: %w", err)
	}
}
