package main

import (
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           commandName(),
		Short:         "Ship a one-line change to production within the hour, safely",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newVersionCommand(),
		newControllerCommand(),
		newDevCommand(),
		newDashboardCommand(),
		newPolicyCommand(),
	)
	root.AddCommand(newRolloutCommands()...)
	return root
}

// commandName is "kubectl sluice" when the binary runs as a kubectl plugin.
func commandName() string {
	if strings.HasPrefix(filepath.Base(osArgs0()), "kubectl-") {
		return "kubectl sluice"
	}
	return "sluice"
}
