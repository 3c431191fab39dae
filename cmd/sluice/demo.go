package main

import (
	"context"
	"fmt"
	"os"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/local/cluster"
	"github.com/sluice-dev/sluice/local/demo"
)

// playDemo plays the scripted story on the local cluster, promoting with
// the same command a team would type.
func playDemo(ctx context.Context, c *cluster.Cluster, bootstrapPath string) error {
	sch, err := scheme()
	if err != nil {
		return err
	}
	cl, err := client.New(c.RESTConfig(), client.Options{Scheme: sch})
	if err != nil {
		return fmt.Errorf("demo client: %w", err)
	}
	bootstrap, err := os.ReadFile(bootstrapPath)
	if err != nil {
		return fmt.Errorf("read xDS bootstrap: %w", err)
	}
	return demo.Play(ctx, demo.Options{
		Client:    cl,
		Bootstrap: bootstrap,
		Out:       os.Stdout,
		Promote: func(ctx context.Context, namespace, name string) error {
			cmd := newRootCommand()
			cmd.SetArgs([]string{"promote", name, "-n", namespace, "--kubeconfig", c.Kubeconfig()})
			cmd.SetOut(os.Stdout)
			return cmd.ExecuteContext(ctx)
		},
	})
}
