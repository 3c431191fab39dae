package main

import (
	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluice-dev/sluice/notify"
)

// addNotifier adds the rollout notifier (leader only): each namespace's
// webhook receiver hears of its rollouts' starts, steps, holds, rollbacks
// and promotions.
func addNotifier(mgr manager.Manager, log logr.Logger) error {
	_, err := notify.New(mgr, notify.Options{Log: log.WithName("notify")})
	return err
}
