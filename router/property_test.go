package router

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

// cohortPool are valid cohorts; generated strategies pick among them.
var cohortPool = []Cohort{
	{Source: SourceHeader, Name: "x-cohort", Match: MatchExact, Value: "beta"},
	{Source: SourceHeader, Name: "X-Tester", Match: MatchPresent},
	{Source: SourceHeader, Name: "x-user-id", Match: MatchRegex, Value: "u-[0-9]+"},
	{Source: SourceCookie, Name: "beta", Match: MatchExact, Value: "1"},
	{Source: SourceCookie, Name: "Preview", Match: MatchPresent},
}

// genState draws a valid State with up to four services.
func genState(t *rapid.T) State {
	var st State
	type key struct{ ns, name string }
	seen := map[key]bool{}
	for i, n := 0, rapid.IntRange(0, 4).Draw(t, "services"); i < n; i++ {
		k := key{rapid.SampledFrom([]string{"a", "b"}).Draw(t, "ns"), rapid.SampledFrom([]string{"x", "y", "z"}).Draw(t, "name")}
		if seen[k] {
			continue
		}
		seen[k] = true
		st.Services = append(st.Services, genService(t, k.ns, k.name, i))
	}
	return st
}

func genService(t *rapid.T, ns, name string, idx int) Service {
	s := Service{Namespace: ns, Name: name}
	numbers := rapid.SliceOfNDistinct(rapid.SampledFrom([]uint32{80, 8080, 9090, 9091}), 1, 3, rapid.ID[uint32]).Draw(t, "ports")
	for _, n := range numbers {
		s.Ports = append(s.Ports, Port{
			Name:     fmt.Sprintf("p%d", n),
			Number:   n,
			Protocol: rapid.SampledFrom([]Protocol{ProtocolGRPC, ProtocolHTTP}).Draw(t, "protocol"),
		})
	}
	for i, n := 0, rapid.IntRange(0, 6).Draw(t, "endpoints"); i < n; i++ {
		e := Endpoint{
			Pod:   fmt.Sprintf("%s-%d", name, i),
			IP:    fmt.Sprintf("10.%d.0.%d", idx, i+1),
			Ports: map[string]uint32{},
			Ready: rapid.Bool().Draw(t, "ready"),
			Track: rapid.SampledFrom([]Track{TrackStable, TrackCanary}).Draw(t, "track"),
		}
		for _, p := range s.Ports {
			if rapid.IntRange(0, 4).Draw(t, "has port") > 0 {
				e.Ports[p.Name] = p.Number + 10_000
			}
		}
		s.Endpoints = append(s.Endpoints, e)
	}
	weight := rapid.Custom(func(t *rapid.T) Weight {
		return rapid.OneOf(
			rapid.Just(Weight(0)), rapid.Just(TotalWeight),
			rapid.Map(rapid.Uint32Range(0, uint32(TotalWeight)), func(w uint32) Weight { return Weight(w) }),
		).Draw(t, "w")
	})
	s.Strategy.CanaryWeight = weight.Draw(t, "canary weight")
	if rapid.Bool().Draw(t, "mirror") {
		s.Strategy.Mirror = weight.Draw(t, "mirror weight")
	}
	s.Strategy.Cohorts = rapid.SliceOfNDistinct(rapid.SampledFrom(cohortPool), 0, 3, func(c Cohort) Cohort { return c }).Draw(t, "cohorts")
	if rapid.Bool().Draw(t, "sticky") {
		s.Strategy.Sticky = &Sticky{
			Source: rapid.SampledFrom([]Source{SourceHeader, SourceCookie}).Draw(t, "sticky source"),
			Name:   rapid.SampledFrom([]string{"x-user", "session"}).Draw(t, "sticky name"),
			Share:  weight.Draw(t, "share"),
		}
	}
	return s
}

