package policies

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// Result is the outcome of Evaluate for one request.
type Result struct {
	// Errors are malformed sluice.dev annotations and missing input; they
	// deny the request whatever the policies' modes.
	Errors field.ErrorList
	// Violations are the rules broken, not exempted or bypassed, ordered by
	// policy name, then rule evaluation order.
	Violations []Violation
	// Exempted are violations waived by unexpired exceptions.
	Exempted []Exemption
	// Bypassed are violations admitted under an allowed emergency bypass;
	// the webhook must audit them.
	Bypassed []Violation
	// BypassReason is the bypass annotation's reason when Bypassed is not
	// empty, cut to MaxBypassReason bytes.
	BypassReason string
	// BypassExpires is when the bypass ends, when Bypassed is not empty.
	BypassExpires time.Time
	// BypassedBy is who used the bypass, when Bypassed is not empty.
	BypassedBy *Requester
	// Policies are the names of the policies that applied, in order.
	Policies []string
	// InjectLabels are the labels to add to the Deployment and its pod
	// template, merged over the applicable policies.
	InjectLabels map[string]string
	// Defaults are the team's rollout defaults merged over the applicable
	// policies; unset fields are not set by any policy.
	Defaults v1alpha1.Delivery
	// Delivery is the Deployment's resolved delivery: its annotations over
	// Defaults over v1alpha1.DefaultDelivery, with Service defaulting to the
	// Deployment's name.
	Delivery v1alpha1.Delivery
	// Notes describe conflicts between policies that were settled by policy
	// name order.
	Notes []string
}

// ByMode returns the violations handled in mode, in order.
func (r Result) ByMode(mode v1alpha1.PolicyMode) []Violation {
	var out []Violation
	for _, v := range r.Violations {
		if v.Mode == mode {
			out = append(out, v)
		}
	}
	return out
}

// Denied reports whether the request must be refused: a malformed annotation,
// missing input or any violation of an Enforce policy.
func (r Result) Denied() bool {
	return len(r.Errors) > 0 || len(r.ByMode(v1alpha1.ModeEnforce)) > 0
}

// FieldErrors returns every reason to deny, as field errors for
// apierrors.NewInvalid: the input errors, then each Enforce violation.
func (r Result) FieldErrors() field.ErrorList {
	out := append(field.ErrorList(nil), r.Errors...)
	for _, v := range r.ByMode(v1alpha1.ModeEnforce) {
		out = append(out, field.Forbidden(v.Field, fmt.Sprintf("%s (policy %s, rule %s)", v.Message, v.Policy, v.Rule)))
	}
	return out
}

// DenyMessage lists every reason to deny in one message, or "" when the
// request is admitted.
func (r Result) DenyMessage() string {
	errs := r.FieldErrors()
	if len(errs) == 0 {
		return ""
	}
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = "- " + e.Error()
	}
	return fmt.Sprintf("denied by Sluice policy (%d problem(s)):\n%s", len(errs), strings.Join(lines, "\n"))
}

// Warnings returns admission warnings: each Warn violation, the emergency
// bypass in use, and policy conflicts.
func (r Result) Warnings() []string {
	var out []string
	for _, v := range r.ByMode(v1alpha1.ModeWarn) {
		out = append(out, v.String())
	}
	if len(r.Bypassed) > 0 {
		out = append(out, r.BypassSummary()+"; this is audited")
	}
	return append(out, r.Notes...)
}

// BypassSummary says who bypassed how many violations of which policies,
// why and until when; empty when nothing was bypassed.
func (r Result) BypassSummary() string {
	if len(r.Bypassed) == 0 {
		return ""
	}
	var names []string
	for _, v := range r.Bypassed {
		if !slices.Contains(names, v.Policy) {
			names = append(names, v.Policy)
		}
	}
	return fmt.Sprintf("emergency bypass %q by %s until %s admitted %d violation(s) of policy %s",
		r.BypassReason, r.BypassedBy, r.BypassExpires.UTC().Format(time.RFC3339), len(r.Bypassed), strings.Join(names, ", "))
}

// Tally adds to counts one per violation of the named policy, bypassed ones
// included, for DeploymentPolicy status.violations; the result is sorted by
// rule, then mode.
func Tally(counts []v1alpha1.ViolationCount, policy string, r Result) []v1alpha1.ViolationCount {
	var add []v1alpha1.ViolationCount
	for _, v := range append(append([]Violation(nil), r.Violations...), r.Bypassed...) {
		if v.Policy == policy {
			add = append(add, v1alpha1.ViolationCount{Rule: v.Rule, Mode: v.Mode, Count: 1})
		}
	}
	return AddCounts(counts, add)
}

// AddCounts sums lists of violation counts by rule and mode; the result is
// sorted by rule, then mode.
func AddCounts(lists ...[]v1alpha1.ViolationCount) []v1alpha1.ViolationCount {
	type key struct {
		rule string
		mode v1alpha1.PolicyMode
	}
	sum := map[key]int64{}
	for _, l := range lists {
		for _, c := range l {
			sum[key{c.Rule, c.Mode}] += c.Count
		}
	}
	out := make([]v1alpha1.ViolationCount, 0, len(sum))
	for k, n := range sum {
		out = append(out, v1alpha1.ViolationCount{Rule: k.rule, Mode: k.mode, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Rule != out[j].Rule {
			return out[i].Rule < out[j].Rule
		}
		return out[i].Mode < out[j].Mode
	})
	return out
}
