package cluster

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// podStages replace kwok's pod-ready and pod-delete stages, so that pods
// behave as a kubelet would make them:
//   - pod-ready makes a scheduled pod Running with its IP but not Ready: the
//     pod runtime marks it Ready once its ports listen, as a readiness probe
//     would;
//   - pod-delete removes a terminating pod only when its deletion grace
//     period ends. The pod runtime drains a pod it serves and removes the
//     object itself once its calls finished (and at once a pod it does not
//     serve), as the kubelet does; this stage is the bound.
var podStages = podStage("pod-ready", "DoesNotExist", `    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Pending'
  next:
    statusTemplate: |
      {{ $now := Now }}

      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: NotListening
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: NotListening
        type: ContainersReady

      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
`) + "---\n" + podStage("pod-delete", "Exists", `  delay:
    durationMilliseconds: 0
    durationFrom:
      expressionFrom: '.metadata.deletionTimestamp'
  next:
    delete: true
`)

// podStage is a kwok Stage named name for the Pods whose deletion
// timestamp satisfies operator deletion (Exists, DoesNotExist): rest
// follows that first selector expression, indented as the stage's spec, with
// more expressions if any and the stage's own fields.
func podStage(name, deletion, rest string) string {
	return `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: ` + name + `
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: '` + deletion + `'
` + rest
}

// writeStages writes kwok's configuration to path: the stages of upstream
// (the built file at upstream) but pod-ready and pod-delete, then podStages.
func writeStages(upstream, path string) error {
	data, err := os.ReadFile(upstream)
	if err != nil {
		return fmt.Errorf("read kwok stages: %w", err)
	}
	var out bytes.Buffer
	for _, doc := range strings.Split(string(data), "\n---\n") {
		doc = strings.TrimPrefix(strings.TrimSpace(doc), "---")
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var meta struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return fmt.Errorf("read kwok stages %s: %w", upstream, err)
		}
		if meta.Metadata.Name == "pod-ready" || meta.Metadata.Name == "pod-delete" {
			continue
		}
		out.WriteString("---\n" + strings.TrimSpace(doc) + "\n")
	}
	out.WriteString("---\n" + podStages)
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write kwok stages: %w", err)
	}
	return nil
}

// stagesPath is where a cluster keeps its kwok configuration.
func stagesPath(dir string) string { return filepath.Join(dir, "kwok-stages.yaml") }