// shuffled returns st with every order-free slice permuted.
func shuffled(t *rapid.T, st State) State {
	out := State{Services: rapid.Permutation(st.Services).Draw(t, "services order")}
	for i, s := range out.Services {
		s.Ports = rapid.Permutation(s.Ports).Draw(t, "ports order")
		s.Endpoints = rapid.Permutation(s.Endpoints).Draw(t, "endpoints order")
		s.Strategy.Cohorts = rapid.Permutation(s.Strategy.Cohorts).Draw(t, "cohorts order")
		out.Services[i] = s
	}
	return out
}

func mustBuild(t *rapid.T, st State) Plan {
	p, err := Build(st)
	if err != nil {
		t.Fatalf("Build of a valid state: %v", err)
	}
	return p
}

// TestPropertyWeightsSumToTotal checks, independently of Validate, that every
// route of every plan sends exactly 100% of its requests somewhere, and that
// the default route gives the canary exactly the strategy's weight.
func TestPropertyWeightsSumToTotal(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		st := genState(t)
		p := mustBuild(t, st)
		for _, sp := range p.Services {
			for _, pp := range sp.Ports {
				for _, r := range pp.Routes {
					var sum Weight
					for _, cw := range r.Clusters {
						if cw.Weight == 0 {
							t.Fatalf("%s/%s:%d route %s: zero weight for %s", sp.Namespace, sp.Name, pp.Number, r.Name, cw.Cluster)
						}
						sum += cw.Weight
					}
					if sum != TotalWeight {
						t.Fatalf("%s/%s:%d route %s: weights sum to %d", sp.Namespace, sp.Name, pp.Number, r.Name, sum)
					}
					if r.Kind != RouteDefault {
						continue
					}
					var toCanary Weight
					for _, cw := range r.Clusters {
						if strings.HasSuffix(cw.Cluster, "/canary") {
							toCanary += cw.Weight
						}
					}
					if want := serviceOf(st, sp).Strategy.CanaryWeight; toCanary != want {
						t.Fatalf("%s/%s:%d default route: canary gets %d, strategy says %d", sp.Namespace, sp.Name, pp.Number, toCanary, want)
					}
				}
			}
		}
	})
}

func serviceOf(st State, sp ServicePlan) Service {
	for _, s := range st.Services {
		if s.Namespace == sp.Namespace && s.Name == sp.Name {
			return s
		}
	}
	return Service{}
}

// hasCanaryToWarm restates, independently of Build, when a service gets a
// warm-up route: a canary pod (ready or not) or any part of the strategy
// that sends or copies requests to the canary.
func hasCanaryToWarm(s Service) bool {
	for _, e := range s.Endpoints {
		if e.Track == TrackCanary {
			return true
		}
	}
	st := s.Strategy
	return st.CanaryWeight > 0 || st.Mirror > 0 || len(st.Cohorts) > 0 || st.Sticky != nil
}

// readyCanaryOn reports whether a ready canary endpoint serves the named port.
func readyCanaryOn(s Service, port string) bool {
	for _, e := range s.Endpoints {
		if _, ok := e.Ports[port]; ok && e.Ready && e.Track == TrackCanary {
			return true
		}
	}
	return false
}

// TestPropertyRouteOrder checks that cohort routes (while the canary has a
// ready endpoint on the port) precede the sticky route,
// which precedes the single default route, followed only by the warm-up route
// when the service has a canary to warm, and that every part of the strategy
// got its routes.
func TestPropertyRouteOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		st := genState(t)
		p := mustBuild(t, st)
		for _, sp := range p.Services {
			s := serviceOf(st, sp)
			for _, pp := range sp.Ports {
				want := ""
				if readyCanaryOn(s, pp.Name) {
					want = strings.Repeat("c", len(s.Strategy.Cohorts))
				}
				if s.Strategy.Sticky != nil {
					want += "s"
				}
				want += "d"
				if hasCanaryToWarm(s) {
					want += "w"
				}
				var got strings.Builder
				for _, r := range pp.Routes {
					got.WriteByte(string(r.Kind)[0])
				}
				if got.String() != want {
					t.Fatalf("%s/%s:%d route kinds %q, want %q", sp.Namespace, sp.Name, pp.Number, got.String(), want)
				}
			}
		}
	})
}

