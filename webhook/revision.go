package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// RevisionLength is the number of hex digits in a revision.
const RevisionLength = 10

// sluicePrefix starts every label and annotation that Sluice owns.
const sluicePrefix = "sluice.dev/"

// Revision is the short content hash of a pod template that Sluice writes as
// the sluice.dev/revision label: the first RevisionLength hex digits of the
// SHA-256 of the template's JSON encoding, computed without any sluice.dev/
// labels or annotations. Equal templates give equal revisions whatever
// Sluice's own labels say, so admitting an admitted object changes nothing,
// and a canary Deployment (same template plus sluice.dev/track) has the
// revision of the template it came from.
func Revision(tmpl *corev1.PodTemplateSpec) (string, error) {
	if tmpl == nil {
		return "", fmt.Errorf("pod template is missing")
	}
	// A shallow copy is enough: only the two maps are replaced, and
	// encoding/json sorts map keys, so the encoding is canonical.
	c := *tmpl
	c.Labels = withoutSluiceKeys(tmpl.Labels)
	c.Annotations = withoutSluiceKeys(tmpl.Annotations)
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("encode pod template: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:RevisionLength], nil
}

// withoutSluiceKeys returns m without sluice.dev/ keys; m itself when it
// has none, and nil when nothing is left.
func withoutSluiceKeys(m map[string]string) map[string]string {
	n := 0
	for k := range m {
		if strings.HasPrefix(k, sluicePrefix) {
			n++
		}
	}
	if n == 0 {
		return m
	}
	if n == len(m) {
		return nil
	}
	out := make(map[string]string, len(m)-n)
	for k, v := range m {
		if !strings.HasPrefix(k, sluicePrefix) {
			out[k] = v
		}
	}
	return out
}
