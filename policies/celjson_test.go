package policies

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestRawCELObjectMatchesConversion checks that the two ways CEL rules get
// the Deployment agree: decoding the JSON kube-apiserver sent, and
// converting the typed object.
func TestRawCELObjectMatchesConversion(t *testing.T) {
	rich := goodDeployment()
	rich.CreationTimestamp = metav1.Now()
	rich.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: ptrIntOrString(intstr.FromString("25%")), MaxUnavailable: ptrIntOrString(intstr.FromInt32(1))}
	rich.Spec.Template.Spec.TerminationGracePeriodSeconds = new(int64)
	c := &rich.Spec.Template.Spec.Containers[0]
	c.Env = []corev1.EnvVar{{Name: "RATIO", Value: "0.5"}, {Name: "EMPTY"}}
	c.Ports = []corev1.ContainerPort{{ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m")}
	for name, d := range map[string]*appsv1.Deployment{"good": goodDeployment(), "rich": rich, "empty": {}} {
		raw, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		fromRaw, err := celObjectOf(d, raw, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		converted, err := runtime.DefaultUnstructuredConverter.ToUnstructured(d)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(converted, fromRaw); diff != "" {
			t.Errorf("%s: raw decoding differs from conversion (-converted +raw):\n%s", name, diff)
		}
	}
}

func ptrIntOrString(v intstr.IntOrString) *intstr.IntOrString { return &v }

func TestDecodeFields(t *testing.T) {
	tests := map[string]struct {
		in   string
		want any
	}{
		"integers stay integers":   {`{"a":1,"b":-7,"c":9007199254740993}`, map[string]any{"a": int64(1), "b": int64(-7), "c": int64(9007199254740993)}},
		"other numbers are floats": {`[1.5,1e3,18446744073709551616]`, []any{1.5, 1000.0, 18446744073709551616.0}},
		"nesting":                  {`{"a":[{"b":null,"c":true,"d":"x"}],"e":{}}`, map[string]any{"a": []any{map[string]any{"b": nil, "c": true, "d": "x"}}, "e": map[string]any{}}},
		"empty array":              {`[]`, []any{}},
	}
	for name, tc := range tests {
		got, err := decodeFields([]byte(tc.in), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	for _, bad := range []string{``, `{`, `{"a":}`, `[1,]`, `{"a":1}{}`, `{"a":1,"a":2}`, "\"\xff\"", strings.Repeat("[", 10000)} {
		if v, err := decodeFields([]byte(bad), nil); err == nil {
			t.Errorf("%q decoded to %v, want an error", bad, v)
		}
	}
}
