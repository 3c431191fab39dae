package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/sluice-dev/sluice/e2e/cluster"
)

type devOptions struct {
	dir       string
	buildOnly bool
	demo      bool
	xdsPort   int
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
	cmd.Flags().IntVar(&o.xdsPort, "xds-port", 18000, "xDS port of the controller")
	return cmd
}

func runDev(ctx context.Context, o devOptions) error {
	progress := os.Stderr
	if o.buildOnly {
		_, err := cluster.EnsureBinaries(ctx, progress)
		return err
	}
	if o.dir == "" {
		cache, err := cluster.CacheDir()
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
	bootstrap := filepath.Join(o.dir, "xds-bootstrap.json")
	if err := writeBootstrap(bootstrap, fmt.Sprintf("127.0.0.1:%d", o.xdsPort)); err != nil {
		return err
	}
	fmt.Fprintf(progress, "sluice: ready in %s (logs in %s)\n", time.Since(start).Round(time.Millisecond), filepath.Join(o.dir, "logs"))
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig())
	fmt.Printf("export GRPC_XDS_BOOTSTRAP=%s\n", bootstrap)
	select {
	case <-ctx.Done():
		return nil
	case <-watchCluster(ctx, c):
		return errors.Join(errors.New("a cluster component stopped"), c.Err())
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

// writeBootstrap writes a grpc-go xDS bootstrap file pointing proxyless
// clients at the local xDS server.
func writeBootstrap(path, server string) error {
	b := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      server,
			"channel_creds":   []any{map[string]any{"type": "insecure"}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{"id": "sluice-dev-client", "locality": map[string]any{"zone": "local"}},
	}
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write xDS bootstrap: %w", err)
	}
	return nil
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
