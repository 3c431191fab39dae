package translate

import (
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sluice-dev/sluice/router"
)

// FuzzBuildTranslate feeds arbitrary YAML states through Build and
// Translate: bad input must come back as an error, never a panic, and any
// state Build accepts must translate into valid, consistent resources.
func FuzzBuildTranslate(f *testing.F) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.in.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, in := range inputs {
		b, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("services: [{namespace: a, name: b, ports: [{name: p, number: 1, protocol: grpc}], strategy: {sticky: {source: header, name: X, share: 1}}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var st router.State
		if err := yaml.UnmarshalStrict(data, &st); err != nil {
			return
		}
		plan, err := router.Build(st)
		if err != nil {
			return
		}
		if err := plan.Validate(); err != nil {
			t.Fatalf("Build returned a plan that fails Validate: %v", err)
		}
		res, err := Translate(plan, Options{})
		if err != nil {
			t.Fatalf("Translate of a built plan: %v", err)
		}
		checkReferences(t, res)
	})
}
