package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/sluice-dev/sluice/router"
)

var update = flag.Bool("update", false, "rewrite testdata/*.out.yaml from the current output and remove stale ones")

// TestGolden builds and translates every testdata/<case>.in.yaml (a
// router.State, read strictly) and compares the resources, rendered as
// sorted YAML, with testdata/<case>.out.yaml (FormCurrent), and the route
// configurations and limits of every other form with
// testdata/<case>.<form>.out.yaml.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no golden inputs in testdata")
	}
	want := map[string]bool{}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		out := filepath.Join("testdata", name+".out.yaml")
		want[out] = true
		for _, f := range Forms[1:] {
			want[filepath.Join("testdata", name+"."+string(f)+".out.yaml")] = true
		}
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var state router.State
			if err := yaml.UnmarshalStrict(raw, &state); err != nil {
				t.Fatalf("read %s: %v", in, err)
			}
			plan, err := router.Build(state)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			res, err := Translate(plan, Options{})
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			assertValid(t, res)
			compareGolden(t, out, render(t, res))
			for _, f := range Forms[1:] {
				compareGolden(t, filepath.Join("testdata", name+"."+string(f)+".out.yaml"), renderForm(t, res, f))
			}
		})
	}
	outputs, err := filepath.Glob(filepath.Join("testdata", "*.out.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range outputs {
		if want[out] {
			continue
		}
		if *update {
			if err := os.Remove(out); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("stale golden output %s has no input (run with -update to remove it)", out)
	}
}

// compareGolden compares got with the golden file, or rewrites it with
// -update.
func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	golden, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden output (run go test ./xds/translate -update): %v", err)
	}
	if !bytes.Equal(got, golden) {
		t.Errorf("output differs from %s (run go test ./xds/translate -update and review the diff):\n%s", path, cmp.Diff(string(golden), string(got)))
	}
}

// renderForm returns the route configurations of a form that differ from
// FormCurrent, each validated, and the form's limits, as YAML.
func renderForm(t *testing.T, res Resources, f Form) []byte {
	t.Helper()
	type entry struct {
		Name     string          `json:"name"`
		Resource json.RawMessage `json:"resource"`
	}
	doc := struct {
		Form   Form    `json:"form"`
		Limits []Limit `json:"limits"`
		Routes []entry `json:"routes"`
	}{Form: f, Limits: res.Limits(f)}
	v := res.Variant(f)
	for _, name := range slices.Sorted(maps.Keys(v)) {
		if err := v[name].(interface{ ValidateAll() error }).ValidateAll(); err != nil {
			t.Errorf("form %s route %q: %v", f, name, err)
		}
		b, err := protojson.Marshal(v[name])
		if err != nil {
			t.Fatal(err)
		}
		doc.Routes = append(doc.Routes, entry{Name: name, Resource: b})
	}
	j, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// assertValid runs ValidateAll on every resource, independently of the check
// inside Translate.
func assertValid(t *testing.T, res Resources) {
	t.Helper()
	for _, typ := range res.Types() {
		for _, name := range res.Names(typ) {
			m, ok := res.Get(typ, name)
			if !ok {
				t.Fatalf("%s %q listed but missing", typ, name)
			}
			v, ok := m.(interface{ ValidateAll() error })
			if !ok {
				t.Fatalf("%s %q has no ValidateAll", typ, name)
			}
			if err := v.ValidateAll(); err != nil {
				t.Errorf("%s %q: %v", typ, name, err)
			}
		}
	}
}

// render returns the resources as YAML: the version, then every resource by
// type URL and name, each as its protojson form.
func render(t *testing.T, res Resources) []byte {
	t.Helper()
	type entry struct {
		Type     string          `json:"type"`
		Name     string          `json:"name"`
		Access   Access          `json:"access"`
		Resource json.RawMessage `json:"resource"`
	}
	doc := struct {
		Version   string  `json:"version"`
		Resources []entry `json:"resources"`
	}{Version: res.Version()}
	for _, typ := range res.Types() {
		for _, name := range res.Names(typ) {
			m, ok := res.Get(typ, name)
			if !ok {
				t.Fatalf("%s %q listed but missing", typ, name)
			}
			b, err := protojson.Marshal(m)
			if err != nil {
				t.Fatalf("render %s %q: %v", typ, name, err)
			}
			a, ok := res.Access(typ, name)
			if !ok {
				t.Fatalf("%s %q has no access", typ, name)
			}
			doc.Resources = append(doc.Resources, entry{Type: shortType(typ), Name: name, Access: a, Resource: b})
		}
	}
	j, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		t.Fatal(err)
	}
	return y
}
