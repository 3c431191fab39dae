// Package translate turns a route plan into xDS resources.
//
// [Translate] is pure: it reads a [router.Plan] and returns [Resources]
// (Listeners, RouteConfigurations, Clusters and ClusterLoadAssignments, keyed
// by type URL and name) for both client flavours Sluice serves from the same
// plan: proxyless gRPC clients, which look up a Listener named after their
// target and read its api_listener, and Envoy sidecars, which get one
// outbound HTTP listener per namespace and port. Every resource passes
// go-control-plane's ValidateAll, and [Resources.Version] is a content hash
// (of the resources and their [Access]), so equal plans give equal versions
// and the xDS server never pushes a change that is not one.
//
// Every resource carries its [Access]: the namespace that owns it and the
// consumers it is granted to (router.Consumers, from sluice.dev/consumers).
// The xDS server shows a proxy only what its namespace may see, so a
// sidecar's route configuration is built per namespace from the services
// that namespace may see, and only its own services answer to their bare
// name.
//
// # Compatibility
//
// Route configurations come in [Form]s, one per generation of clients
// ([FormFor] picks one from a node's user agent); [Resources.Variant] holds
// the route configurations of a form that differ from [FormCurrent], and
// [Resources.Limits] what a form's clients cannot express. The matrix behind
// the choice is in docs/traffic.md ("Client compatibility"). In every form:
//   - config sources are `ads: {}` with `resource_api_version: V3`;
//     `lrs_server` is `self: {}` (grpc-go accepts nothing else);
//   - weighted routes use weighted_clusters, in whole percent (summing to
//     100) when every weight allows it, which clients that sum the weights
//     and clients that default the deprecated total_weight to 100 both read
//     correctly; otherwise in basis points, with total_weight only in the
//     legacy forms; a route to a single cluster uses `cluster` instead;
//   - header matches use `string_match` (exact or safe_regex; grpc-go ≥
//     1.56, grpc-java ≥ 1.53, grpc-js-xds ≥ 1.9) in FormCurrent and the
//     older `exact_match` / `safe_regex_match` in the legacy forms, and
//     `present_match`; regex matchers leave the engine unset (Google RE2 is
//     the default and the only engine);
//   - sticky clusters set `lb_policy: RING_HASH` with `ring_hash_lb_config`
//     (XX_HASH, min = max ring size) rather than the newer
//     load_balancing_policy extension list; grpc-go reads both. Clients of
//     FormLegacyNoRing never load a ring-hash cluster: their sticky routes go
//     to the stable cluster. No proxyless client hashes a cookie, so a
//     sticky split by cookie sends proxyless clients to stable in every
//     form;
//   - the upstream protocol of gRPC ports is set through
//     `typed_extension_protocol_options` (HttpProtocolOptions, Envoy ≥ 1.18),
//     which grpc-go ignores;
//   - mirrors use `request_mirror_policies` with a runtime fraction over
//     TEN_THOUSAND. grpc-go ignores mirror policies: proxyless clients do not
//     mirror.
package translate
