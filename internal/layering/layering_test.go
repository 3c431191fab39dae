// Package layering holds the test that keeps test-only code out of the
// production binary: e2e/ is tests only, and test helpers (fakes, envtest,
// grpc's interop test service) reach at most the local environment that
// `sluice dev` runs.
package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/sluice-dev/sluice"

// testOnly names the packages that exist for tests. A production package may
// not depend on them; local/ (the simulated pods of `sluice dev`) may use the
// gRPC interop test service, which is what its pods answer.
var testOnly = map[string]string{
	module + "/e2e": "end-to-end tests",
	"google.golang.org/grpc/interop/grpc_testing":    "gRPC interop test service",
	"k8s.io/client-go/kubernetes/fake":               "client-go fake clientset",
	"sigs.k8s.io/controller-runtime/pkg/client/fake": "controller-runtime fake client",
	"sigs.k8s.io/controller-runtime/pkg/envtest":     "envtest",
	"testing":                      "the testing package",
	"github.com/google/go-cmp/cmp": "test comparisons",
	"pgregory.net/rapid":           "property testing",
}

// allowedIn says which of the module's packages may still import a test-only
// package: the local environment serves the interop test service from its
// simulated pods.
var allowedIn = map[string][]string{
	"google.golang.org/grpc/interop/grpc_testing": {module + "/local/"},
}

type pkg struct {
	ImportPath string
	Imports    []string // direct imports: where a test-only package enters
	Deps       []string // everything linked: where e2e could hide
}

func TestProductionImportsNoTestOnlyPackage(t *testing.T) {
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,Deps", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	seen := 0
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		if p.ImportPath == module+"/e2e" || strings.HasPrefix(p.ImportPath, module+"/e2e/") {
			continue // the tests themselves
		}
		seen++
		for _, dep := range p.Deps {
			if dep == module+"/e2e" || strings.HasPrefix(dep, module+"/e2e/") {
				t.Errorf("production package %s links %s (end-to-end tests)", p.ImportPath, dep)
			}
		}
		// Only the module's own imports are checked: a third-party library
		// that imports "testing" is not this module's choice.
		for _, imp := range p.Imports {
			if what, bad := testOnly[imp]; bad && !allowed(imp, p.ImportPath) {
				t.Errorf("production package %s imports %s (%s)", p.ImportPath, imp, what)
			}
		}
	}
	if seen < 10 {
		t.Fatalf("go list named only %d production packages; the check is not looking at the module", seen)
	}
}

func allowed(dep, importer string) bool {
	for _, prefix := range allowedIn[dep] {
		if importer == prefix || strings.HasPrefix(importer, prefix) {
			return true
		}
	}
	return false
}
