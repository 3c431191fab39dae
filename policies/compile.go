package policies

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// Compiled is a DeploymentPolicy ready to evaluate: CEL programs built, time
// zones loaded, selectors and thresholds parsed. It is immutable and safe for
// concurrent use.
type Compiled struct {
	name       string
	generation int64
	mode       v1alpha1.PolicyMode
	namespaces labels.Selector

	requiredLabels    []string
	allowedRegistries []string
	disallowLatest    bool
	requireResources  bool
	requireReadiness  bool
	minReplicas       *int32
	maxReplicas       *int32
	requireRollout    []v1alpha1.DeliveryMode
	freezeWindows     []freezeWindow
	bounds            *rolloutBounds
	cel               []celRule

	exceptions   []exception
	bypass       *bypassGrant
	injectLabels map[string]string
	// injectKeys are the keys of injectLabels in order.
	injectKeys []string
	defaults   v1alpha1.Delivery
}

// rolloutBounds are parsed v1alpha1.RolloutBounds; nil fields are unset.
type rolloutBounds struct {
	maxFirstStep *v1alpha1.BasisPoints
	minSteps     *int32
	maxErrorRate *v1alpha1.BasisPoints
}

// exception is a compiled v1alpha1.PolicyException.
type exception struct {
	index     int
	namespace string
	name      string
	selector  labels.Selector
	rules     map[string]bool
	expires   metav1.Time
	reason    string
	// unscoped: matched by name or selector without a namespace; it
	// exempts nothing.
	unscoped bool
}

// Name is the policy's name.
func (c *Compiled) Name() string { return c.name }

// Generation is the metadata.generation that was compiled.
func (c *Compiled) Generation() int64 { return c.generation }

// Mode is how the policy's violations are handled.
func (c *Compiled) Mode() v1alpha1.PolicyMode { return c.mode }

// CompileError lists every problem found in a policy, each under its field
// path in the policy (e.g. spec.rules.cel[2].expression).
type CompileError struct {
	// Policy is the policy's name.
	Policy string
	// Errors are the problems, in the order of the policy's fields.
	Errors field.ErrorList
}

// Error implements error.
func (e *CompileError) Error() string {
	return fmt.Sprintf("compile policy %q: %v", e.Policy, e.Errors.ToAggregate())
}

// Validate reports every problem in a policy as field errors under its paths,
// for the DeploymentPolicy validating webhook; empty means Compile succeeds.
// It is stricter than Compile in one way: an exception that matches by name
// or selector must name its namespace (Compile keeps such an exception, from
// a policy stored before this rule, but it exempts nothing).
func Validate(p *v1alpha1.DeploymentPolicy) field.ErrorList {
	_, errs := compile(p, CELCostLimit)
	if p == nil {
		return errs
	}
	for i, e := range p.Spec.Exceptions {
		if e.Namespace == "" && (e.Name != "" || e.Selector != nil) {
			errs = append(errs, field.Required(field.NewPath("spec", "exceptions").Index(i).Child("namespace"),
				"the namespace the exception applies in: an exception by name or selector must name its namespace"))
		}
	}
	return errs
}

// Compile prepares a policy for Evaluate. On failure the error is a
// *CompileError listing every problem.
func Compile(p *v1alpha1.DeploymentPolicy) (*Compiled, error) {
	c, errs := compile(p, CELCostLimit)
	if len(errs) > 0 {
		name := ""
		if p != nil {
			name = p.Name
		}
		return nil, &CompileError{Policy: name, Errors: errs}
	}
	return c, nil
}

