package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/sluice-dev/sluice/internal/cachedir"
	"github.com/sluice-dev/sluice/local/cluster"
	"github.com/sluice-dev/sluice/xds/auth"
)

type devOptions struct {
	dir         string
	buildOnly   bool
	demo        bool
	xdsPort     int
	webhookPort int
	metricsPort int
}

func newDevCommand() *cobra.Command {
	o := devOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run Sluice on a local cluster built from upstream sources (the embedded default)",
		Long: `Starts a local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok and the pod runtime, all on loopback) and the Sluice controller, registers the
webhooks, and prints the environment to use them. The first run builds the cluster binaries (minutes);
later runs start in seconds. Ctrl-C stops everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDev(cmd.Context(), o) },
	}
	cmd.Flags().StringVar(&o.dir, "dir", "", "working directory for the cluster (default <user cache dir>/sluice/dev)")
	cmd.Flags().BoolVar(&o.buildOnly, "build-only", false, "build and cache the cluster binaries, then exit")
	cmd.Flags().BoolVar(&o.demo, "demo", false, "play the scripted canary story once the cluster is up")
	cmd.Flags().IntVar(&o.xdsPort, "xds-port", 18000, "xDS port of the controller (TLS; the plaintext listener for old clients is the port after the next)")
	cmd.Flags().IntVar(&o.webhookPort, "webhook-port", 9443, "webhook port of the controller")
	cmd.Flags().IntVar(&o.metricsPort, "metrics-port", 8080, "metrics port of the controller (health is the next port)")
	return cmd
}

func runDev(ctx context.Context, o devOptions) error {
	progress := os.Stderr
	if o.buildOnly {
		_, err := cluster.EnsureBinaries(ctx, progress)
		return err
	}
	if o.dir == "" {
		cache, err := cachedir.Dir()
		if err != nil {
			return err
		}
		o.dir = filepath.Join(cache, "dev")
	}
	log := newLogger()
	start := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{Dir: o.dir, Progress: progress, Log: log.WithName("pods")})
	if err != nil {
		return fmt.Errorf("start local cluster: %w", err)
	}
	defer func() {
		fmt.Fprintln(progress, "sluice: stopping the local cluster")
		c.Stop()
		fmt.Fprintln(progress, "sluice: stopped")
	}()
	ctrlOpts := controllerOptions{
		kubeconfig:  c.Kubeconfig(),
		webhookHost: "127.0.0.1",
		webhookPort: o.webhookPort,
		xdsHost:     "127.0.0.1",
		xdsPort:     o.xdsPort,
		metricsAddr: fmt.Sprintf("127.0.0.1:%d", o.metricsPort),
		healthAddr:  fmt.Sprintf("127.0.0.1:%d", o.metricsPort+1),
		namespace:   "sluice-system",
		certMode:    certModeSelf,
		certSecret:  "sluice-webhook-tls",
		certIPs:     []string{"127.0.0.1"},
		webhookName: "sluice",
		lrsInterval: time.Second,
		xdsAuth: xdsAuthOptions{
			tokenAudience:      auth.DefaultAudience,
			legacyPort:         o.xdsPort + 2,
			legacyAll:          true,
			maxStreamsPerIdent: auth.DefaultMaxStreamsPerIdentity,
		},
	}
	mutating, validating, err := localWebhookConfigurations(fmt.Sprintf("https://127.0.0.1:%d", o.webhookPort), ctrlOpts.namespace)
	if err != nil {
		return err
	}
	if err := c.Install(ctx, ctrlOpts.namespace, mutating, validating); err != nil {
		return fmt.Errorf("install sluice into the local cluster: %w", err)
	}
	ctrlCtx, stopCtrl := context.WithCancel(ctx)
	ctrlDone := make(chan error, 1)
	go func() { ctrlDone <- runController(ctrlCtx, ctrlOpts) }()
	defer func() {
		stopCtrl()
		if err := <-ctrlDone; err != nil {
			fmt.Fprintln(progress, "sluice: controller:", err)
		}
	}()
	if err := waitHealthy(ctx, "http://"+ctrlOpts.healthAddr+"/readyz", ctrlDone); err != nil {
		return err
	}
	bootstraps, err := writeDevBootstraps(ctx, c, o, ctrlOpts, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(progress, "sluice: ready in %s: webhooks https://127.0.0.1:%d, xDS 127.0.0.1:%d (TLS; plaintext for old clients on %d), metrics http://%s/metrics (logs in %s)\n",
		time.Since(start).Round(time.Millisecond), o.webhookPort, o.xdsPort, ctrlOpts.xdsAuth.legacyPort, ctrlOpts.metricsAddr, filepath.Join(o.dir, "logs"))
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig())
	printDevBootstraps(bootstraps, ctrlOpts.xdsAuth.tokenAudience)
	if o.demo {
		if err := playDemo(ctx, c, bootstraps.TLS); err != nil && ctx.Err() == nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	select {
	case <-ctx.Done():
		return nil
	case <-watchCluster(ctx, c):
		return errors.Join(errors.New("a cluster component stopped"), c.Err())
	case err := <-ctrlDone:
		ctrlDone <- err // for the deferred stop
		return fmt.Errorf("controller stopped: %w", err)
	}
}

// watchCluster closes the returned channel if a cluster component exits.
func watchCluster(ctx context.Context, c *cluster.Cluster) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if c.Err() != nil {
					close(ch)
					return
				}
			}
		}
	}()
	return ch
}

// newLogger returns the process logger (klog text format on stderr) and
// makes it the logger of client-go and controller-runtime too.
func newLogger() logr.Logger {
	cfg := textlogger.NewConfig(textlogger.Verbosity(0), textlogger.Output(os.Stderr))
	l := textlogger.NewLogger(cfg)
	klog.SetLogger(l)
	ctrl.SetLogger(l)
	return l
}

// waitHealthy polls url until it answers 200, the controller stops, or ctx
// ends.
func waitHealthy(ctx context.Context, url string, ctrlDone chan error) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		last = err
		select {
		case err := <-ctrlDone:
			ctrlDone <- err
			return fmt.Errorf("controller stopped before it was ready: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("controller not ready: %w (last: %v)", ctx.Err(), last)
		case <-t.C:
		}
	}
}
