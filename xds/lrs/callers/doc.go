// Package callers turns the load-report totals kept per reporting identity
// into the bounded per-caller figures a Rollout's status carries: for each
// service, which namespaces call it, how many of their requests failed, and
// which of them reached the canary revision. It is pure: values in, values
// out, no clock and no client.
package callers
