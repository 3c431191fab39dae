package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	"github.com/sluice-dev/sluice/local/demo"
	"github.com/sluice-dev/sluice/xds/auth"
)

type devOptions struct {
	dir         string
	buildOnly   bool
	demo        bool
	xdsPort     int
	webhookPort int
	metricsPort int
	// dashboardPort serves the dashboard on 127.0.0.1 (0: any free port).
	dashboardPort int
	// replicas is how many controller processes run; 1 runs the controller
	// in this process.
	replicas int
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
	cmd.Flags().IntVar(&o.dashboardPort, "dashboard-port", 3100, "port of the web dashboard on 127.0.0.1 (0: any free port)")
	cmd.Flags().IntVar(&o.replicas, "replicas", 1, "controller replicas: above 1, each runs as a process of its own on free ports, electing a leader (the --*-port flags then do not apply)")
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
	// Component logs (controller, pod runtime) go to a file, so the
	// terminal keeps only progress and the live view.
	logPath, closeLog, err := logToFile(o.dir)
	if err != nil {
		return err
	}
	defer closeLog()
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
	ctrlDone := make(chan error, 1)
	var replicas []devReplica
	if o.replicas > 1 {
		f, rs, err := startDevFleet(ctx, c, o, ctrlOpts, progress)
		if err != nil {
			return err
		}
		defer f.Stop()
		replicas = rs
	} else {
		stop, err := startDevController(ctx, c, o, ctrlOpts, ctrlDone)
		if err != nil {
			return err
		}
		defer stop()
		replicas = []devReplica{{name: "sluice", xds: fmt.Sprintf("127.0.0.1:%d", o.xdsPort), legacy: fmt.Sprintf("127.0.0.1:%d", ctrlOpts.xdsAuth.legacyPort)}}
		fmt.Fprintf(progress, "sluice: ready in %s: webhooks https://127.0.0.1:%d, xDS 127.0.0.1:%d (TLS; plaintext for old clients on %d), metrics http://%s/metrics\n",
			time.Since(start).Round(time.Millisecond), o.webhookPort, o.xdsPort, ctrlOpts.xdsAuth.legacyPort, ctrlOpts.metricsAddr)
	}
	bootstraps, err := writeDevBootstraps(ctx, c, o, ctrlOpts, replicas, log)
	if err != nil {
		return err
	}
	dashboardURL, err := startDevDashboard(ctx, c, o.dashboardPort, log.WithName("dashboard"))
	if err != nil {
		return err
	}
	fmt.Fprintf(progress, "sluice: dashboard %s; component logs in %s\n", dashboardURL, logPath)
	if o.demo {
		fmt.Fprintf(progress, "sluice: follow the demo at %srollout/%s/%s\n", dashboardURL, demo.Namespace, demo.Service)
	}
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

// startDevController runs the controller in this process, registered by
// its own webhook port, and waits until it is ready. stop stops it.
func startDevController(ctx context.Context, c *cluster.Cluster, o devOptions, ctrlOpts controllerOptions, ctrlDone chan error) (stop func(), err error) {
	mutating, validating, err := localWebhookConfigurations(fmt.Sprintf("https://127.0.0.1:%d", o.webhookPort), ctrlOpts.namespace)
	if err != nil {
		return nil, err
	}
	if err := c.Install(ctx, ctrlOpts.namespace, mutating, validating); err != nil {
		return nil, fmt.Errorf("install sluice into the local cluster: %w", err)
	}
	ctrlCtx, stopCtrl := context.WithCancel(ctx)
	go func() { ctrlDone <- runController(ctrlCtx, ctrlOpts) }()
	stop = func() {
		stopCtrl()
		if err := <-ctrlDone; err != nil {
			fmt.Fprintln(os.Stderr, "sluice: controller:", err)
		}
	}
	if err := waitHealthy(ctx, "http://"+ctrlOpts.healthAddr+"/readyz", ctrlDone); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
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

// logOutput receives the process' log lines; `sluice dev` points it at a
// file.
var logOutput io.Writer = os.Stderr

// newLogger returns the process logger (klog text format on logOutput) and
// makes it the logger of client-go and controller-runtime too.
func newLogger() logr.Logger {
	cfg := textlogger.NewConfig(textlogger.Verbosity(0), textlogger.Output(logOutput))
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
