package main

import (
	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluice-dev/sluice/notify"
)

// addNotifier adds the rollout notifier (leader only): each namespace's
// webhook receiver hears of its rollouts' starts, steps, holds, rollbacks
// and promotions, and of the dependencies it calls failing.
func addNotifier(mgr manager.Manager, log logr.Logger) (*notify.Notifier, error) {
	return notify.New(mgr, notify.Options{Log: log.WithName("notify")})
}
