// Package policies evaluates DeploymentPolicies against Deployments.
//
// It is pure: no client, logger, metrics or clock. Compile turns a
// v1alpha1.DeploymentPolicy into a Compiled policy once (CEL programs, time
// zones, selectors, parsed thresholds) and reports every problem as a field
// error under the policy's own paths, so the policy's validating webhook and
// status can show them. Evaluate applies compiled policies to one admission
// request at a given instant and returns every violation, grouped by mode, with
// the labels to inject and the team's resolved rollout defaults.
package policies

// The time zone database is embedded so that freeze windows work on minimal
// images without /usr/share/zoneinfo.
import _ "time/tzdata"
