// Package router turns cluster state into a typed route plan.
//
// It is the pure core of Sluice's traffic half: [Build] takes a [State] (the
// services, their ready pods and each service's rollout [Strategy], all plain
// values) and returns a [Plan] (per service and port, an ordered list of routes
// and the clusters they point at). Nothing here performs I/O, logs, reads a
// clock or knows about Envoy protos; the xDS translator turns a Plan into
// resources and the controller builds the State from Kubernetes objects.
//
// Rules live in the types: weights are [Weight] values in basis points that
// must sum to [TotalWeight] on every weighted route, and [Plan.Validate]
// reports every broken rule as a named error, so a plan with a wrong sum can
// never be published.
package router
