package charts

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata and the chart's CRDs")

const chartDir = "sluice"

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helm returns the cached helm binary, building it on first use.
func helm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		helmPath, helmErr = EnsureHelm(ctx, os.Stderr)
	})
	if helmErr != nil {
		t.Fatalf("helm: %v", helmErr)
	}
	return helmPath
}

// testContext is the deadline of one helm call. It builds helm first: the
// arguments of Template(testContext(t), helm(t), …) are evaluated in order,
// and on a machine without the cached binary its build (minutes) would
// otherwise use up the call's deadline.
func testContext(t *testing.T) context.Context {
	t.Helper()
	helm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// cases are the golden value sets: testdata/<case>.values.yaml.
func cases(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.values.yaml")
	}
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".values.yaml"))
	}
	return names
}

// render renders a golden case as the golden files hold it.
func render(t *testing.T, name string) []byte {
	t.Helper()
	out, err := Template(testContext(t), helm(t), chartDir, TemplateOptions{
		ValuesFiles: []string{filepath.Join("testdata", name+".values.yaml")},
	})
	if err != nil {
		t.Fatalf("render %s: %v", name, err)
	}
	return out
}

func TestLint(t *testing.T) {
	out, err := Lint(testContext(t), helm(t), chartDir)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, name := range cases(t) {
		t.Run(name, func(t *testing.T) {
			out, err := Lint(testContext(t), helm(t), chartDir, filepath.Join("testdata", name+".values.yaml"))
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestGolden renders every testdata/<case>.values.yaml and compares the
// result with <case>.out.yaml; -update rewrites the outputs and removes
// those whose values file is gone.
func TestGolden(t *testing.T) {
	names := cases(t)
	want := map[string]bool{}
	for _, name := range names {
		want[name+".out.yaml"] = true
		t.Run(name, func(t *testing.T) {
			got := render(t, name)
			path := filepath.Join("testdata", name+".out.yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			golden, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./charts -update to create it)", err)
			}
			if diff := cmp.Diff(string(golden), string(got)); diff != "" {
				t.Errorf("%s is stale (-golden +rendered); run go test ./charts -update and review the diff:\n%s", path, diff)
			}
		})
	}
	outs, err := filepath.Glob(filepath.Join("testdata", "*.out.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range outs {
		if want[filepath.Base(out)] {
			continue
		}
		if *update {
			if err := os.Remove(out); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("%s has no values file; run go test ./charts -update to remove it", out)
	}
}

// TestSchemaRejects checks that values.schema.json turns bad values into a
// failed render whose message names the value.
func TestSchemaRejects(t *testing.T) {
	tests := map[string]struct {
		set  []string
		want []string
	}{
		"zero replicas":         {set: []string{"replicas=0"}, want: []string{"/replicas", "minimum: got 0, want 1"}},
		"replicas not a number": {set: []string{"replicas=two"}, want: []string{"replicas", "integer"}},
		"unknown certificate mode": {
			set: []string{"certificates.mode=vault"}, want: []string{"/certificates/mode", "self", "cert-manager"}},
		"unknown mutating failure policy": {
			set: []string{"webhooks.failurePolicy.mutating=Retry"}, want: []string{"/webhooks/failurePolicy/mutating", "Fail", "Ignore"}},
		"unknown validating failure policy": {
			set: []string{"webhooks.failurePolicy.validating=fail"}, want: []string{"/webhooks/failurePolicy/validating", "Fail", "Ignore"}},
		"timeout above the API server's limit": {
			set: []string{"webhooks.timeoutSeconds=31"}, want: []string{"/webhooks/timeoutSeconds", "maximum: got 31, want 30"}},
		"timeout zero": {set: []string{"webhooks.timeoutSeconds=0"}, want: []string{"/webhooks/timeoutSeconds", "minimum"}},
		"misspelled top-level key": {
			set: []string{"replica=3"}, want: []string{"replica", "additional properties"}},
		"misspelled nested key": {
			set: []string{"webhooks.failurepolicy.mutating=Fail"}, want: []string{"failurepolicy", "additional properties"}},
		"port out of range":  {set: []string{"ports.webhook=70000"}, want: []string{"/ports/webhook", "maximum"}},
		"bad load interval":  {set: []string{"loadReportInterval=often"}, want: []string{"loadReportInterval"}},
		"issuer kind":        {set: []string{"certificates.mode=cert-manager", "certificates.certManager.issuerRef.name=x", "certificates.certManager.issuerRef.kind=Vault"}, want: []string{"/certificates/certManager/issuerRef/kind", "Issuer", "ClusterIssuer"}},
		"extra arg not flag": {set: []string{"extraArgs[0]=verbose"}, want: []string{"extraArgs", "pattern"}},
		"servicemonitor moved to prometheus": {
			set: []string{"metrics.serviceMonitor.enabled=true"}, want: []string{"serviceMonitor", "additional properties"}},
		"apiserver CIDR not a CIDR": {
			set: []string{"networkPolicy.apiserverCIDRs[0]=apiserver"}, want: []string{"/networkPolicy/apiserverCIDRs/0", "pattern"}},
		"held for not a duration": {
			set: []string{"prometheus.rules.rolloutHeldFor=soon"}, want: []string{"/prometheus/rules/rolloutHeldFor", "pattern"}},
		"metrics reader kind": {
			set: []string{"metrics.readers[0].kind=Pod", "metrics.readers[0].name=p"}, want: []string{"/metrics/readers/0/kind"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Template(testContext(t), helm(t), chartDir, TemplateOptions{Set: tc.set})
			if err == nil {
				t.Fatalf("helm template --set %v succeeded; want a schema error", tc.set)
			}
			msg := err.Error()
			if !strings.Contains(msg, "values don't meet the specifications of the schema") {
				t.Errorf("error is not a schema error: %s", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not mention %q: %s", w, msg)
				}
			}
		})
	}
}

// TestSchemaAccepts guards against a schema so strict that documented
// values fail.
func TestSchemaAccepts(t *testing.T) {
	tests := map[string][]string{
		"one replica":           {"replicas=1"},
		"ignore both":           {"webhooks.failurePolicy.mutating=Ignore", "webhooks.failurePolicy.validating=Ignore"},
		"load interval":         {"loadReportInterval=2500ms"},
		"cluster issuer":        {"certificates.mode=cert-manager", "certificates.certManager.issuerRef.name=corp", "certificates.certManager.issuerRef.kind=ClusterIssuer"},
		"extra arg":             {"extraArgs[0]=--load-report-interval=5s"},
		"no spread":             {"topologySpread.enabled=false"},
		"pod labels":            {"podLabels.team=platform"},
		"global values allowed": {"global.imageRegistry=example.com"},
		"legacy xds":            {"trustFlags=true", "xds.legacy.enabled=true"},
		"plain metrics":         {"metrics.secure=false", "prometheus.serviceMonitor.enabled=true"},
	}
	for name, set := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Template(testContext(t), helm(t), chartDir, TemplateOptions{Set: set}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCRDsMatchAPI(t *testing.T) {
	checkCRDs(t, filepath.Join(chartDir, "crds"))
}

func TestObjectsSplitsDocuments(t *testing.T) {
	in := []byte("---\n# Source: a\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: b\n")
	objs, err := Objects(in)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetName())
	}
	if diff := cmp.Diff([]string{"ConfigMap/a", "Secret/b"}, got); diff != "" {
		t.Error(diff)
	}
	if _, err := Objects([]byte("just: text\n")); err == nil || !strings.Contains(err.Error(), "not a Kubernetes object") {
		t.Errorf("Objects(non-object) error = %v, want 'not a Kubernetes object'", err)
	}
	if _, err := Objects(bytes.Repeat([]byte("---\n"), 3)); err == nil {
		t.Error("Objects(only separators) succeeded, want 'no objects rendered'")
	}
}

// TestLegacyNeedsTrustFlags: the legacy listener cannot be asked of a
// controller rendered without the flags that serve it.
func TestLegacyNeedsTrustFlags(t *testing.T) {
	_, err := Template(testContext(t), helm(t), chartDir, TemplateOptions{Set: []string{"trustFlags=false", "xds.legacy.enabled=true"}})
	if err == nil || !strings.Contains(err.Error(), "xds.legacy.enabled needs trustFlags: true") {
		t.Errorf("render with the legacy listener and no trust flags: %v, want a message naming trustFlags", err)
	}
}
