package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluice-dev/sluice/dashboard"
)

type dashboardOptions struct {
	kubeconfig string
	namespaces []string
	port       int
	open       bool
}

func newDashboardCommand() *cobra.Command {
	o := dashboardOptions{}
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the web dashboard on 127.0.0.1, reading the cluster with your kubeconfig",
		Long: `Serves the web dashboard on 127.0.0.1: each team's services, versions, traffic split, error
rates and rollouts, live. It reads the API server with your own kubeconfig and shows only the
namespaces where you may get rollouts. Ctrl-C stops it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDashboard(cmd.Context(), o, cmd.OutOrStdout()) },
	}
	cmd.Flags().StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	cmd.Flags().StringSliceVarP(&o.namespaces, "namespace", "n", nil,
		"namespaces to show if you may not list namespaces (default: the kubeconfig context's)")
	cmd.Flags().IntVar(&o.port, "port", 3100, "port on 127.0.0.1 (0: any free port)")
	cmd.Flags().BoolVar(&o.open, "open", false, "open the dashboard in the default browser")
	return cmd
}

func runDashboard(ctx context.Context, o dashboardOptions, out io.Writer) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	if len(o.namespaces) == 0 {
		ns, _, err := cc.Namespace()
		if err != nil {
			return fmt.Errorf("kubeconfig namespace: %w", err)
		}
		o.namespaces = []string{ns}
	}
	log := newLogger().WithName("dashboard")
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port)))
	if err != nil {
		return fmt.Errorf("dashboard listener: %w", err)
	}
	url := "http://" + l.Addr().String() + "/"
	fmt.Fprintf(out, "sluice: dashboard on %s (Ctrl-C stops it)\n", url)
	if o.open {
		if err := exec.Command("xdg-open", url).Start(); err != nil {
			fmt.Fprintf(out, "sluice: could not open a browser (%v); open %s yourself\n", err, url)
		}
	}
	return serveDashboard(ctx, cfg, o.namespaces, l, log)
}

// serveDashboard serves the dashboard on l with cfg's credentials until ctx
// ends.
func serveDashboard(ctx context.Context, cfg *rest.Config, namespaces []string, l net.Listener, log logr.Logger) error {
	sch, err := scheme()
	if err != nil {
		return err
	}
	c, err := client.New(dashboardRESTConfig(cfg), client.Options{Scheme: sch})
	if err != nil {
		l.Close()
		return fmt.Errorf("connect to the cluster: %w", err)
	}
	srv, err := dashboard.New(dashboard.Options{Client: c, Namespaces: namespaces, Log: log})
	if err != nil {
		l.Close()
		return err
	}
	return srv.Serve(ctx, l)
}

// dashboardRESTConfig is cfg with the dashboard's own client-side rate
// limit. The dashboard polls; it must not be throttled below its readers:
// a config from a kubeconfig file leaves the limit to client-go's default
// of 5 requests per second per resource, and a team page lists the
// Rollouts of every namespace it may see.
func dashboardRESTConfig(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 100, 200
	return cfg
}

// addControllerDashboard serves the dashboard for many people on addr over
// TLS (the webhook's serving certificate), on every replica: each request
// proves its user with a bearer token (TokenReview) and sees only the
// namespaces where that user may get Rollouts (SubjectAccessReview). The
// controller reads with its own rights. Empty addr serves nothing.
func addControllerDashboard(mgr manager.Manager, addr string, configureTLS func(*tls.Config), log logr.Logger) error {
	if addr == "" {
		return nil
	}
	// Direct reads (at most one per namespace every two seconds), not the informer
	// cache: no cluster-wide watch of ReplicaSets and Events for a page.
	c, err := client.New(dashboardRESTConfig(mgr.GetConfig()), client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return fmt.Errorf("dashboard client: %w", err)
	}
	srv, err := dashboard.New(dashboard.Options{Client: c, Authenticator: dashboard.NewTokenAuth(c, nil), Log: log.WithName("dashboard")})
	if err != nil {
		return err
	}
	return mgr.Add(everyReplica(func(ctx context.Context) error {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		configureTLS(cfg)
		l, err := tls.Listen("tcp", addr, cfg)
		if err != nil {
			return fmt.Errorf("dashboard listener: %w", err)
		}
		hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			<-ctx.Done()
			shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := hs.Shutdown(shut); err != nil {
				log.Error(err, "dashboard shutdown")
			}
		}()
		if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve dashboard: %w", err)
		}
		return nil
	}))
}
