package policies

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func TestBuiltinRules(t *testing.T) {
	pol := mustCompile(t, strictPolicy("baseline", v1alpha1.ModeEnforce))
	cases := map[string]struct {
		mutate   func(d *appsv1.Deployment)
		want     []string // "rule field"
		wantText []string
	}{
		"compliant": {mutate: func(*appsv1.Deployment) {}},
		"missing required label": {
			mutate: func(d *appsv1.Deployment) { delete(d.Labels, "owner") },
			want:   []string{"requiredLabels metadata.labels[owner]"},
		},
		"empty required label": {
			mutate:   func(d *appsv1.Deployment) { d.Labels["owner"] = "" },
			want:     []string{"requiredLabels metadata.labels[owner]"},
			wantText: []string{`label "owner" is required`},
		},
		"registry not allowed": {
			mutate:   func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "docker.io/evil/app:1" },
			want:     []string{"allowedRegistries spec.template.spec.containers[0].image"},
			wantText: []string{`"docker.io/evil/app:1" is not from an allowed registry (registry.example.com)`},
		},
		"registry prefix is not a path boundary": {
			mutate: func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.Containers[0].Image = "registry.example.com.evil.io/app:1"
			},
			want: []string{"allowedRegistries spec.template.spec.containers[0].image"},
		},
		"init container checked too": {
			mutate: func(d *appsv1.Deployment) { d.Spec.Template.Spec.InitContainers[0].Image = "busybox:1" },
			want:   []string{"allowedRegistries spec.template.spec.initContainers[0].image"},
		},
		"latest tag": {
			mutate: func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.Containers[0].Image = "registry.example.com/shop/checkout:latest"
			},
			want:     []string{"disallowLatestTag spec.template.spec.containers[0].image"},
			wantText: []string{"mutable tag latest"},
		},
		"untagged": {
			mutate: func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.Containers[0].Image = "registry.example.com/shop/checkout"
			},
			want:     []string{"disallowLatestTag spec.template.spec.containers[0].image"},
			wantText: []string{"has no tag"},
		},
		"registry with port and no tag": {
			mutate: func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.Containers[0].Image = "registry.example.com:5000/checkout"
			},
			want:     []string{"allowedRegistries spec.template.spec.containers[0].image", "disallowLatestTag spec.template.spec.containers[0].image"},
			wantText: []string{"has no tag"},
		},
		"latest pinned by digest is fine": {
			mutate: func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.Containers[0].Image = "registry.example.com/shop/checkout:latest@sha256:abc"
			},
		},
		"empty image": {
			mutate:   func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "" },
			want:     []string{"allowedRegistries spec.template.spec.containers[0].image"},
			wantText: []string{"empty image"},
		},
		"missing resources": {
			mutate: func(d *appsv1.Deployment) {
				c := &d.Spec.Template.Spec.Containers[0]
				delete(c.Resources.Limits, corev1.ResourceCPU)
				delete(c.Resources.Requests, corev1.ResourceMemory)
			},
			want:     []string{"requireResources spec.template.spec.containers[0].resources"},
			wantText: []string{`container "app" has no memory request, cpu limit`},
		},
		"init container without resources": {
			mutate: func(d *appsv1.Deployment) {
				d.Spec.Template.Spec.InitContainers[0].Resources = corev1.ResourceRequirements{}
			},
			want: []string{"requireResources spec.template.spec.initContainers[0].resources"},
		},
		"no readiness probe": {
			mutate: func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].ReadinessProbe = nil },
			want:   []string{"requireReadinessProbe spec.template.spec.containers[0].readinessProbe"},
		},
		"too few replicas": {
			mutate:   func(d *appsv1.Deployment) { d.Spec.Replicas = i32(1) },
			want:     []string{"replicas spec.replicas"},
			wantText: []string{"1 replicas is fewer than the minimum of 2"},
		},
		"absent replicas count as one": {
			mutate: func(d *appsv1.Deployment) { d.Spec.Replicas = nil },
			want:   []string{"replicas spec.replicas"},
		},
		"too many replicas": {
			mutate:   func(d *appsv1.Deployment) { d.Spec.Replicas = i32(11) },
			want:     []string{"replicas spec.replicas"},
			wantText: []string{"more than the maximum of 10"},
		},
		"rollout annotation missing": {
			mutate: func(d *appsv1.Deployment) {
				delete(d.Annotations, v1alpha1.AnnotationRollout)
			},
			want:     []string{"requireRollout metadata.annotations[sluice.dev/rollout]"},
			wantText: []string{"annotation sluice.dev/rollout is required: set it to beta or canary"},
		},
		"rollout off": {
			mutate:   func(d *appsv1.Deployment) { d.Annotations[v1alpha1.AnnotationRollout] = "off" },
			want:     []string{"requireRollout metadata.annotations[sluice.dev/rollout]"},
			wantText: []string{`rollout mode "off" is not allowed`},
		},
		"first step too large": {
			mutate:   func(d *appsv1.Deployment) { d.Annotations[v1alpha1.AnnotationSteps] = "10,25,50" },
			want:     []string{"rolloutBounds metadata.annotations[sluice.dev/steps]"},
			wantText: []string{"first canary step 10% is larger than the 5% allowed"},
		},
		"too few steps": {
			mutate:   func(d *appsv1.Deployment) { d.Annotations[v1alpha1.AnnotationSteps] = "1,50" },
			want:     []string{"rolloutBounds metadata.annotations[sluice.dev/steps]"},
			wantText: []string{"2 canary steps are fewer than the 3 required"},
		},
		"error rate too loose": {
			mutate:   func(d *appsv1.Deployment) { d.Annotations[v1alpha1.AnnotationMaxErrorRate] = "5%" },
			want:     []string{"rolloutBounds metadata.annotations[sluice.dev/max-error-rate]"},
			wantText: []string{"error-rate ceiling 5% is looser than the 2% allowed"},
		},
		"beta skips step bounds": {
			mutate: func(d *appsv1.Deployment) {
				d.Annotations[v1alpha1.AnnotationRollout] = "beta"
				d.Annotations[v1alpha1.AnnotationCohort] = "header:x-beta"
				d.Annotations[v1alpha1.AnnotationSteps] = "50"
			},
		},
		"several at once, in rule order": {
			mutate: func(d *appsv1.Deployment) {
				delete(d.Labels, "owner")
				d.Spec.Replicas = i32(0)
				d.Spec.Template.Spec.Containers[0].Image = "nginx"
			},
			want: []string{
				"requiredLabels metadata.labels[owner]",
				"allowedRegistries spec.template.spec.containers[0].image",
				"disallowLatestTag spec.template.spec.containers[0].image",
				"replicas spec.replicas",
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := goodDeployment()
			tc.mutate(d)
			r := Evaluate([]*Compiled{pol}, createInput(d), noon)
			if len(r.Errors) > 0 {
				t.Fatalf("input errors: %v", r.Errors.ToAggregate())
			}
			if diff := cmp.Diff(tc.want, ruleFields(r.Violations)); diff != "" {
				t.Fatalf("violations (-want +got):\n%s\n%v", diff, r.Violations)
			}
			if r.Denied() != (len(tc.want) > 0) {
				t.Errorf("Denied() = %v with %d violations in Enforce mode", r.Denied(), len(tc.want))
			}
			msg := r.DenyMessage()
			for _, want := range tc.wantText {
				if !strings.Contains(msg, want) {
					t.Errorf("deny message lacks %q:\n%s", want, msg)
				}
			}
		})
	}
}

