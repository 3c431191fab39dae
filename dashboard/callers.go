package dashboard

import (
	"context"
	"sort"
	"strconv"
	"time"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// maxDependencies bounds the services of other teams a team page lists.
const maxDependencies = 50

// Caller is one namespace calling a service, from the load reports of its
// own clients (the Rollout's status.callers).
type Caller struct {
	Namespace string `json:"namespace"`
	// Team is the caller namespace's sluice.dev/team label, when known.
	Team string `json:"team,omitempty"`
	// Legacy: some of the load came through the legacy listener.
	Legacy    bool   `json:"legacy,omitempty"`
	Requests  int64  `json:"requests"`
	Errors    int64  `json:"errors"`
	ErrorRate string `json:"errorRate"`
	// RequestRate and RecentErrorRate cover the last window, e.g. "12.5/s"
	// and "0.4%"; empty before a second count.
	RequestRate     string `json:"requestRate,omitempty"`
	RecentErrorRate string `json:"recentErrorRate,omitempty"`
	// Canary is what this caller sent the canary revision during its
	// delivery: nil when it reached none of it.
	Canary *CallerCanary `json:"canary,omitempty"`
}

// CallerCanary is a caller's requests served by the canary revision.
type CallerCanary struct {
	Requests  int64  `json:"requests"`
	Errors    int64  `json:"errors"`
	ErrorRate string `json:"errorRate"`
}

// Dependency is a service of another team that the team's namespaces call,
// with its health and the team's own load on it.
type Dependency struct {
	Team      string `json:"team"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Service   string `json:"service"`
	Phase     string `json:"phase"`
	// Caller is the team's namespaces' load on it, summed.
	Caller Caller `json:"caller"`
	// AllRequests and AllErrorRate are every caller's.
	AllRequests  int64  `json:"allRequests"`
	AllErrorRate string `json:"allErrorRate"`
}

// callerViews renders status.callers; teams are named later (nameTeams).
func callerViews(st *v1alpha1.CallerStatus) ([]Caller, *time.Time) {
	if st == nil {
		return []Caller{}, nil
	}
	out := make([]Caller, 0, len(st.Callers))
	for _, c := range st.Callers {
		out = append(out, callerView(c, st.Window.Duration))
	}
	since := st.Since.Time
	return out, &since
}

func callerView(c v1alpha1.CallerLoad, window time.Duration) Caller {
	v := Caller{Namespace: c.Namespace, Legacy: c.Legacy, Requests: c.Requests, Errors: c.Errors, ErrorRate: ratio(c.Errors, c.Requests)}
	if window > 0 {
		v.RequestRate = strconv.FormatFloat(float64(c.RecentRequests)/window.Seconds(), 'f', 1, 64) + "/s"
		if c.RecentRequests > 0 {
			v.RecentErrorRate = ratio(c.RecentErrors, c.RecentRequests)
		}
	}
	if c.CanaryRequests > 0 {
		v.Canary = &CallerCanary{Requests: c.CanaryRequests, Errors: c.CanaryErrors, ErrorRate: ratio(c.CanaryErrors, c.CanaryRequests)}
	}
	return v
}

// ratio is errors/requests as a percentage, "–" without requests.
func ratio(errors, requests int64) string {
	if requests <= 0 {
		return "–"
	}
	return percent(float64(errors) / float64(requests))
}

// teamOf maps every namespace the source knows to its team.
func (s *source) teamOf(ctx context.Context) (map[string]string, error) {
	all, err := s.allTeams(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for team, nss := range all {
		for _, ns := range nss {
			out[ns] = team
		}
	}
	return out, nil
}

// nameTeams fills in each caller's team.
func nameTeams(svcs []Service, teamOf map[string]string) {
	for i := range svcs {
		for j := range svcs[i].Callers {
			c := &svcs[i].Callers[j]
			if t := teamOf[c.Namespace]; t != NoTeam {
				c.Team = t
			}
		}
	}
}

// dependencies lists the services, among those the reader may see in other
// teams' namespaces, that the namespaces nss call, most requests first.
func dependencies(team string, nss []string, others []Service, teamOf map[string]string) []Dependency {
	mine := map[string]bool{}
	for _, ns := range nss {
		mine[ns] = true
	}
	out := []Dependency{}
	for _, s := range others {
		var sum Caller
		var all, allErrors int64
		for _, c := range s.Callers {
			all, allErrors = all+c.Requests, allErrors+c.Errors
			if !mine[c.Namespace] {
				continue
			}
			sum.Requests += c.Requests
			sum.Errors += c.Errors
			sum.Legacy = sum.Legacy || c.Legacy
			if c.Canary != nil {
				if sum.Canary == nil {
					sum.Canary = &CallerCanary{}
				}
				sum.Canary.Requests += c.Canary.Requests
				sum.Canary.Errors += c.Canary.Errors
			}
		}
		if sum.Requests == 0 {
			continue
		}
		sum.Namespace, sum.Team, sum.ErrorRate = "", team, ratio(sum.Errors, sum.Requests)
		if sum.Canary != nil {
			sum.Canary.ErrorRate = ratio(sum.Canary.Errors, sum.Canary.Requests)
		}
		out = append(out, Dependency{Team: teamOf[s.Namespace], Namespace: s.Namespace, Name: s.Name, Service: s.Service,
			Phase: s.Phase, Caller: sum, AllRequests: all, AllErrorRate: ratio(allErrors, all)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Caller.Requests != out[j].Caller.Requests {
			return out[i].Caller.Requests > out[j].Caller.Requests
		}
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	if len(out) > maxDependencies {
		out = out[:maxDependencies]
	}
	return out
}
