// Package certs keeps the admission webhook reachable over TLS without any
// outside certificate tooling.
//
// The Secret named in the options is the single source of truth for every
// replica. It holds a self-managed CA and a serving certificate signed by it:
//
//   - [Issue] and [NeedsRotation] are pure: they take the current bundle, the
//     wanted names and a time, and return the bundle that should be stored.
//     No client, clock or logger is involved, so every rotation rule is a
//     table test.
//   - [Rotator] is the leader-only shell: it keeps the Secret valid, rotates
//     it well before expiry, and injects the CA bundle into the named
//     MutatingWebhookConfigurations and ValidatingWebhookConfigurations,
//     re-injecting within seconds when someone blanks or changes it.
//   - [Reloader] runs on every replica: it watches the Secret (or files written
//     by cert-manager), serves the current certificate through
//     [Reloader.GetCertificate] so a rotation applies to the next handshake,
//     reports readiness, and exports sluice_cert_expiry_timestamp_seconds.
//
// CA rotation is staged so that no client ever sees a serving certificate it
// cannot verify: a new CA is first added next to the old one in the trust
// bundle, while the serving certificate stays signed by the old CA; only a
// later serving rotation moves to the new CA, and the old CA leaves the trust
// bundle when it expires.
package certs
