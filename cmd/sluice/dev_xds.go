package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/go-logr/logr"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/local/cluster"
	"github.com/sluice-dev/sluice/local/demo"
	"github.com/sluice-dev/sluice/xds/auth"
	// Imported first of all for its side effect: the demo's in-process
	// xDS clients send the bootstrap's token.
	"github.com/sluice-dev/sluice/xds/auth/callcreds"
)

// devClientAccount is the ServiceAccount the printed xDS bootstrap proves.
const devClientAccount = "sluice-dev-client"

// devBootstraps are the xDS bootstrap files `sluice dev` writes.
type devBootstraps struct {
	// TLS verifies Sluice's certificate and proves devClientAccount of
	// Namespace with a token file kept fresh; it lists every replica.
	TLS string
	// Legacy points old clients at the plaintext legacy listener.
	Legacy    string
	Namespace string
	// Replicas are, with several replicas, one TLS bootstrap per replica
	// (pointing at it alone), by replica name.
	Replicas map[string]string
}

// devReplica is where one controller replica listens for xDS.
type devReplica struct {
	name        string
	xds, legacy string // host:port
}

// writeDevBootstraps writes the CA file, the token file (refreshed before
// it expires until ctx ends) and both bootstraps into dir. The client's
// namespace is "default", or the demo's with --demo (whose clients use the
// same bootstrap).
func writeDevBootstraps(ctx context.Context, c *cluster.Cluster, o devOptions, ctrl controllerOptions, replicas []devReplica, log logr.Logger) (devBootstraps, error) {
	b := devBootstraps{Replicas: map[string]string{},
		TLS:       filepath.Join(o.dir, "xds-bootstrap.json"),
		Legacy:    filepath.Join(o.dir, "xds-bootstrap-legacy.json"),
		Namespace: "default",
	}
	if o.demo {
		b.Namespace = demo.Namespace
		if err := cluster.EnsureNamespace(ctx, c.Client(), demo.Namespace, map[string]string{v1alpha1.LabelTeam: "payments"}); err != nil {
			return b, err
		}
	}
	caFile := filepath.Join(o.dir, "xds-ca.crt")
	if err := certs.WriteCAFile(ctx, c.Client(), ctrl.namespace, ctrl.certSecret, caFile); err != nil {
		return b, err
	}
	token := cluster.TokenFile{
		Client:    c.Client(),
		Path:      filepath.Join(o.dir, "xds-token"),
		Namespace: b.Namespace,
		Name:      devClientAccount,
		Audience:  ctrl.xdsAuth.tokenAudience,
	}
	exp, err := token.Write(ctx)
	if err != nil {
		return b, err
	}
	go token.Refresh(ctx, exp, log.WithName("xds-token"))
	var xds, legacy []string
	for _, r := range replicas {
		xds, legacy = append(xds, r.xds), append(legacy, r.legacy)
	}
	tls := auth.Bootstrap{Server: xds[0], Fallbacks: xds[1:], CAFile: caFile, TokenFile: token.Path, NodeID: "sluice-dev-client", Zone: "local"}
	files := map[string]auth.Bootstrap{
		b.TLS: tls,
		b.Legacy: {Server: legacy[0], Fallbacks: legacy[1:],
			NodeID: "sluice-dev-legacy-client", Zone: "local", Namespace: b.Namespace},
	}
	if len(replicas) > 1 {
		for _, r := range replicas {
			one := tls
			one.Server, one.Fallbacks = r.xds, nil
			path := filepath.Join(o.dir, "xds-bootstrap-"+r.name+".json")
			b.Replicas[r.name] = path
			files[path] = one
		}
	}
	for path, bs := range files {
		data, err := bs.JSON()
		if err != nil {
			return b, err
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return b, fmt.Errorf("write xDS bootstrap: %w", err)
		}
	}
	return b, nil
}

// printDevBootstraps tells how to point clients at the local xDS server.
func printDevBootstraps(b devBootstraps, audience string) {
	fmt.Printf("export GRPC_XDS_BOOTSTRAP=%s\n", b.TLS)
	fmt.Printf("export %s=true\n", callcreds.EnvVar)
	fmt.Printf("# the bootstrap proves ServiceAccount %s/%s with a token file refreshed while sluice dev runs;\n", b.Namespace, devClientAccount)
	fmt.Printf("# for another namespace: kubectl create token SA -n NS --audience %s > FILE, and point call_creds at FILE\n", audience)
	fmt.Printf("# old clients without TLS or call credentials: GRPC_XDS_BOOTSTRAP=%s (plaintext, node metadata names the namespace)\n", b.Legacy)
	for _, name := range slices.Sorted(maps.Keys(b.Replicas)) {
		fmt.Printf("# replica %s alone: GRPC_XDS_BOOTSTRAP=%s\n", name, b.Replicas[name])
	}
}
