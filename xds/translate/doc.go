// Package translate turns a route plan into xDS resources.
//
// [Translate] is pure: it reads a [router.Plan] and returns [Resources]
// (Listeners, RouteConfigurations, Clusters and ClusterLoadAssignments, keyed
// by type URL and name) for both client flavours Sluice serves from the same
// plan: proxyless gRPC clients, which look up a Listener named after their
// target and read its api_listener, and Envoy sidecars, which get one
// outbound HTTP listener per port. Every resource passes go-control-plane's
// ValidateAll, and [Resources.Version] is a content hash, so equal plans give
// equal versions and the xDS server never pushes a change that is not one.
//
// # Compatibility
//
// The output is meant for grpc-go and Envoy releases of the last few years,
// so it sticks to long-standing fields:
//   - config sources are `ads: {}` with `resource_api_version: V3`;
//     `lrs_server` is `self: {}` (grpc-go accepts nothing else);
//   - weighted routes use weighted_clusters without the deprecated
//     total_weight (Envoy ≥ 1.22 sums the weights; grpc-go always did); a
//     route to a single cluster uses `cluster` instead;
//   - header matches use `string_match` (exact or safe_regex, Envoy ≥ 1.19,
//     grpc-go ≥ 1.41) and `present_match`; regex matchers leave the engine
//     unset (Google RE2 is the default and the only engine);
//   - sticky clusters set `lb_policy: RING_HASH` with `ring_hash_lb_config`
//     (XX_HASH, min = max ring size) rather than the newer
//     load_balancing_policy extension list; grpc-go reads both;
//   - the upstream protocol of gRPC ports is set through
//     `typed_extension_protocol_options` (HttpProtocolOptions, Envoy ≥ 1.18),
//     which grpc-go ignores;
//   - mirrors use `request_mirror_policies` with a runtime fraction over
//     TEN_THOUSAND. grpc-go ignores mirror policies: proxyless clients do not
//     mirror.
package translate
