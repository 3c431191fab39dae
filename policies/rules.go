package policies

import (
	"fmt"
	"sort"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

var (
	annotationsPath = field.NewPath("metadata", "annotations")
	podSpecPath     = field.NewPath("spec", "template", "spec")
	// objectPath is where CEL violations point: they judge the whole object.
	objectPath = field.NewPath("object")
)

// finding is a rule broken by a Deployment, before exceptions and bypass.
type finding struct {
	rule    string
	field   *field.Path
	message string
}

// checkContext is what every rule of one evaluation reads.
type checkContext struct {
	in                 Input
	annotationDelivery v1alpha1.Delivery
	delivery           v1alpha1.Delivery
	now                time.Time
	celVars            func() (map[string]any, error)
}

// check runs the built-in rules, then the CEL rules, in a fixed order.
func (c *Compiled) check(ctx checkContext) []finding {
	var out []finding
	d := ctx.in.Deployment
	for _, l := range c.requiredLabels {
		if d.Labels[l] == "" {
			out = append(out, finding{RuleRequiredLabels, field.NewPath("metadata", "labels").Key(l),
				fmt.Sprintf("label %q is required and must not be empty", l)})
		}
	}
	out = append(out, c.checkContainers(d)...)
	if c.minReplicas != nil || c.maxReplicas != nil {
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		if c.minReplicas != nil && replicas < *c.minReplicas {
			out = append(out, finding{RuleReplicas, field.NewPath("spec", "replicas"),
				fmt.Sprintf("%d replicas is fewer than the minimum of %d", replicas, *c.minReplicas)})
		}
		if c.maxReplicas != nil && replicas > *c.maxReplicas {
			out = append(out, finding{RuleReplicas, field.NewPath("spec", "replicas"),
				fmt.Sprintf("%d replicas is more than the maximum of %d", replicas, *c.maxReplicas)})
		}
	}
	if f, ok := c.checkRequireRollout(ctx.annotationDelivery); !ok {
		out = append(out, f)
	}
	if changesPods(ctx.in) {
		for _, w := range c.freezeWindows {
			if end, in := w.activeUntil(ctx.now); in {
				out = append(out, finding{RuleFreezeWindow, field.NewPath("spec", "template"), w.describe(end)})
			}
		}
	}
	out = append(out, c.checkBounds(ctx)...)
	out = append(out, c.checkCEL(ctx)...)
	return out
}

func (c *Compiled) checkContainers(d *appsv1.Deployment) []finding {
	var out []finding
	type container struct {
		c    corev1.Container
		path *field.Path
		init bool
	}
	var all []container
	for i, ic := range d.Spec.Template.Spec.InitContainers {
		all = append(all, container{ic, podSpecPath.Child("initContainers").Index(i), true})
	}
	for i, cc := range d.Spec.Template.Spec.Containers {
		all = append(all, container{cc, podSpecPath.Child("containers").Index(i), false})
	}
	for _, ct := range all {
		img := ct.path.Child("image")
		needImage := len(c.allowedRegistries) > 0 || c.disallowLatest
		ref, err := parseImage(ct.c.Image)
		if needImage && err != nil {
			rule := RuleDisallowLatestTag
			if len(c.allowedRegistries) > 0 {
				rule = RuleAllowedRegistries
			}
			out = append(out, finding{rule, img, fmt.Sprintf("container %q: %v", ct.c.Name, err)})
			continue
		}
		if len(c.allowedRegistries) > 0 && !c.registryAllowed(ref.name) {
			out = append(out, finding{RuleAllowedRegistries, img, fmt.Sprintf(
				"container %q: image %q is not from an allowed registry (%s)",
				ct.c.Name, ct.c.Image, strings.Join(c.allowedRegistries, ", "))})
		}
		if c.disallowLatest && ref.digest == "" {
			switch ref.tag {
			case "":
				out = append(out, finding{RuleDisallowLatestTag, img, fmt.Sprintf(
					"container %q: image %q has no tag; pin a version, e.g. %q", ct.c.Name, ct.c.Image, ct.c.Image+":1.2.3")})
			case "latest":
				out = append(out, finding{RuleDisallowLatestTag, img, fmt.Sprintf(
					"container %q: image %q uses the mutable tag latest; pin a version or a digest", ct.c.Name, ct.c.Image)})
			}
		}
		if c.requireResources {
			if missing := missingResources(ct.c.Resources); len(missing) > 0 {
				out = append(out, finding{RuleRequireResources, ct.path.Child("resources"), fmt.Sprintf(
					"container %q has no %s", ct.c.Name, strings.Join(missing, ", "))})
			}
		}
		if c.requireReadiness && !ct.init && ct.c.ReadinessProbe == nil {
			out = append(out, finding{RuleRequireReadinessProbe, ct.path.Child("readinessProbe"), fmt.Sprintf(
				"container %q has no readiness probe", ct.c.Name)})
		}
	}
	return out
}

func (c *Compiled) registryAllowed(name string) bool {
	for _, p := range c.allowedRegistries {
		if fromRegistry(name, p) {
			return true
		}
	}
	return false
}

func missingResources(r corev1.ResourceRequirements) []string {
	var missing []string
	for _, need := range []struct {
		list corev1.ResourceList
		name corev1.ResourceName
		what string
	}{
		{r.Requests, corev1.ResourceCPU, "cpu request"},
		{r.Requests, corev1.ResourceMemory, "memory request"},
		{r.Limits, corev1.ResourceCPU, "cpu limit"},
		{r.Limits, corev1.ResourceMemory, "memory limit"},
	} {
		if _, ok := need.list[need.name]; !ok {
			missing = append(missing, need.what)
		}
	}
	return missing
}

func (c *Compiled) checkRequireRollout(annotated v1alpha1.Delivery) (finding, bool) {
	if len(c.requireRollout) == 0 {
		return finding{}, true
	}
	for _, m := range c.requireRollout {
		if annotated.Mode == m {
			return finding{}, true
		}
	}
	modes := make([]string, len(c.requireRollout))
	for i, m := range c.requireRollout {
		modes[i] = string(m)
	}
	sort.Strings(modes)
	msg := fmt.Sprintf("annotation %s is required: set it to %s", v1alpha1.AnnotationRollout, strings.Join(modes, " or "))
	if annotated.Mode != "" {
		msg = fmt.Sprintf("rollout mode %q is not allowed here: set %s to %s",
			annotated.Mode, v1alpha1.AnnotationRollout, strings.Join(modes, " or "))
	}
	return finding{RuleRequireRollout, annotationsPath.Key(v1alpha1.AnnotationRollout), msg}, false
}

// checkBounds judges the resolved delivery of an opted-in Deployment.
func (c *Compiled) checkBounds(ctx checkContext) []finding {
	b, d := c.bounds, ctx.delivery
	if b == nil || d.Mode == "" || d.Mode == v1alpha1.ModeOff {
		return nil
	}
	var out []finding
	steps := annotationsPath.Key(v1alpha1.AnnotationSteps)
	if d.Mode == v1alpha1.ModeCanary && len(d.Steps) > 0 {
		if b.maxFirstStep != nil && d.Steps[0] > *b.maxFirstStep {
			out = append(out, finding{RuleRolloutBounds, steps, fmt.Sprintf(
				"first canary step %s is larger than the %s allowed", d.Steps[0], *b.maxFirstStep)})
		}
		if b.minSteps != nil && int32(len(d.Steps)) < *b.minSteps {
			out = append(out, finding{RuleRolloutBounds, steps, fmt.Sprintf(
				"%d canary steps are fewer than the %d required", len(d.Steps), *b.minSteps)})
		}
	}
	if b.maxErrorRate != nil && d.MaxErrorRate != nil && *d.MaxErrorRate > *b.maxErrorRate {
		out = append(out, finding{RuleRolloutBounds, annotationsPath.Key(v1alpha1.AnnotationMaxErrorRate), fmt.Sprintf(
			"error-rate ceiling %s is looser than the %s allowed", *d.MaxErrorRate, *b.maxErrorRate)})
	}
	return out
}

func (c *Compiled) checkCEL(ctx checkContext) []finding {
	if len(c.cel) == 0 {
		return nil
	}
	vars, err := ctx.celVars()
	if err != nil {
		return []finding{{c.cel[0].name, objectPath, fmt.Sprintf("CEL rules could not read the objects: %v", err)}}
	}
	var out []finding
	for _, r := range c.cel {
		ok, err := r.eval(vars)
		switch {
		case err != nil:
			out = append(out, finding{r.name, objectPath, fmt.Sprintf(
				"%s (the CEL rule could not be evaluated, so it fails closed: %v)", r.message, err)})
		case !ok:
			out = append(out, finding{r.name, objectPath, r.message})
		}
	}
	return out
}

// changesPods reports whether a request creates a Deployment or changes its
// pod template; freeze windows refuse only those, so scaling and metadata
// edits stay possible during a freeze.
func changesPods(in Input) bool {
	if in.Operation != admissionv1.Update || in.OldDeployment == nil {
		return true
	}
	return !apiequality.Semantic.DeepEqual(in.OldDeployment.Spec.Template, in.Deployment.Spec.Template)
}
