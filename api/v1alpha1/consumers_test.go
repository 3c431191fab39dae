package v1alpha1

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/router"
)

func TestParseConsumers(t *testing.T) {
	for name, tc := range map[string]struct {
		in      string
		want    router.Consumers
		wantErr string
	}{
		"empty":             {in: "", want: router.Consumers{}},
		"all":               {in: " * ", want: router.Consumers{All: true}},
		"sorted and unique": {in: "payments, frontend,payments", want: router.Consumers{Namespaces: []string{"frontend", "payments"}}},
		"star with names":   {in: "*,frontend", wantErr: `"*" must stand alone`},
		"empty entry":       {in: "frontend,,payments", wantErr: "empty namespace name"},
		"not a namespace":   {in: "Front_End", wantErr: `namespace "Front_End"`},
		"too many":          {in: strings.Repeat("a,", maxConsumers) + "a", wantErr: "at most"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseConsumers(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseDeliveryChecksConsumers: admission names a bad consumers
// annotation with its field path.
func TestParseDeliveryChecksConsumers(t *testing.T) {
	_, errs := ParseDelivery(map[string]string{AnnotationConsumers: "*,shop"}, field.NewPath("metadata", "annotations"))
	if len(errs) != 1 || !strings.Contains(errs[0].Field, AnnotationConsumers) {
		t.Fatalf("errors %v, want one on %s", errs, AnnotationConsumers)
	}
}

func FuzzParseConsumers(f *testing.F) {
	for _, s := range []string{"", "*", "a,b", " a , b ", "*,a", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConsumers(s)
		if err != nil {
			return
		}
		for i, ns := range c.Namespaces {
			if ns == "" || (i > 0 && c.Namespaces[i-1] >= ns) {
				t.Fatalf("ParseConsumers(%q) = %v: not sorted, unique and non-empty", s, c.Namespaces)
			}
		}
	})
}
