package policies

import (
	"fmt"
	"sync"
	"time"

	"cel.dev/cel-go/interpreter"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// Input is one Deployment admission request.
type Input struct {
	// Operation is admissionv1.Create or admissionv1.Update.
	Operation admissionv1.Operation
	// Deployment is the object as it would be stored. Required.
	Deployment *appsv1.Deployment
	// OldDeployment is the stored object on UPDATE; without it an UPDATE is
	// treated as changing the pod template.
	OldDeployment *appsv1.Deployment
	// Namespace is the Deployment's Namespace; its labels pick the policies
	// and CEL rules see it as namespaceObject. Required.
	Namespace *corev1.Namespace
	// RawDeployment and RawOldDeployment are, when set, the JSON that
	// Deployment and OldDeployment were decoded from. CEL rules then read
	// that JSON directly, which costs half of converting the typed objects
	// back; both give the same maps.
	RawDeployment, RawOldDeployment []byte
	// CELNamespace is, when set, Namespace prepared for CEL rules, so that a
	// caller admitting many Deployments of one namespace prepares it once.
	CELNamespace *CELNamespace
	// Requester is who asks, as kube-apiserver authenticated them; nil
	// when unknown (offline evaluation), which no emergency bypass admits.
	Requester *Requester
	// CELReads is, when set with RawDeployment, what the CEL rules of every
	// policy passed to Evaluate read (ReadsOf): only those fields of the raw
	// objects are decoded for CEL.
	CELReads *CELReads
}

// CELNamespace is a Namespace as CEL rules read it (namespaceObject). It is
// read-only and may be shared by concurrent evaluations.
type CELNamespace struct {
	object map[string]any
	size   uint64
}

// NewCELNamespace prepares ns for CEL rules.
func NewCELNamespace(ns *corev1.Namespace) (*CELNamespace, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ns)
	if err != nil {
		return nil, fmt.Errorf("convert Namespace: %w", err)
	}
	return &CELNamespace{size: largestValue(m), object: celReady(m).(map[string]any)}, nil
}

// Evaluate applies every policy whose namespace selector matches the
// Deployment's namespace, at instant now. Policies are taken in name order,
// which also decides conflicts between their injected labels and rollout
// defaults (the first name wins). Nil entries are skipped.
func Evaluate(policies []*Compiled, in Input, now time.Time) Result {
	var r Result
	if in.Deployment == nil {
		r.Errors = append(r.Errors, field.Required(field.NewPath("object"), "the Deployment under admission"))
		return r
	}
	if in.Namespace == nil {
		r.Errors = append(r.Errors, field.Required(field.NewPath("metadata", "namespace"),
			fmt.Sprintf("the Namespace object of %q, to select policies", in.Deployment.Namespace)))
		return r
	}
	annotated, derrs := v1alpha1.ParseDelivery(in.Deployment.Annotations, annotationsPath)
	r.Errors = append(r.Errors, derrs...)

	applicable := applicable(policies, in.Namespace.Labels)

	nInject := 0
	for _, c := range applicable {
		nInject += len(c.injectKeys)
	}
	r.InjectLabels = make(map[string]string, nInject)
	r.Policies = make([]string, 0, len(applicable))
	for i, c := range applicable {
		r.Policies = append(r.Policies, c.name)
		for _, k := range c.injectKeys {
			v := c.injectLabels[k]
			if prev, ok := r.InjectLabels[k]; ok {
				if prev != v {
					r.Notes = append(r.Notes, fmt.Sprintf(
						"policies %q and %q both inject label %q (%q, %q); %q applies",
						firstInjecting(applicable[:i], k), c.name, k, prev, v, prev))
				}
				continue
			}
			r.InjectLabels[k] = v
		}
	}
	r.Defaults = defaultsOf(applicable)
	r.Delivery = resolve(annotated, in.Deployment.Name, r.Defaults)

	ctx := checkContext{
		in:                 in,
		annotationDelivery: annotated,
		delivery:           r.Delivery,
		now:                now,
		containers:         containersOf(in.Deployment),
		changesPods:        sync.OnceValue(func() bool { return changesPods(in) }),
		celVars:            sync.OnceValues(func() (celInput, error) { return celVars(in) }),
	}
	bypass := readBypass(in.Deployment.Annotations)
	for _, c := range applicable {
		findings := c.check(ctx)
		// A bypass is judged only where there is something to bypass: an
		// expired or refused bypass annotation on a compliant Deployment
		// blocks nobody (Sluice's own writes included).
		if bypass.asked && len(findings) > 0 {
			if refusal, refused := c.refuseBypass(bypass, in.Requester, now); refused {
				findings = append(findings, refusal)
			} else {
				for _, f := range findings {
					r.Bypassed = append(r.Bypassed, c.violation(f))
				}
				r.BypassReason = Truncate(bypass.reason, MaxBypassReason)
				r.BypassExpires = bypass.expires
				r.BypassedBy = in.Requester
				continue
			}
		}
		for _, f := range findings {
			v := c.violation(f)
			if ex := c.exceptionFor(f.rule, in.Deployment, now); ex != nil {
				r.Exempted = append(r.Exempted, Exemption{Violation: v, Reason: ex.reason, Expires: ex.expires, Exception: ex.index})
				continue
			}
			r.Violations = append(r.Violations, v)
		}
	}
	return r
}

