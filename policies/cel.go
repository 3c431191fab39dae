package policies

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// Variables visible to CEL rules.
const (
	// celObject is the Deployment under admission.
	celObject = "object"
	// celOldObject is the Deployment before an UPDATE, null on CREATE.
	celOldObject = "oldObject"
	// celNamespaceObject is the Deployment's Namespace.
	celNamespaceObject = "namespaceObject"
)

var celRuleName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)

// celRule is one compiled CEL rule.
type celRule struct {
	name    string
	message string
	// program tracks the cost of every evaluation and stops at the limit.
	program cel.Program
	// bounded evaluates without tracking. It is used only for requests
	// whose largest input value (longest string, list or map) is at most
	// boundedSize, a size for which the rule's static worst-case cost was
	// proven within the limit at compile time; nil when no size was.
	bounded     cel.Program
	boundedSize uint64
	// reads are the fields of object and oldObject the rule can reach.
	reads CELReads
}

// celSizeTiers are the input sizes at which a rule's worst-case cost is
// estimated: the largest tier that stays within the cost limit becomes the
// rule's boundedSize. Deployments rarely hold a string, list or map longer
// than a few thousand (kubectl's last-applied annotation is the usual
// longest value), so most requests of most rules skip runtime tracking,
// which is more than half of a simple rule's evaluation time.
var celSizeTiers = []uint64{64, 1024, 16384}

// pathSizes bounds every value reached from a variable (fields, list
// items, map keys and values, at any depth) to max. Computed values (the
// result of a function call) are left to CEL's own estimates, so an
// unbounded result keeps the rule tracked.
type pathSizes struct{ max uint64 }

func (p pathSizes) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if len(n.Path()) == 0 {
		return nil
	}
	return &cost.SizeEstimate{Min: 0, Max: p.max}
}

func (pathSizes) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

// sharedCELEnv is the environment every policy compiles its rules in. An
// Env is immutable and safe for concurrent use; one shared environment keeps
// its declarations and function tables once in memory rather than once per
// policy, which also shortens every garbage collection's mark phase.
var sharedCELEnv = sync.OnceValues(newCELEnv)

// newCELEnv declares the variables as dynamic maps, so rules read any field of
// the objects as they appear in JSON.
func newCELEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable(celObject, cel.DynType),
		cel.Variable(celOldObject, cel.DynType),
		cel.Variable(celNamespaceObject, cel.DynType),
		ext.Strings(),
		ext.Lists(),
		ext.Sets(),
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
	)
}

// compileCEL compiles the rules of one policy with the given runtime cost limit.
func compileCEL(rules []v1alpha1.CELRule, costLimit uint64, fld *field.Path) ([]celRule, field.ErrorList) {
	if len(rules) == 0 {
		return nil, nil
	}
	var errs field.ErrorList
	env, err := sharedCELEnv()
	if err != nil {
		return nil, field.ErrorList{field.InternalError(fld, fmt.Errorf("build CEL environment: %w", err))}
	}
	seen := map[string]bool{}
	var out []celRule
	for i, r := range rules {
		p := fld.Index(i)
		switch {
		case r.Name == "":
			errs = append(errs, field.Required(p.Child("name"), `a rule name, e.g. "min-two-replicas"`))
		case !celRuleName.MatchString(r.Name):
			errs = append(errs, field.Invalid(p.Child("name"), r.Name,
				"must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"))
		case isBuiltinRule(r.Name):
			errs = append(errs, field.Invalid(p.Child("name"), r.Name, "is the name of a built-in rule; choose another"))
		case seen[r.Name]:
			errs = append(errs, field.Duplicate(p.Child("name"), r.Name))
		}
		seen[r.Name] = true
		if strings.TrimSpace(r.Message) == "" {
			errs = append(errs, field.Required(p.Child("message"), "the message shown when the expression is false"))
		}
		rule, perr := compileRule(env, r, costLimit, p.Child("expression"))
		if perr != nil {
			errs = append(errs, perr)
			continue
		}
		out = append(out, rule)
	}
	return out, errs
}

// compileRule compiles one rule: its tracked program and, when a size tier
// proves the cost limit, its untracked one.
func compileRule(env *cel.Env, r v1alpha1.CELRule, costLimit uint64, p *field.Path) (celRule, *field.Error) {
	expr := r.Expression
	if strings.TrimSpace(expr) == "" {
		return celRule{}, field.Required(p, "a CEL expression returning bool, e.g. `object.spec.replicas >= 2`")
	}
	if len(expr) > MaxCELExpressionLength {
		return celRule{}, field.TooLong(p, "", MaxCELExpressionLength)
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return celRule{}, field.Invalid(p, expr, "does not compile: "+iss.Err().Error())
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return celRule{}, field.Invalid(p, expr, fmt.Sprintf(
			"must evaluate to bool, not %s; compare the value, e.g. `object.spec.replicas >= 2` or `has(object.metadata.labels.team)`",
			ast.OutputType()))
	}
	rule := celRule{name: r.Name, message: r.Message, reads: readsOf(ast.NativeRep().Expr())}
	var err error
	if rule.program, err = env.Program(ast, cel.CostLimit(costLimit), cel.InterruptCheckFrequency(100)); err != nil {
		return celRule{}, field.Invalid(p, expr, "cannot be prepared: "+err.Error())
	}
	for _, size := range celSizeTiers {
		est, err := env.EstimateCost(ast, pathSizes{max: size})
		if err != nil || est.Max > costLimit {
			break // costs grow with size: no larger tier can pass
		}
		rule.boundedSize = size
	}
	if rule.boundedSize > 0 {
		if rule.bounded, err = env.Program(ast); err != nil {
			return celRule{}, field.Invalid(p, expr, "cannot be prepared: "+err.Error())
		}
	}
	return rule, nil
}

// eval runs one rule. ok is the rule's verdict; err reports a rule that
// could not be evaluated (missing field, cost limit), which fails closed.
func (r celRule) eval(in celInput) (ok bool, err error) {
	prg := r.program
	if r.bounded != nil && in.size <= r.boundedSize {
		prg = r.bounded
	}
	out, _, err := prg.Eval(in.activation)
	if err != nil {
		return false, err
	}
	b, isBool := out.Value().(bool)
	if !isBool {
		return false, fmt.Errorf("returned %v (%s), not a bool", out.Value(), out.Type())
	}
	return b, nil
}

// celInput is what CEL rules read in one request: the variables, bound once
// for every rule, and the size of the largest value in them.
type celInput struct {
	activation interpreter.Activation
	size       uint64
}

// largestValue is the length of the longest string, list or map in v, a
// JSON-shaped value, at any depth.
func largestValue(v any) uint64 {
	switch v := v.(type) {
	case string:
		return uint64(len(v))
	case []any:
		m := uint64(len(v))
		for _, e := range v {
			m = max(m, largestValue(e))
		}
		return m
	case map[string]any:
		m := uint64(len(v))
		for k, e := range v {
			m = max(m, uint64(len(k)), largestValue(e))
		}
		return m
	default:
		return 0
	}
}
