package policies

import (
	"fmt"
	"regexp"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
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
	program cel.Program
}

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
	env, err := newCELEnv()
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
		prg, perr := compileExpression(env, r.Expression, costLimit, p.Child("expression"))
		if perr != nil {
			errs = append(errs, perr)
			continue
		}
		out = append(out, celRule{name: r.Name, message: r.Message, program: prg})
	}
	return out, errs
}

func compileExpression(env *cel.Env, expr string, costLimit uint64, p *field.Path) (cel.Program, *field.Error) {
	if strings.TrimSpace(expr) == "" {
		return nil, field.Required(p, "a CEL expression returning bool, e.g. `object.spec.replicas >= 2`")
	}
	if len(expr) > MaxCELExpressionLength {
		return nil, field.TooLong(p, "", MaxCELExpressionLength)
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, field.Invalid(p, expr, "does not compile: "+iss.Err().Error())
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, field.Invalid(p, expr, fmt.Sprintf(
			"must evaluate to bool, not %s; compare the value, e.g. `object.spec.replicas >= 2` or `has(object.metadata.labels.team)`",
			ast.OutputType()))
	}
	prg, err := env.Program(ast, cel.CostLimit(costLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, field.Invalid(p, expr, "cannot be prepared: "+err.Error())
	}
	return prg, nil
}

// evalCEL runs one rule. ok is the rule's verdict; err reports a rule that
// could not be evaluated (missing field, cost limit), which fails closed.
func (r celRule) eval(vars map[string]any) (ok bool, err error) {
	out, _, err := r.program.Eval(vars)
	if err != nil {
		return false, err
	}
	b, isBool := out.Value().(bool)
	if !isBool {
		return false, fmt.Errorf("returned %v (%s), not a bool", out.Value(), out.Type())
	}
	return b, nil
}
