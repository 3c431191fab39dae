package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/local/cluster"
)

// Set at link time by the Makefile.
var (
	version = "dev"
	commit  = "unknown"
)

func osArgs0() string { return os.Args[0] }

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go and Kubernetes versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "sluice %s\ncommit: %s\ngo: %s\nkubernetes: %s\n",
				version, commit, runtime.Version(), cluster.KubernetesVersion)
			return err
		},
	}
}
