// Package rollout is Sluice's progressive-delivery state machine and the
// leader-only controller that drives it.
//
// The core is pure: Step takes the observed world (the opted-in Deployment,
// its canary Deployment, the Rollout's spec and status, proxy confirmations,
// metric samples and the time) and returns the next Rollout status and the
// actions the shell must take (create, scale or delete the canary, unpause the
// Deployment, clear consumed user requests, emit events). Every piece of state
// a rollout needs lives in the Rollout's status: the step index, when the
// proxies confirmed the current weight, the analysis failure count and the
// failed revisions. A restarted controller therefore neither repeats nor skips
// a step: it re-reads the status and carries on.
//
// A canary runs in stages. At each step the canary Deployment is first scaled
// to carry the step's share and must be Ready; only then does the status move
// the weight, which the traffic controller publishes; the step's interval
// starts when every subscribed proxy acknowledged that weight. Analysis runs
// about once a second while the canary carries traffic; a Rollback verdict
// sets the weight to 0 at once, records the failed revision, waits for the
// proxies to confirm and then deletes the canary. Promotion unpauses the
// Deployment, waits for its rolling update to finish, moves the weight back to
// 0, confirms, and deletes the canary.
//
// Modes: canary walks the weighted steps; beta sends only its cohort to the
// canary (weight 0) until a promote releases it into the weighted steps (a
// second promote skips them); ab holds a sticky split at the configured share
// until a promote or abort, and is still rolled back on failing metrics.
package rollout
