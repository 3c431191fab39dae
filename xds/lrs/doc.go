// Package lrs receives load reports from xDS clients (Envoy and proxyless gRPC)
// over the Load Reporting Service, attributes them to a service track, and keeps
// cumulative per-track totals for the rollout analysis.
//
// Every replica of Sluice receives only the reports of the clients connected to
// it, while the leader's verdict needs the sum over all replicas. Totals are
// therefore kept per source as grow-only counters: a non-leader runs a
// [Forwarder] that periodically sends its local cumulative totals to the leader,
// whose [Aggregator] merges them idempotently (element-wise maximum per source),
// so a lost or repeated forward never double counts.
//
// Load counts only from whoever may report it: the stream's proven identity
// (auth.FromContext), only for clusters that identity acknowledged, and for
// the legacy listener only on namespaces that opted in. Totals are kept per
// [Origin] (class and identity, bounded per key) so that the analysis can
// let only authenticated load promote a canary, with no identity dominating,
// while every report counts for holding and rolling back. Replicas forward to
// each other only over the peer listener (mutual TLS with Sluice's own
// certificate; see certs.PeerTLS).
package lrs
