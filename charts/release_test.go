package charts

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestRenderWithoutACluster renders the chart as a user would without a
// cluster (`helm template` with no --kube-version: Helm's built-in
// v1.20.0) and for several cluster versions: clusters older than 1.30 are
// refused with a message naming the version.
func TestRenderWithoutACluster(t *testing.T) {
	tests := map[string]struct {
		kube    string
		wantErr string
	}{
		"helm's offline default": {},
		"1.30.0":                 {kube: "v1.30.0"},
		"1.37.2":                 {kube: "v1.37.2"},
		"1.29.9":                 {kube: "v1.29.9", wantErr: "needs Kubernetes 1.30 or newer; the cluster runs v1.29.9"},
		"1.20.1":                 {kube: "v1.20.1", wantErr: "needs Kubernetes 1.30 or newer"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			o := TemplateOptions{KubeVersion: tc.kube, HelmDefaultKubeVersion: tc.kube == ""}
			out, err := Template(testContext(t), helm(t), chartDir, o)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(out), "kind: Deployment") {
					t.Errorf("no Deployment rendered:\n%s", out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestVersionsFollowTheRelease keeps the release's version in step: the
// chart's appVersion is "v" + the chart version (the image tag `make push`
// publishes from the release tag), the values leave the tag to it, and
// CHANGELOG.md has a section for that version.
func TestVersionsFollowTheRelease(t *testing.T) {
	var chart struct {
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	readYAML(t, filepath.Join(chartDir, "Chart.yaml"), &chart)
	if chart.AppVersion != "v"+chart.Version {
		t.Errorf("appVersion %q, want %q (v + the chart version)", chart.AppVersion, "v"+chart.Version)
	}
	var values struct {
		Image struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
		} `json:"image"`
	}
	readYAML(t, filepath.Join(chartDir, "values.yaml"), &values)
	if values.Image.Tag != "" {
		t.Errorf("values.yaml pins image.tag %q; leave it empty so the tag follows appVersion", values.Image.Tag)
	}
	if values.Image.Repository != "ghcr.io/sluice-dev/sluice" {
		t.Errorf("image.repository %q, want ghcr.io/sluice-dev/sluice (docs/install.md, make push)", values.Image.Repository)
	}
	changelog, err := os.ReadFile(filepath.Join("..", "CHANGELOG.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := regexp.MustCompile(`(?m)^## \[` + regexp.QuoteMeta(chart.Version) + `\]`)
	if !section.Match(changelog) {
		t.Errorf("CHANGELOG.md has no \"## [%s]\" section for the chart's version", chart.Version)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
