package v1alpha1

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/install"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestCRDsPassAPIServerValidation runs the kube-apiserver's own CRD
// validation (structural schema, list-map keys, printer column paths) on the
// generated CRDs.
func TestCRDsPassAPIServerValidation(t *testing.T) {
	scheme := runtime.NewScheme()
	install.Install(scheme)
	crds, err := CRDs()
	if err != nil {
		t.Fatalf("CRDs: %v", err)
	}
	for _, crd := range crds {
		internal := &apiextensions.CustomResourceDefinition{}
		if err := scheme.Convert(crd, internal, nil); err != nil {
			t.Fatalf("convert %s: %v", crd.Name, err)
		}
		// The API server fills storedVersions when it stores a CRD.
		internal.Status.StoredVersions = []string{SchemeGroupVersion.Version}
		if errs := validation.ValidateCustomResourceDefinition(context.Background(), internal); len(errs) > 0 {
			t.Errorf("%s is invalid: %v", crd.Name, errs.ToAggregate())
		}
	}
}

// TestCRDsMatchTypes walks the Go types and the embedded schemas together, so
// a type changed without `go generate ./api/...` fails here.
func TestCRDsMatchTypes(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatalf("CRDs: %v", err)
	}
	roots := map[string]reflect.Type{
		"DeploymentPolicy": reflect.TypeOf(DeploymentPolicy{}),
		"Rollout":          reflect.TypeOf(Rollout{}),
	}
	for _, crd := range crds {
		typ, ok := roots[crd.Spec.Names.Kind]
		if !ok {
			t.Fatalf("unexpected CRD kind %s", crd.Spec.Names.Kind)
		}
		schema := crd.Spec.Versions[0].Schema.OpenAPIV3Schema
		for _, f := range []string{"Spec", "Status"} {
			sf, _ := typ.FieldByName(f)
			prop, ok := schema.Properties[strings.ToLower(f)]
			if !ok {
				t.Fatalf("%s schema has no %s", crd.Name, strings.ToLower(f))
			}
			matchSchema(t, crd.Spec.Names.Kind+"."+strings.ToLower(f), sf.Type, &prop)
		}
	}
}

// opaque types have schemas of their own that need no walking.
var opaque = map[reflect.Type]bool{
	reflect.TypeOf(metav1.Time{}):          true,
	reflect.TypeOf(metav1.Duration{}):      true,
	reflect.TypeOf(metav1.LabelSelector{}): true,
	reflect.TypeOf(metav1.Condition{}):     true,
}

func matchSchema(t *testing.T, path string, typ reflect.Type, s *apiextensionsv1.JSONSchemaProps) {
	t.Helper()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch {
	case opaque[typ]:
	case typ.Kind() == reflect.Slice:
		if s.Items == nil || s.Items.Schema == nil {
			t.Errorf("%s: schema has no items", path)
			return
		}
		matchSchema(t, path+"[]", typ.Elem(), s.Items.Schema)
	case typ.Kind() == reflect.Struct:
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			prop, ok := s.Properties[name]
			if !ok {
				t.Errorf("%s.%s is in the Go type but not in the CRD; run go generate ./api/...", path, name)
				continue
			}
			matchSchema(t, path+"."+name, f.Type, &prop)
		}
		if n := len(s.Properties); n > typ.NumField() {
			t.Errorf("%s: CRD has %d properties, the Go type %d fields; run go generate ./api/...", path, n, typ.NumField())
		}
	}
}