// firstInjecting names the first of policies that injects label k.
func firstInjecting(policies []*Compiled, k string) string {
	for _, c := range policies {
		if _, ok := c.injectLabels[k]; ok {
			return c.name
		}
	}
	return ""
}

func (c *Compiled) violation(f finding) Violation {
	return Violation{Policy: c.name, Rule: f.rule, Mode: c.mode, Field: f.field, Message: f.message}
}

// exceptionFor returns the first unexpired exception of the policy that
// matches the Deployment and covers the rule, or nil.
func (c *Compiled) exceptionFor(rule string, d *appsv1.Deployment, now time.Time) *exception {
	for i := range c.exceptions {
		ex := &c.exceptions[i]
		if ex.unscoped || !now.Before(ex.expires.Time) {
			continue
		}
		if ex.namespace != "" && ex.namespace != d.Namespace {
			continue
		}
		if ex.name != "" && ex.name != d.Name {
			continue
		}
		if ex.selector != nil && !ex.selector.Matches(labels.Set(d.Labels)) {
			continue
		}
		if ex.rules != nil && !ex.rules[rule] {
			continue
		}
		return ex
	}
	return nil
}

// celVars binds object, oldObject (null on CREATE) and namespaceObject as
// the JSON-shaped maps CEL rules read.
func celVars(in Input) (celInput, error) {
	var objectReads, oldReads *Fields
	if in.CELReads != nil {
		objectReads, oldReads = &in.CELReads.object, &in.CELReads.oldObject
	}
	obj, err := celObjectOf(in.Deployment, in.RawDeployment, objectReads)
	if err != nil {
		return celInput{}, fmt.Errorf("convert Deployment: %w", err)
	}
	ns := in.CELNamespace
	if ns == nil {
		if ns, err = NewCELNamespace(in.Namespace); err != nil {
			return celInput{}, err
		}
	}
	size := max(largestValue(obj), ns.size)
	vars := map[string]any{celObject: celReady(obj), celNamespaceObject: ns.object, celOldObject: nil}
	if in.OldDeployment != nil {
		old, err := celObjectOf(in.OldDeployment, in.RawOldDeployment, oldReads)
		if err != nil {
			return celInput{}, fmt.Errorf("convert old Deployment: %w", err)
		}
		size = max(size, largestValue(old))
		vars[celOldObject] = celReady(old)
	}
	act, err := interpreter.NewActivation(vars)
	if err != nil {
		return celInput{}, fmt.Errorf("bind CEL variables: %w", err)
	}
	return celInput{activation: act, size: size}, nil
}

// celObjectOf is the JSON-shaped map of d: raw decoded when given (only the
// fields in reads, when given), else d converted.
func celObjectOf(d *appsv1.Deployment, raw []byte, reads *Fields) (map[string]any, error) {
	if len(raw) == 0 {
		return runtime.DefaultUnstructuredConverter.ToUnstructured(d)
	}
	v, err := decodeFields(raw, reads)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the object is JSON %T, not an object", v)
	}
	return m, nil
}

// Violation is one rule of one policy broken by a Deployment.
type Violation struct {
	// Policy is the DeploymentPolicy's name.
	Policy string
	// Rule is a built-in rule name (see BuiltinRules) or a CEL rule's name.
	Rule string
	// Mode is the policy's mode: what the webhook does about it.
	Mode v1alpha1.PolicyMode
	// Field points into the Deployment; CEL rules point at "object".
	Field *field.Path
	// Message says what is wrong and how to fix it.
	Message string
}

// String formats the violation for denials, warnings and logs.
func (v Violation) String() string {
	return fmt.Sprintf("%s: %s (policy %s, rule %s)", v.Field, v.Message, v.Policy, v.Rule)
}

// Exemption is a violation waived by an unexpired policy exception.
type Exemption struct {
	Violation
	// Reason is the exception's reason.
	Reason string
	// Expires is when the exception ends.
	Expires metav1.Time
	// Exception indexes spec.exceptions of the policy.
	Exception int
}
