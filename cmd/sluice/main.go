// Command sluice is the Sluice binary: the controller (admission webhooks and
// xDS control plane), the local development cluster, and the rollout CLI.
// It also works as the kubectl plugin kubectl-sluice.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
