// Package notify sends a team's rollout notifications to its webhook
// receiver: a JSON message (or a Slack-compatible body) when a rollout
// starts, reaches a step, is held by its analysis or paused, rolls back or
// is promoted.
//
// Notifications follow the Rollouts' status transitions as the watch
// delivers them; they never block the rollout controller: each namespace has
// a bounded queue, delivery retries with exponential backoff, and a full
// queue drops (and counts) the newest message. A namespace's receiver URL
// comes from a Secret in that namespace and must start with a prefix that a
// DeploymentPolicy selecting the namespace allows; redirects are not
// followed.
package notify
