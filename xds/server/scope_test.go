package server

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/translate"
)

// genGrants draws grants over a few names and namespaces.
func genGrants(t *rapid.T, label string) Grants {
	namespaces := []string{"a", "b", "c", "d"}
	g := Grants{}
	for _, typ := range Types {
		g[typ] = map[string]translate.Access{}
		for i := range rapid.IntRange(0, 4).Draw(t, label+" count") {
			name := fmt.Sprint("r", rapid.IntRange(0, 5).Draw(t, label+" name"), "-", i%2)
			a := translate.Access{Namespace: rapid.SampledFrom(namespaces).Draw(t, label+" owner")}
			switch rapid.IntRange(0, 2).Draw(t, label+" consumers") {
			case 1:
				a.Consumers = router.Consumers{All: true}
			case 2:
				a.Consumers = router.Consumers{Namespaces: []string{rapid.SampledFrom(namespaces).Draw(t, label+" consumer")}}
			}
			g[typ][name] = a
		}
	}
	return g
}

// TestPropertyTouchedCoversEveryChangedView: whenever what a namespace may
// see of a type changes between two publications, its sentinel (or the one
// every namespace watches) is touched, so its watches look again; and the
// visible set is exactly the names the grants allow.
func TestPropertyTouchedCoversEveryChangedView(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		old, next := genGrants(t, "old"), genGrants(t, "next")
		touch := touched(old, next)
		oi, ni := newGrantIndex(old), newGrantIndex(next)
		for _, typ := range Types {
			for _, ns := range []string{"a", "b", "c", "d", "e"} {
				before, after := oi.visibleSet(typ, ns), ni.visibleSet(typ, ns)
				for name := range after {
					if _, ok := next[typ][name]; ok && !next[typ][name].Allows(ns) {
						t.Fatalf("%s visible to %s without a grant", name, ns)
					}
				}
				if !maps.Equal(before, after) && !slices.Contains(touch[typ], sentinel(ns)) && !slices.Contains(touch[typ], sentinelAll) {
					t.Fatalf("%s view of %s changed (%v -> %v) but touched only %q", typeLabel(typ), ns, slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)), touch[typ])
				}
			}
		}
	})
}
