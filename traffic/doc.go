// Package traffic is the controller that steers live traffic: it watches the
// cluster and publishes xDS.
//
// It runs on every replica of Sluice (it needs no leadership, since every
// replica serves its own xDS clients). It reads, through informers, the Pods
// labelled sluice.dev/service (the endpoints, with their track and revision),
// the Services of the same name (port names, numbers and protocols), the
// Deployments labelled sluice.dev/service and the Rollouts (the strategy of each
// service), and publishes
//
//	cluster objects ─StateFrom (pure)─► router.State ─router.Build─► router.Plan
//	    ─translate.Translate─► xDS resources ─server.Update─► proxies
//
// Bursts of changes are coalesced (Options.Debounce); a change of a Rollout's
// phase, weight or delivery spec is published at once, since the rollout
// controller is waiting for it.
//
// The rollout controller confirms each weight step with Controller.Confirm,
// which returns once every proxy subscribed to the service's routes carries a
// route version with that weight, or rejected it; Controller.Nacks lists the
// rejections still in force per service, for the Rollout status.
package traffic