func compile(p *v1alpha1.DeploymentPolicy, costLimit uint64) (*Compiled, field.ErrorList) {
	if p == nil {
		return nil, field.ErrorList{field.Required(field.NewPath("spec"), "a DeploymentPolicy")}
	}
	var errs field.ErrorList
	spec := field.NewPath("spec")
	rules := spec.Child("rules")
	c := &Compiled{
		name:             p.Name,
		generation:       p.Generation,
		mode:             p.Spec.Mode,
		requiredLabels:   p.Spec.Rules.RequiredLabels,
		disallowLatest:   p.Spec.Rules.DisallowLatestTag,
		requireResources: p.Spec.Rules.RequireResources,
		requireReadiness: p.Spec.Rules.RequireReadinessProbe,
	}
	if p.Name == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "name"), "a policy name"))
	}
	switch p.Spec.Mode {
	case "":
		c.mode = v1alpha1.ModeEnforce // the CRD's default
	case v1alpha1.ModeEnforce, v1alpha1.ModeWarn, v1alpha1.ModeAudit:
	default:
		errs = append(errs, field.NotSupported(spec.Child("mode"), p.Spec.Mode,
			[]string{string(v1alpha1.ModeEnforce), string(v1alpha1.ModeWarn), string(v1alpha1.ModeAudit)}))
	}
	sel, err := selector(p.Spec.NamespaceSelector)
	if err != nil {
		errs = append(errs, field.Invalid(spec.Child("namespaceSelector"), p.Spec.NamespaceSelector, err.Error()))
	}
	c.namespaces = sel

	for i, l := range p.Spec.Rules.RequiredLabels {
		for _, msg := range validation.IsQualifiedName(l) {
			errs = append(errs, field.Invalid(rules.Child("requiredLabels").Index(i), l, msg))
		}
	}
	for i, r := range p.Spec.Rules.AllowedRegistries {
		fp := rules.Child("allowedRegistries").Index(i)
		switch {
		case strings.TrimSpace(r) == "" || strings.ContainsAny(r, " \t\n@"):
			errs = append(errs, field.Invalid(fp, r, `must be a registry or repository prefix, e.g. "registry.example.com" or "ghcr.io/acme"`))
		case strings.Contains(r, "://"):
			errs = append(errs, field.Invalid(fp, r, `must not have a scheme; write e.g. "registry.example.com"`))
		default:
			c.allowedRegistries = append(c.allowedRegistries, normalizeRegistryPrefix(r))
		}
	}
	if b := p.Spec.Rules.Replicas; b != nil {
		fp := rules.Child("replicas")
		if b.Min != nil && *b.Min < 0 {
			errs = append(errs, field.Invalid(fp.Child("min"), *b.Min, "must not be negative"))
		}
		if b.Max != nil && *b.Max < 0 {
			errs = append(errs, field.Invalid(fp.Child("max"), *b.Max, "must not be negative"))
		}
		if b.Min != nil && b.Max != nil && *b.Min > *b.Max {
			errs = append(errs, field.Invalid(fp.Child("max"), *b.Max, fmt.Sprintf("must be at least min (%d)", *b.Min)))
		}
		c.minReplicas, c.maxReplicas = b.Min, b.Max
	}
	for i, m := range p.Spec.Rules.RequireRollout {
		switch m {
		case v1alpha1.ModeCanary, v1alpha1.ModeBeta, v1alpha1.ModeAB:
			c.requireRollout = append(c.requireRollout, m)
		default:
			errs = append(errs, field.NotSupported(rules.Child("requireRollout").Index(i), m,
				[]string{string(v1alpha1.ModeCanary), string(v1alpha1.ModeBeta), string(v1alpha1.ModeAB)}))
		}
	}
	fws, ferrs := compileFreezeWindows(p.Spec.Rules.FreezeWindows, rules.Child("freezeWindows"))
	c.freezeWindows = fws
	errs = append(errs, ferrs...)

	b, berrs := compileBounds(p.Spec.Rules.RolloutBounds, rules.Child("rolloutBounds"))
	c.bounds = b
	errs = append(errs, berrs...)

	cr, cerrs := compileCEL(p.Spec.Rules.CEL, costLimit, rules.Child("cel"))
	c.cel = cr
	errs = append(errs, cerrs...)

	ruleNames := map[string]bool{}
	for _, r := range BuiltinRules {
		ruleNames[r] = true
	}
	for _, r := range p.Spec.Rules.CEL {
		ruleNames[r.Name] = true
	}
	for i, e := range p.Spec.Exceptions {
		ex, eerrs := compileException(i, e, ruleNames, spec.Child("exceptions").Index(i))
		errs = append(errs, eerrs...)
		c.exceptions = append(c.exceptions, ex)
	}

	bg, bgerrs := compileBypass(p.Spec.EmergencyBypass, spec.Child("emergencyBypass"))
	c.bypass = bg
	errs = append(errs, bgerrs...)

	c.injectLabels = map[string]string{}
	c.injectKeys = sortedKeys(p.Spec.InjectLabels)
	il := spec.Child("injectLabels")
	for _, k := range c.injectKeys {
		v := p.Spec.InjectLabels[k]
		kerrs := validation.IsQualifiedName(k)
		for _, msg := range kerrs {
			errs = append(errs, field.Invalid(il.Key(k), k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			errs = append(errs, field.Invalid(il.Key(k), v, msg))
		}
		if strings.HasPrefix(k, "sluice.dev/") {
			errs = append(errs, field.Invalid(il.Key(k), k, "sluice.dev/ labels are written by Sluice itself; choose another prefix"))
		}
		c.injectLabels[k] = v
	}

	d, derrs := v1alpha1.ParseRolloutDefaults(p.Spec.RolloutDefaults, spec.Child("rolloutDefaults"))
	c.defaults = d
	errs = append(errs, derrs...)

	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

func compileBounds(b *v1alpha1.RolloutBounds, fp *field.Path) (*rolloutBounds, field.ErrorList) {
	if b == nil {
		return nil, nil
	}
	var errs field.ErrorList
	out := &rolloutBounds{}
	if b.MaxFirstStep != "" {
		v, err := v1alpha1.ParsePercent(b.MaxFirstStep)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(fp.Child("maxFirstStep"), b.MaxFirstStep, err.Error()+`; must be a percentage, e.g. "5"`))
		case v <= 0:
			errs = append(errs, field.Invalid(fp.Child("maxFirstStep"), b.MaxFirstStep, `must be more than 0, e.g. "5"`))
		default:
			out.maxFirstStep = &v
		}
	}
	if b.MinSteps != nil {
		if *b.MinSteps < 1 || *b.MinSteps > v1alpha1.MaxSteps {
			errs = append(errs, field.Invalid(fp.Child("minSteps"), *b.MinSteps,
				fmt.Sprintf("must be from 1 to %d", v1alpha1.MaxSteps)))
		} else {
			out.minSteps = b.MinSteps
		}
	}
	if b.MaxErrorRate != "" {
		v, err := v1alpha1.ParseRate(b.MaxErrorRate)
		if err != nil {
			errs = append(errs, field.Invalid(fp.Child("maxErrorRate"), b.MaxErrorRate, err.Error()+`; must be e.g. "2%" or "0.02"`))
		} else {
			out.maxErrorRate = &v
		}
	}
	return out, errs
}

