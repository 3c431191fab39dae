package v1alpha1

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// annotationPrefix starts every Sluice annotation.
const annotationPrefix = "sluice.dev/"

// misspelledAnnotations reports sluice.dev/ annotations that are not
// Sluice's but lie within two edits of one that is (sluice.dev/step for
// sluice.dev/steps), so a typo is not silently ignored. Other unknown
// sluice.dev/ keys are left alone: Sluice itself may write some.
func misspelledAnnotations(annotations map[string]string, fld *field.Path) field.ErrorList {
	known := append(append([]string(nil), DeliveryAnnotations...), AnnotationEmergencyBypass, AnnotationEmergencyBypassExpires, AnnotationConsumers)
	var keys []string
	for k := range annotations {
		if strings.HasPrefix(k, annotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var errs field.ErrorList
	for _, k := range keys {
		best, bestDist := "", 3
		for _, want := range known {
			if k == want {
				best = ""
				break
			}
			if d := editDistance(k[len(annotationPrefix):], want[len(annotationPrefix):], bestDist); d < bestDist {
				best, bestDist = want, d
			}
		}
		if best != "" {
			errs = append(errs, field.Invalid(fld.Key(k), k, fmt.Sprintf("unknown Sluice annotation; did you mean %s?", best)))
		}
	}
	return errs
}

// editDistance is the Levenshtein distance between a and b, or limit when it
// is at least limit.
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= limit {
			return limit
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}
