// Package e2e holds the end-to-end tests of Sluice. They run on one local
// cluster (package local/cluster) shared by every test in the package; each
// test works in namespaces of its own.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sluice-dev/sluice/local/cluster"
)

// env is the shared local cluster.
var env *cluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		// `make unit`: the end-to-end tests need the local cluster; `make
		// test` runs them.
		fmt.Fprintln(os.Stderr, "e2e: not run with -short (they need the local cluster)")
		return 0
	}
	// controller-runtime clients built by tests log through this.
	ctrllog.SetLogger(logr.Discard())
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	env, err = cluster.Start(ctx, cluster.Options{
		Dir:      filepath.Join(dir, "cluster"),
		Progress: os.Stderr,
		Log: funcr.New(func(prefix, args string) {
			if os.Getenv("SLUICE_E2E_VERBOSE") != "" {
				fmt.Fprintln(os.Stderr, prefix, args)
			}
		}, funcr.Options{}),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start local cluster:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: local cluster up in %s\n", time.Since(start).Round(time.Millisecond))
	// Stop the cluster on SIGINT/SIGTERM too: its processes would die with
	// us anyway (parent-death signal), this just stops them in order.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		env.Stop()
		os.Exit(130)
	}()
	defer env.Stop()
	if err := startSluice(ctx, dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start sluice controller:", err)
		return 1
	}
	defer sluice.Stop()
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: sluice controller log:\n%s\n", sluice.Logs(60))
	}
	return code
}