func compileException(i int, e v1alpha1.PolicyException, known map[string]bool, fp *field.Path) (exception, field.ErrorList) {
	var errs field.ErrorList
	ex := exception{index: i, namespace: e.Namespace, name: e.Name, expires: e.Expires, reason: e.Reason}
	if e.Namespace == "" && e.Name == "" && e.Selector == nil {
		errs = append(errs, field.Required(fp, "set at least one of namespace, name and selector"))
	}
	// A name or selector alone would match in every namespace the policy
	// selects, including ones whose teams can pick that name or label.
	// Validate refuses it; a policy stored before that rule is still
	// enforced, with such an exception exempting nothing.
	ex.unscoped = e.Namespace == "" && (e.Name != "" || e.Selector != nil)
	if e.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(e.Selector)
		if err != nil {
			errs = append(errs, field.Invalid(fp.Child("selector"), e.Selector, err.Error()))
		}
		ex.selector = sel
	}
	if e.Expires.IsZero() {
		errs = append(errs, field.Required(fp.Child("expires"), `when the exception ends, e.g. "2026-12-31T00:00:00Z"`))
	}
	if strings.TrimSpace(e.Reason) == "" {
		errs = append(errs, field.Required(fp.Child("reason"), "why the exception exists"))
	}
	if len(e.Rules) > 0 {
		ex.rules = map[string]bool{}
	}
	for j, r := range e.Rules {
		if !known[r] {
			errs = append(errs, field.NotSupported(fp.Child("rules").Index(j), r, sortedKeys(known)))
		}
		ex.rules[r] = true
	}
	return ex, errs
}

// selector converts a namespace selector; nil selects every namespace.
func selector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(s)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
