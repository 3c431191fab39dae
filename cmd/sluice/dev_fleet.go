package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/sluice-dev/sluice/local/cluster"
	"github.com/sluice-dev/sluice/local/fleet"
)

// startDevFleet runs `sluice dev --replicas N`: N controller processes
// electing a leader, with the webhooks registered through one front address
// in front of them (as a Service would be), and says where each listens and
// its process id, so a person can kill one and watch the others go on.
func startDevFleet(ctx context.Context, c *cluster.Cluster, o devOptions, ctrl controllerOptions, progress io.Writer) (*fleet.Fleet, []devReplica, error) {
	bin, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find the sluice binary for the replicas: %w", err)
	}
	logs := filepath.Join(o.dir, "replicas")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, nil, err
	}
	f, err := fleet.New(fleet.Options{
		Binary: bin, Kubeconfig: c.Kubeconfig(), Dir: logs, Replicas: o.replicas, Namespace: ctrl.namespace,
		Args: []string{"--xds-legacy-all-namespaces", "--load-report-interval=" + ctrl.lrsInterval.String()},
	})
	if err != nil {
		return nil, nil, err
	}
	mutating, validating, err := localWebhookConfigurations("https://"+f.Webhook.Addr(), ctrl.namespace)
	if err != nil {
		f.Stop()
		return nil, nil, err
	}
	if err := c.Install(ctx, ctrl.namespace, mutating, validating); err != nil {
		f.Stop()
		return nil, nil, fmt.Errorf("install sluice into the local cluster: %w", err)
	}
	fmt.Fprintf(progress, "sluice: starting %d controller replicas (logs in %s)\n", o.replicas, logs)
	if err := f.Start(ctx); err != nil {
		f.Stop()
		return nil, nil, err
	}
	replicas := make([]devReplica, 0, len(f.Replicas))
	for _, r := range f.Replicas {
		legacy := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Legacy))
		replicas = append(replicas, devReplica{name: r.Name, xds: r.XDSAddr(), legacy: legacy})
		fmt.Fprintf(progress, "sluice: replica %s pid %d: xDS %s (legacy %s), webhook 127.0.0.1:%d, peers 127.0.0.1:%d, metrics %s, health %s\n",
			r.Name, r.Pid(), r.XDSAddr(), legacy, r.Webhook, r.Peer, r.MetricsURL(), r.HealthURL())
	}
	fmt.Fprintf(progress, "sluice: webhooks reach every replica through https://%s; kill a replica (kill -9 PID) and watch another lead (sluice_leader on its metrics)\n", f.Webhook.Addr())
	return f, replicas, nil
}
