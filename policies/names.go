package policies

// Names of the built-in rules, as they appear in violations, exceptions and
// metrics. CEL rules use their own names, which may not collide with these.
const (
	RuleRequiredLabels        = "requiredLabels"
	RuleAllowedRegistries     = "allowedRegistries"
	RuleDisallowLatestTag     = "disallowLatestTag"
	RuleRequireResources      = "requireResources"
	RuleRequireReadinessProbe = "requireReadinessProbe"
	RuleReplicas              = "replicas"
	RuleRequireRollout        = "requireRollout"
	RuleFreezeWindow          = "freezeWindow"
	RuleRolloutBounds         = "rolloutBounds"
	// RuleEmergencyBypass is broken by a bypass annotation that the policy
	// does not allow, or that gives no reason.
	RuleEmergencyBypass = "emergencyBypass"
)

// BuiltinRules lists the built-in rule names in evaluation order.
var BuiltinRules = []string{
	RuleRequiredLabels,
	RuleAllowedRegistries,
	RuleDisallowLatestTag,
	RuleRequireResources,
	RuleRequireReadinessProbe,
	RuleReplicas,
	RuleRequireRollout,
	RuleFreezeWindow,
	RuleRolloutBounds,
	RuleEmergencyBypass,
}

func isBuiltinRule(name string) bool {
	for _, r := range BuiltinRules {
		if r == name {
			return true
		}
	}
	return false
}

// Limits on CEL rules.
const (
	// CELCostLimit bounds the runtime cost of one CEL rule evaluation; a rule
	// that exceeds it fails closed.
	CELCostLimit uint64 = 1_000_000
	// MaxCELExpressionLength bounds a CEL expression's length in bytes.
	MaxCELExpressionLength = 10_000
)
