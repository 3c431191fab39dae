package charts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/sluice-dev/sluice/internal/cachedir"
)

// HelmVersion is the Helm release the chart is rendered and tested with.
const HelmVersion = "v3.22.0"

// KubeVersion is the Kubernetes version Template renders for (without a
// cluster helm would otherwise assume its built-in v1.20.0); the local test
// cluster runs it.
const KubeVersion = "v1.37.2"

// helmModule is the main package of the Helm command line.
const helmModule = "helm.sh/helm/v3/cmd/helm"

// EnsureHelm returns the path of a helm binary at HelmVersion, building it
// from the Go module proxy on first use into the user cache directory
// (<cache>/sluice/helm-<version>/helm). Concurrent callers, in this process
// or others, wait on a file lock, so the binary is built once; progress (may
// be nil) is told when a build starts.
func EnsureHelm(ctx context.Context, progress io.Writer) (string, error) {
	cache, err := cachedir.Dir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "helm-"+HelmVersion)
	bin := filepath.Join(dir, "helm")
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create helm cache directory: %w", err)
	}
	unlock, err := cachedir.Lock(ctx, dir+".lock", nil)
	if err != nil {
		return "", err
	}
	defer unlock()
	if isExecutable(bin) { // built by whoever held the lock before us
		return bin, nil
	}
	if progress != nil {
		fmt.Fprintf(progress, "building helm %s from the Go module proxy (once, about a minute)\n", HelmVersion)
	}
	// Install into a fresh directory and rename, so a killed build never
	// leaves a partial binary at the cached path.
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("create helm build directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "go", "install", helmModule+"@"+HelmVersion)
	cmd.Dir = tmp // outside any module: go install pkg@version ignores go.mod anyway
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", helmModule, HelmVersion, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "helm"), bin); err != nil {
		return "", fmt.Errorf("move helm into the cache: %w", err)
	}
	return bin, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// TemplateOptions select what Template renders.
type TemplateOptions struct {
	// Release and Namespace name the release; Release defaults to "sluice",
	// Namespace to "sluice-system".
	Release, Namespace string
	// ValuesFiles are passed as --values, in order.
	ValuesFiles []string
	// Set are passed as --set, in order (key=value).
	Set []string
	// IncludeCRDs renders the chart's crds/ too.
	IncludeCRDs bool
	// KubeVersion is the cluster version to render for; default KubeVersion.
	KubeVersion string
	// HelmDefaultKubeVersion passes no --kube-version, as a user rendering
	// without a cluster would: helm renders for its built-in default.
	HelmDefaultKubeVersion bool
}

// Template runs `helm template` on the chart in chartDir. A failure
// (including values.schema.json rejecting the values) returns helm's own
// message.
func Template(ctx context.Context, helm, chartDir string, o TemplateOptions) ([]byte, error) {
	if _, err := os.Stat(filepath.Join(chartDir, "Chart.yaml")); err != nil {
		return nil, fmt.Errorf("helm template: %s is not a chart directory: %w", chartDir, err)
	}
	if o.Release == "" {
		o.Release = "sluice"
	}
	if o.Namespace == "" {
		o.Namespace = "sluice-system"
	}
	if o.KubeVersion == "" {
		o.KubeVersion = KubeVersion
	}
	args := []string{"template", o.Release, chartDir, "--namespace", o.Namespace}
	if !o.HelmDefaultKubeVersion {
		args = append(args, "--kube-version", o.KubeVersion)
	}
	if o.IncludeCRDs {
		args = append(args, "--include-crds")
	}
	for _, f := range o.ValuesFiles {
		args = append(args, "--values", f)
	}
	for _, s := range o.Set {
		args = append(args, "--set", s)
	}
	return run(ctx, helm, args...)
}

// Lint runs `helm lint --strict` on the chart with the given values files.
func Lint(ctx context.Context, helm, chartDir string, valuesFiles ...string) ([]byte, error) {
	args := []string{"lint", "--strict", chartDir}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	return run(ctx, helm, args...)
}

// run runs helm with a home of its own, so the user's repositories and
// plugins never change what is rendered.
func run(ctx context.Context, helm string, args ...string) ([]byte, error) {
	home, err := os.MkdirTemp("", "sluice-helm-")
	if err != nil {
		return nil, fmt.Errorf("create helm home: %w", err)
	}
	defer os.RemoveAll(home)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"),
	)
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String() + "\n" + stdout.String())
		return stdout.Bytes(), fmt.Errorf("helm %s: %w: %s", args[0], err, msg)
	}
	return stdout.Bytes(), nil
}

// Objects splits rendered manifests into objects, in order, skipping empty
// documents. A document that is not a Kubernetes object is an error.
func Objects(rendered []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for i, doc := range splitDocuments(rendered) {
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("document %d: not a Kubernetes object (apiVersion, kind and metadata.name are required):\n%s", i+1, doc)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, errors.New("no objects rendered")
	}
	return out, nil
}

// splitDocuments splits a YAML stream at its "---" separator lines.
func splitDocuments(b []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if t := bytes.TrimRight(line, " \r\n"); bytes.Equal(t, []byte("---")) {
			docs = append(docs, cur)
			cur = nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}
