package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

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
	// Namespace with a token file kept fresh.
	TLS string
	// Legacy points old clients at the plaintext legacy listener.
	Legacy    string
	Namespace string
}

// writeDevBootstraps writes the CA file, the token file (refreshed before
// it expires until ctx ends) and both bootstraps into dir. The client's
// namespace is "default", or the demo's with --demo (whose clients use the
// same bootstrap).
func writeDevBootstraps(ctx context.Context, c *cluster.Cluster, o devOptions, ctrl controllerOptions, log logr.Logger) (devBootstraps, error) {
	b := devBootstraps{
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
	files := map[string]auth.Bootstrap{
		b.TLS: {Server: fmt.Sprintf("127.0.0.1:%d", ctrl.xdsPort), CAFile: caFile, TokenFile: token.Path,
			NodeID: "sluice-dev-client", Zone: "local"},
		b.Legacy: {Server: fmt.Sprintf("127.0.0.1:%d", ctrl.xdsAuth.legacyPort),
			NodeID: "sluice-dev-legacy-client", Zone: "local", Namespace: b.Namespace},
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
}