// TestPropertyOrderIndependent checks that the plan depends only on the
// contents of the state, not on the order of its slices.
func TestPropertyOrderIndependent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		st := genState(t)
		a := mustBuild(t, st)
		b := mustBuild(t, shuffled(t, st))
		if diff := cmp.Diff(a, b); diff != "" {
			t.Fatalf("plan depends on input order (-original +shuffled):\n%s", diff)
		}
	})
}

// namedClusters returns every cluster the routes of a port send or mirror
// requests to, per service port.
func namedClusters(p Plan) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, sp := range p.Services {
		for _, pp := range sp.Ports {
			key := fmt.Sprintf("%s/%s:%d", sp.Namespace, sp.Name, pp.Number)
			named := map[string]bool{}
			for _, r := range pp.Routes {
				for _, cw := range r.Clusters {
					named[cw.Cluster] = true
				}
				if r.Mirror != nil {
					named[r.Mirror.Cluster] = true
				}
			}
			out[key] = named
		}
	}
	return out
}

// TestPropertyWarmupMakesBeforeBreak checks the point of the warm-up route:
// once a service has a canary to warm, any change of its canary weight,
// mirror, cohorts or sticky share, and ending its sticky split, never makes a
// route name a cluster the previous plan did not already name (so a client
// never routes to a cluster it has not loaded). It also checks that the
// warm-up route is last, matches only its own header and is preceded by a
// default route that takes every request.
func TestPropertyWarmupMakesBeforeBreak(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		before := genState(t)
		after := State{}
		for i, s := range before.Services {
			next := genService(t, s.Namespace, s.Name, i)
			// Same pods and ports; only the strategy moves. A sticky split
			// may end but not start: its cluster is created with it.
			next.Ports, next.Endpoints = s.Ports, s.Endpoints
			switch {
			case s.Strategy.Sticky == nil:
				next.Strategy.Sticky = nil
			case next.Strategy.Sticky != nil:
				next.Strategy.Sticky.Source, next.Strategy.Sticky.Name = s.Strategy.Sticky.Source, s.Strategy.Sticky.Name
			}
			after.Services = append(after.Services, next)
		}
		p1, p2 := mustBuild(t, before), mustBuild(t, after)
		for _, sp := range p1.Services {
			for _, pp := range sp.Ports {
				last := pp.Routes[len(pp.Routes)-1]
				if last.Kind != RouteWarmup {
					continue
				}
				if want := WarmupValue(sp.Namespace, sp.Name, pp.Number); len(last.Headers) != 1 || last.Headers[0] != (HeaderMatch{Name: WarmupHeader, Match: MatchExact, Value: want}) {
					t.Fatalf("%s/%s:%d warm-up route matches %v, want only %s = %q", sp.Namespace, sp.Name, pp.Number, last.Headers, WarmupHeader, want)
				}
				if d := pp.Routes[len(pp.Routes)-2]; d.Kind != RouteDefault || len(d.Headers) > 0 {
					t.Fatalf("%s/%s:%d warm-up route follows %s route with headers %v, want the catch-all default route", sp.Namespace, sp.Name, pp.Number, d.Kind, d.Headers)
				}
			}
		}
		named1, named2 := namedClusters(p1), namedClusters(p2)
		for _, s := range before.Services {
			if !hasCanaryToWarm(s) {
				continue
			}
			for _, port := range s.Ports {
				key := fmt.Sprintf("%s/%s:%d", s.Namespace, s.Name, port.Number)
				for c := range named2[key] {
					if !named1[key][c] {
						t.Fatalf("%s: the new plan routes to %s, which the previous plan did not name (named: %v)", key, c, named1[key])
					}
				}
			}
		}
	})
}
