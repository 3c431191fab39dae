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
	containers         []container
	changesPods        func() bool
	celVars            func() (celInput, error)
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
	out = append(out, c.checkContainers(ctx.containers)...)
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
	if len(c.freezeWindows) > 0 && ctx.changesPods() {
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

// container is what the container rules read of one container, worked out
// once per request rather than once per policy.
type container struct {
	name, image string
	init        bool
	index       int
	ref         imageRef
	refErr      error
	// missing lists the resource requests and limits it lacks.
	missing      []string
	hasReadiness bool
}

// path is the container's field path.
func (ct *container) path() *field.Path {
	if ct.init {
		return podSpecPath.Child("initContainers").Index(ct.index)
	}
	return podSpecPath.Child("containers").Index(ct.index)
}

// containersOf gathers the init containers and containers of d.
func containersOf(d *appsv1.Deployment) []container {
	spec := &d.Spec.Template.Spec
	out := make([]container, 0, len(spec.InitContainers)+len(spec.Containers))
	add := func(c *corev1.Container, i int, init bool) {
		ref, err := parseImage(c.Image)
		out = append(out, container{name: c.Name, image: c.Image, init: init, index: i, ref: ref, refErr: err,
			missing: missingResources(c.Resources), hasReadiness: c.ReadinessProbe != nil})
	}
	for i := range spec.InitContainers {
		add(&spec.InitContainers[i], i, true)
	}
	for i := range spec.Containers {
		add(&spec.Containers[i], i, false)
	}
	return out
}

func (c *Compiled) checkContainers(containers []container) []finding {
	var out []finding
	needImage := len(c.allowedRegistries) > 0 || c.disallowLatest
	for i := range containers {
		ct := &containers[i]
		if needImage && ct.refErr != nil {
			rule := RuleDisallowLatestTag
			if len(c.allowedRegistries) > 0 {
				rule = RuleAllowedRegistries
			}
			out = append(out, finding{rule, ct.path().Child("image"), fmt.Sprintf("container %q: %v", ct.name, ct.refErr)})
			continue
		}
		if len(c.allowedRegistries) > 0 && !c.registryAllowed(ct.ref.name) {
			out = append(out, finding{RuleAllowedRegistries, ct.path().Child("image"), fmt.Sprintf(
				"container %q: image %q is not from an allowed registry (%s)",
				ct.name, ct.image, strings.Join(c.allowedRegistries, ", "))})
		}
		if c.disallowLatest && ct.ref.digest == "" {
			switch ct.ref.tag {
			case "":
				out = append(out, finding{RuleDisallowLatestTag, ct.path().Child("image"), fmt.Sprintf(
					"container %q: image %q has no tag; pin a version, e.g. %q", ct.name, ct.image, ct.image+":1.2.3")})
			case "latest":
				out = append(out, finding{RuleDisallowLatestTag, ct.path().Child("image"), fmt.Sprintf(
					"container %q: image %q uses the mutable tag latest; pin a version or a digest", ct.name, ct.image)})
			}
		}
		if c.requireResources && len(ct.missing) > 0 {
			out = append(out, finding{RuleRequireResources, ct.path().Child("resources"), fmt.Sprintf(
				"container %q has no %s", ct.name, strings.Join(ct.missing, ", "))})
		}
		if c.requireReadiness && !ct.init && !ct.hasReadiness {
			out = append(out, finding{RuleRequireReadinessProbe, ct.path().Child("readinessProbe"), fmt.Sprintf(
				"container %q has no readiness probe", ct.name)})
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
	in, err := ctx.celVars()
	if err != nil {
		return []finding{{c.cel[0].name, objectPath, fmt.Sprintf("CEL rules could not read the objects: %v", err)}}
	}
	var out []finding
	for _, r := range c.cel {
		ok, err := r.eval(in)
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
