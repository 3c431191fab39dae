package rollout

import (
	"fmt"
	"strings"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/text"
	"github.com/sluice-dev/sluice/rollout/analysis"
)

// Provenance says where each track's sample since the canary began came
// from, when the metric source can tell reporters apart.
type Provenance struct {
	// Stable and Canary are the tracks' samples by origin.
	Stable, Canary analysis.Provenance
}

// maxIdentityShown bounds an identity's name on the status, in bytes.
const maxIdentityShown = 330

// sourcesStatus renders p for status.sources: the counts per track and one
// bounded sentence on what limits the promotion evidence.
func sourcesStatus(p Provenance) *v1alpha1.AnalysisSources {
	out := &v1alpha1.AnalysisSources{Canary: trackSources(p.Canary), Stable: trackSources(p.Stable)}
	var says []string
	for _, t := range []struct {
		name string
		p    analysis.Provenance
	}{{v1alpha1.TrackCanary, p.Canary}, {v1alpha1.TrackStable, p.Stable}} {
		switch {
		case t.p.Identities == 1 && t.p.Top == "":
			says = append(says, fmt.Sprintf("the %s's reports carry no identity (xDS authentication is off): all of them count as evidence", t.name))
		case t.p.Identities == 1:
			says = append(says, fmt.Sprintf("one identity (%s) supplied 100%% of the %s's authenticated sample: the share bound cannot apply",
				identityShown(t.p.Top), t.name))
		case t.p.Dominated():
			others := fmt.Sprintf("the other %d identities together", t.p.Identities-1)
			if t.p.Identities == 2 {
				others = "the other identity"
			}
			says = append(says, fmt.Sprintf("%s supplied %s of the %s's authenticated sample and counts for at most as much as %s",
				identityShown(t.p.Top), percent(t.p.TopRequests, t.p.Requests-t.p.LegacyRequests), t.name, others))
		}
		if t.p.LegacyRequests > 0 {
			says = append(says, fmt.Sprintf("%s of the %s sample came from the legacy listener and cannot promote",
				percent(t.p.LegacyRequests, t.p.Requests), t.name))
		}
	}
	out.Message = text.Truncate(strings.Join(says, "; "), v1alpha1.MaxSourcesMessage)
	return out
}

// trackSources renders one track's provenance.
func trackSources(p analysis.Provenance) v1alpha1.TrackSources {
	t := v1alpha1.TrackSources{
		Requests:         clampInt64(p.Requests),
		LegacyRequests:   clampInt64(p.LegacyRequests),
		Identities:       int32(min(p.Identities, 1<<30)),
		EvidenceRequests: clampInt64(p.Evidence.Requests),
	}
	if p.LegacyRequests > 0 {
		t.LegacyPercent = percent(p.LegacyRequests, p.Requests)
	}
	if p.TopRequests > 0 {
		t.TopIdentity = identityShown(p.Top)
		t.TopPercent = percent(p.TopRequests, p.Requests-p.LegacyRequests)
	}
	return t
}

// identityShown names an identity on the status: bounded, and saying so
// when the reports carried none (xDS authentication is off).
func identityShown(id string) string {
	if id == "" {
		return "unidentified reporters"
	}
	return text.Truncate(id, maxIdentityShown)
}

// percent formats part/whole as a percentage with up to three significant
// digits, e.g. "83%", "0.5%".
func percent(part, whole uint64) string {
	if whole == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.3g%%", 100*float64(part)/float64(whole))
}

func clampInt64(n uint64) int64 { return int64(min(n, 1<<62)) }
