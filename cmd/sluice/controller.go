package main

import (
	"github.com/spf13/cobra"
)

func newControllerCommand() *cobra.Command {
	o := controllerOptions{}
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the admission webhooks, the xDS control plane and the rollout controller",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runController(cmd.Context(), o)
		},
	}
	o.addFlags(cmd)
	return cmd
}
