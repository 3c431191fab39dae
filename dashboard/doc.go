// Package dashboard is Sluice's web dashboard: a small HTTP server whose
// pages (plain HTML, CSS and vanilla JavaScript embedded in the binary) show
// each team's services, their versions, traffic split, error rates and
// rollouts, and a JSON data API under /api/ that the pages poll.
//
// Everything shown comes from the API server (Rollouts, Deployments, Events
// and Namespaces), read with the credentials of the person looking. A
// namespace appears only when its reader may get Rollouts there; the data
// API refuses any other with 403 and never names it.
package dashboard
