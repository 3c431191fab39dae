package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestWriteStagesReplacesPodReadyAndDelete checks that the cluster's kwok
// configuration keeps upstream's other stages and replaces pod-ready (which
// made pods Ready before they listened) and pod-delete (which removed them
// at once).
func TestWriteStagesReplacesPodReadyAndDelete(t *testing.T) {
	dir := t.TempDir()
	upstream := filepath.Join(dir, "upstream.yaml")
	stage := func(name, marker string) string {
		return "apiVersion: kwok.x-k8s.io/v1alpha1\nkind: Stage\nmetadata:\n  name: " + name + "\nspec:\n  note: " + marker + "\n"
	}
	in := "---\n" + stage("node-initialize", "upstream") + "\n---\n" + stage("pod-ready", "upstream") +
		"\n---\n" + stage("pod-complete", "upstream") + "\n---\n" + stage("pod-delete", "upstream") + "\n"
	if err := os.WriteFile(upstream, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "stages.yaml")
	if err := writeStages(upstream, out); err != nil {
		t.Fatalf("writeStages: %v", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, doc := range strings.Split(string(data), "\n---\n") {
		doc = strings.TrimPrefix(strings.TrimSpace(doc), "---")
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var s struct {
			Metadata struct{ Name string } `json:"metadata"`
			Spec     map[string]any        `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &s); err != nil {
			t.Fatalf("stage does not parse: %v\n%s", err, doc)
		}
		names = append(names, s.Metadata.Name)
		upstreamCopy := s.Spec["note"] == "upstream"
		switch s.Metadata.Name {
		case "pod-ready", "pod-delete":
			if upstreamCopy {
				t.Errorf("upstream %s kept", s.Metadata.Name)
			}
		default:
			if !upstreamCopy {
				t.Errorf("stage %s is not upstream's", s.Metadata.Name)
			}
		}
	}
	want := "node-initialize,pod-complete,pod-ready,pod-delete"
	if got := strings.Join(names, ","); got != want {
		t.Errorf("stages %s, want %s", got, want)
	}
	if !strings.Contains(string(data), `status: "False"`) || !strings.Contains(string(data), "durationFrom") {
		t.Errorf("pod-ready must leave Ready False and pod-delete wait for the deletion timestamp:\n%s", data)
	}
}

// TestWriteStagesNamesAMissingFile checks the error for a cache without the
// built stages.
func TestWriteStagesNamesAMissingFile(t *testing.T) {
	dir := t.TempDir()
	err := writeStages(filepath.Join(dir, "absent.yaml"), filepath.Join(dir, "out.yaml"))
	if err == nil || !strings.Contains(err.Error(), "absent.yaml") {
		t.Fatalf("err = %v, want it to name the missing file", err)
	}
}
