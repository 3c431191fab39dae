package main

import (
	"fmt"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluice-dev/sluice/webhook"
	"github.com/sluice-dev/sluice/xds/lrs"
	"github.com/sluice-dev/sluice/xds/server"
)

// components are the shared parts the admission, traffic and rollout halves
// are wired to.
type components struct {
	xds       *server.Server
	loads     *lrs.Server
	namespace string
	log       logr.Logger
}

// addComponents adds the admission webhooks, the traffic controller and the
// rollout controller to the manager.
func addComponents(mgr manager.Manager, c components) error {
	hooks, err := webhook.Register(mgr, webhook.Options{Namespace: c.namespace})
	if err != nil {
		return fmt.Errorf("admission webhooks: %w", err)
	}
	if err := mgr.AddReadyzCheck("policies", hooks.ReadyCheck()); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook-server", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return err
	}
	return nil
}
