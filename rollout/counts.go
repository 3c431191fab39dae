package rollout

import (
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/rollout/metrics"
)

// Readings are the live counters of one evaluation, per source (controller incarnation), for both tracks since
// the canary revision began.
type Readings struct {
	Canary, Stable map[string]metrics.Counter
}

// ResumeCounts merges the counts persisted by earlier evaluations (prev, from the Rollout's status; nil before
// the first) with live readings, and returns what to judge and persist next.
//
// Each source's counter only grows, so two readings of it merge by taking the larger one (componentwise: both
// fields of one counter grow together); its base is the one first recorded for the revision, by whichever
// replica saw it. The counts judged are the sum over sources of seen - base. So:
//   - a source that both hold (the same replica, or one whose forwards the new leader also merged) is counted
//     once, at its newest reading: no request counts twice;
//   - a source only the persisted counts hold (every replica that knew it restarted) keeps its last persisted
//     reading: the sequential tests continue from there rather than starting over;
//   - a source only the live readings hold (a replica started since) adds what it counted.
//
// Requests a source counted after its last persisted reading and before it died with no one merging it are
// lost; dropping requests regardless of their outcome keeps the tests valid (it is a subsequence of the same
// independent trials). prev is ignored when it is for another revision or start. Beyond
// v1alpha1.MaxCountSources, sources absent from the live readings are folded into one entry that is carried as
// it is.
func ResumeCounts(prev *v1alpha1.AnalysisCounts, revision string, since time.Time, live Readings) v1alpha1.AnalysisCounts {
	out := v1alpha1.AnalysisCounts{Revision: revision, Since: metav1.NewTime(since)}
	byName := map[string]v1alpha1.CountSource{}
	if prev != nil && prev.Revision == revision && prev.Since.Time.Equal(since) {
		for _, s := range prev.Sources {
			byName[s.Name] = s
		}
	}
	liveNames := map[string]bool{}
	merge := func(name string, c metrics.Counter, base, seen func(*v1alpha1.CountSource) *v1alpha1.RequestCounts) {
		liveNames[name] = true
		s, known := byName[name]
		s.Name = name
		b, r := base(&s), seen(&s)
		if !known || (*b == v1alpha1.RequestCounts{} && *r == v1alpha1.RequestCounts{}) {
			*b = counts(c.Base)
		}
		*r = maxCounts(*r, counts(c.Now))
		byName[name] = s
	}
	for name, c := range live.Canary {
		merge(name, c, func(s *v1alpha1.CountSource) *v1alpha1.RequestCounts { return &s.CanaryBase },
			func(s *v1alpha1.CountSource) *v1alpha1.RequestCounts { return &s.CanarySeen })
	}
	for name, c := range live.Stable {
		merge(name, c, func(s *v1alpha1.CountSource) *v1alpha1.RequestCounts { return &s.StableBase },
			func(s *v1alpha1.CountSource) *v1alpha1.RequestCounts { return &s.StableSeen })
	}
	sources := make([]v1alpha1.CountSource, 0, len(byName))
	for _, s := range byName {
		sources = append(sources, s)
	}
	// Sorted by name, so that the status is the same whatever the map order.
	sort.Slice(sources, func(i, j int) bool { return sources[i].Name < sources[j].Name })
	out.Sources = fold(sources, liveNames)
	for _, s := range out.Sources {
		out.Canary = addCounts(out.Canary, span(s.CanaryBase, s.CanarySeen))
		out.Stable = addCounts(out.Stable, span(s.StableBase, s.StableSeen))
	}
	return out
}

// fold keeps at most v1alpha1.MaxCountSources sources: the oldest beyond that which the live readings do not
// hold are carried in one entry, as counts since the start (base zero).
func fold(sources []v1alpha1.CountSource, live map[string]bool) []v1alpha1.CountSource {
	if len(sources) <= v1alpha1.MaxCountSources {
		return sources
	}
	folded := v1alpha1.CountSource{Name: v1alpha1.FoldedCountSource}
	var kept []v1alpha1.CountSource
	excess := len(sources) - v1alpha1.MaxCountSources + 1
	for _, s := range sources {
		if excess > 0 && !live[s.Name] {
			folded.CanarySeen = addCounts(folded.CanarySeen, span(s.CanaryBase, s.CanarySeen))
			folded.StableSeen = addCounts(folded.StableSeen, span(s.StableBase, s.StableSeen))
			if s.Name != v1alpha1.FoldedCountSource {
				excess--
			}
			continue
		}
		kept = append(kept, s)
	}
	kept = append(kept, folded)
	sort.Slice(kept, func(i, j int) bool { return kept[i].Name < kept[j].Name })
	return kept
}

func counts(t metrics.Totals) v1alpha1.RequestCounts {
	return v1alpha1.RequestCounts{Requests: int64(min(t.Requests, 1<<62)), Errors: int64(min(t.Errors, 1<<62))}
}

func maxCounts(a, b v1alpha1.RequestCounts) v1alpha1.RequestCounts {
	return v1alpha1.RequestCounts{Requests: max(a.Requests, b.Requests), Errors: max(a.Errors, b.Errors)}
}

func addCounts(a, b v1alpha1.RequestCounts) v1alpha1.RequestCounts {
	return v1alpha1.RequestCounts{Requests: a.Requests + b.Requests, Errors: a.Errors + b.Errors}
}

// span is seen - base, or seen when the base is above it (a reading that cannot be of the same counter).
func span(base, seen v1alpha1.RequestCounts) v1alpha1.RequestCounts {
	if seen.Requests < base.Requests || seen.Errors < base.Errors {
		return seen
	}
	return v1alpha1.RequestCounts{Requests: seen.Requests - base.Requests, Errors: seen.Errors - base.Errors}
}