func TestParseImage(t *testing.T) {
	cases := map[string]struct {
		in      string
		want    imageRef
		wantErr bool
	}{
		"docker hub short": {in: "nginx", want: imageRef{name: "docker.io/library/nginx"}},
		"docker hub org":   {in: "acme/app:1", want: imageRef{name: "docker.io/acme/app", tag: "1"}},
		"registry port":    {in: "localhost:5000/app", want: imageRef{name: "localhost:5000/app"}},
		"port and tag":     {in: "r.io:5000/a/b:2.0", want: imageRef{name: "r.io:5000/a/b", tag: "2.0"}},
		"digest":           {in: "r.io/a@sha256:ff", want: imageRef{name: "r.io/a", digest: "sha256:ff"}},
		"tag and digest":   {in: "r.io/a:1@sha256:ff", want: imageRef{name: "r.io/a", tag: "1", digest: "sha256:ff"}},
		"localhost":        {in: "localhost/app:1", want: imageRef{name: "localhost/app", tag: "1"}},
		"empty":            {in: "", wantErr: true},
		"empty tag":        {in: "r.io/a:", wantErr: true},
		"empty digest":     {in: "r.io/a@", wantErr: true},
		"space":            {in: "r.io/a b", wantErr: true},
		"trailing slash":   {in: "r.io/", wantErr: true},
		"only tag":         {in: ":1", wantErr: true},
		"leading slash":    {in: "/a", wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := parseImage(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseImage(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(imageRef{})); diff != "" {
				t.Errorf("parseImage(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestRegistryPrefixes(t *testing.T) {
	cases := map[string]struct {
		allowed []string
		image   string
		want    bool
	}{
		"docker hub library by registry": {allowed: []string{"docker.io"}, image: "nginx:1", want: true},
		"docker hub org shorthand":       {allowed: []string{"acme"}, image: "acme/app:1", want: true},
		"docker hub org not others":      {allowed: []string{"acme"}, image: "acmecorp/app:1", want: false},
		"library not org":                {allowed: []string{"acme"}, image: "nginx:1", want: false},
		"repository prefix":              {allowed: []string{"ghcr.io/acme/"}, image: "ghcr.io/acme/app:1", want: true},
		"repository prefix boundary":     {allowed: []string{"ghcr.io/acme"}, image: "ghcr.io/acmecorp/app:1", want: false},
		"exact repository":               {allowed: []string{"ghcr.io/acme/app"}, image: "ghcr.io/acme/app:1", want: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := strictPolicy("p", v1alpha1.ModeEnforce)
			p.Spec.Rules = v1alpha1.PolicyRules{AllowedRegistries: tc.allowed}
			c := mustCompile(t, p)
			d := goodDeployment()
			d.Spec.Template.Spec.InitContainers = nil
			d.Spec.Template.Spec.Containers[0].Image = tc.image
			r := Evaluate([]*Compiled{c}, createInput(d), noon)
			if got := len(r.Violations) == 0; got != tc.want {
				t.Errorf("allowed = %v, want %v (%v)", got, tc.want, r.Violations)
			}
		})
	}
}
