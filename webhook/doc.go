// Package webhook holds Sluice's admission webhooks for Deployments and
// DeploymentPolicies: a thin shell that decodes AdmissionReviews, reads the
// Namespace and Rollout from the informer cache, calls the pure policies
// package and encodes the answer.
//
//   - The mutating webhook injects the sluice.dev/team, service, track and
//     revision labels (plus the labels selected policies inject) into the
//     Deployment and its pod template, and pauses an opted-in Deployment whose
//     pod template revision changes, so the rollout controller can run a
//     canary. Its JSON patches are built operation by operation (Mutate is
//     pure), never by diffing whole objects.
//   - The Deployment validating webhook rejects malformed sluice.dev
//     annotations, applies every DeploymentPolicy selecting the namespace in
//     its mode (Enforce denies, Warn warns, Audit counts and emits an Event),
//     audits emergency bypasses, and refuses a revision that was rolled back
//     until `sluice retry` allows it.
//   - The DeploymentPolicy validating webhook rejects policies that do not
//     compile.
//
// A PolicyStore compiles each policy once per change and serves the compiled
// set to the handlers through an atomic snapshot; a status writer reports
// compilation and violation counts on the policies, batched off the
// admission path. Configurations builds the webhook configurations that
// register all of this with kube-apiserver.
package webhook
