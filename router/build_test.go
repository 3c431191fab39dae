package router

import (
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// svc returns a valid one-port service with one ready pod per track.
func svc(ns, name string) Service {
	return Service{
		Namespace: ns,
		Name:      name,
		Ports:     []Port{{Name: "grpc", Number: 9090, Protocol: ProtocolGRPC}},
		Endpoints: []Endpoint{
			{Pod: name + "-1", IP: "127.0.0.1", Ports: map[string]uint32{"grpc": 9090}, Ready: true, Track: TrackStable},
			{Pod: name + "-canary-1", IP: "127.0.0.2", Ports: map[string]uint32{"grpc": 9090}, Ready: true, Track: TrackCanary},
		},
	}
}

func withStrategy(s Service, st Strategy) Service { s.Strategy = st; return s }

func TestBuildErrors(t *testing.T) {
	edit := func(f func(*Service)) State {
		s := svc("shop", "checkout")
		f(&s)
		return State{Services: []Service{s}}
	}
	tests := map[string]struct {
		state State
		want  []string
	}{
		"service twice": {
			state: State{Services: []Service{svc("shop", "a"), svc("shop", "a")}},
			want:  []string{"service shop/a: listed twice"},
		},
		"bad names": {
			state: edit(func(s *Service) { s.Namespace, s.Name = "Shop", "-x" }),
			want:  []string{"namespace: \"Shop\" is not a DNS label", "name: \"-x\" is not a DNS label"},
		},
		"no ports": {
			state: edit(func(s *Service) { s.Ports = nil }),
			want:  []string{"ports: a service needs at least one port"},
		},
		"port problems": {
			state: edit(func(s *Service) {
				s.Ports = []Port{
					{Name: "grpc", Number: 9090, Protocol: ProtocolGRPC},
					{Name: "grpc", Number: 9090, Protocol: "tcp"},
					{Name: "", Number: 0, Protocol: ProtocolHTTP},
				}
			}),
			want: []string{
				`ports[1].name: "grpc" used twice`,
				"ports[1].number: 9090 used twice",
				`ports[1].protocol: "tcp" is not one of grpc, http`,
				"ports[2].name: empty",
				"ports[2].number: 0 is not in 1..65535",
			},
		},
		"endpoint problems": {
			state: edit(func(s *Service) {
				s.Endpoints = append(s.Endpoints,
					Endpoint{Pod: "checkout-1", IP: "10.0.0.300", Track: "blue", Ports: map[string]uint32{"grpc": 70000}},
					Endpoint{IP: "::1", Track: TrackStable},
				)
			}),
			want: []string{
				`endpoints[2].pod: "checkout-1" listed twice`,
				`endpoints[2].ip: "10.0.0.300" is not an IP address`,
				`endpoints[2].track: "blue" is not one of stable, canary`,
				"endpoints[2].ports[grpc]: 70000 is not in 1..65535",
				"endpoints[3].pod: empty",
			},
		},
		"warm-up header reserved": {
			state: edit(func(s *Service) {
				s.Strategy = Strategy{
					Cohorts: []Cohort{{Source: SourceHeader, Name: "X-Sluice-Warmup", Match: MatchPresent}},
					Sticky:  &Sticky{Source: SourceHeader, Name: WarmupHeader, Share: 100},
				}
			}),
			want: []string{
				`strategy.cohorts[0]: name: "X-Sluice-Warmup" is reserved for Sluice's warm-up routes`,
				`strategy.sticky: name: "x-sluice-warmup" is reserved for Sluice's warm-up routes`,
			},
		},
		"weights above 100%": {
			state: edit(func(s *Service) { s.Strategy = Strategy{CanaryWeight: 10_001, Mirror: 20_000} }),
			want:  []string{"strategy.canaryWeight: 10001 is above 10000", "strategy.mirror: 20000 is above 10000"},
		},
		"cohort problems": {
			state: edit(func(s *Service) {
				s.Strategy.Cohorts = []Cohort{
					{Source: "query", Name: "beta", Match: MatchExact, Value: "1"},
					{Source: SourceHeader, Name: "", Match: MatchPresent},
					{Source: SourceHeader, Name: "x-cohort", Match: MatchExact},
					{Source: SourceHeader, Name: "x-cohort", Match: MatchRegex, Value: "(beta"},
					{Source: SourceHeader, Name: "x-cohort", Match: MatchPresent, Value: "beta"},
					{Source: SourceHeader, Name: "x-cohort", Match: "prefix", Value: "b"},
					{Source: SourceHeader, Name: "grpc-timeout", Match: MatchPresent},
					{Source: SourceCookie, Name: "a=b", Match: MatchPresent},
					{Source: SourceHeader, Name: "X-Beta", Match: MatchPresent},
					{Source: SourceHeader, Name: "x-beta", Match: MatchPresent},
				}
			}),
			want: []string{
				`strategy.cohorts[0]: source: "query" is not one of header, cookie`,
				`strategy.cohorts[1]: name: "" is not a header name`,
				`strategy.cohorts[2].value: empty; use match "present"`,
				"strategy.cohorts[3].value: not an RE2 expression",
				`strategy.cohorts[4].value: "beta" given for match "present"`,
				`strategy.cohorts[5].match: "prefix" is not one of exact, regex, present`,
				`strategy.cohorts[6]: name: "grpc-timeout": headers starting with grpc- are reserved`,
				`strategy.cohorts[7]: name: "a=b" is not a cookie name`,
				"strategy.cohorts[9]: same cohort listed twice",
			},
		},
		"sticky problems": {
			state: edit(func(s *Service) {
				s.Strategy.Sticky = &Sticky{Source: SourceCookie, Name: "", Share: 10_001}
			}),
			want: []string{`strategy.sticky: name: "" is not a cookie name`, "strategy.sticky.share: 10001 is above 10000"},
		},
		"two ready pods on one address": {
			state: edit(func(s *Service) {
				s.Endpoints = append(s.Endpoints,
					Endpoint{Pod: "checkout-2", IP: "127.0.0.1", Ports: map[string]uint32{"grpc": 9090}, Ready: true, Track: TrackCanary},
					Endpoint{Pod: "checkout-3", IP: "127.0.0.1", Ports: map[string]uint32{"grpc": 9090}, Ready: false, Track: TrackStable},
				)
			}),
			want: []string{`port grpc: ready pods "checkout-1" and "checkout-2" both claim address 127.0.0.1:9090`},
		},
		"errors of several services": {
			state: State{Services: []Service{
				withStrategy(svc("shop", "a"), Strategy{CanaryWeight: 10_001}),
				withStrategy(svc("web", "b"), Strategy{Mirror: 10_001}),
			}},
			want: []string{"service shop/a: strategy.canaryWeight", "service web/b: strategy.mirror"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			plan, err := Build(tc.state)
			if err == nil {
				t.Fatalf("Build succeeded with %+v, want errors %q", plan, tc.want)
			}
			if len(plan.Services)+len(plan.Clusters) != 0 {
				t.Errorf("Build returned a partial plan with its error: %+v", plan)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestBuildPlans(t *testing.T) {
	const (
		stable = "shop/checkout/9090/stable"
		canary = "shop/checkout/9090/canary"
		sticky = "shop/checkout/9090/sticky"
	)
	stableCluster := Cluster{
		Name: stable, ID: ClusterID{"shop", "checkout", 9090, TrackStable}, Protocol: ProtocolGRPC, LB: LBRoundRobin,
		Localities: []Locality{{Track: TrackStable, Weight: 1, Endpoints: []Address{{Pod: "checkout-1", IP: "127.0.0.1", Port: 9090}}}},
	}
	canaryCluster := Cluster{
		Name: canary, ID: ClusterID{"shop", "checkout", 9090, TrackCanary}, Protocol: ProtocolGRPC, LB: LBRoundRobin,
		Localities: []Locality{{Track: TrackCanary, Weight: 1, Endpoints: []Address{{Pod: "checkout-canary-1", IP: "127.0.0.2", Port: 9090}}}},
	}
	onePort := func(routes ...Route) []ServicePlan {
		return []ServicePlan{{Namespace: "shop", Name: "checkout", Ports: []PortPlan{{Name: "grpc", Number: 9090, Protocol: ProtocolGRPC, Routes: routes}}}}
	}
	toStable := Route{Name: "default", Kind: RouteDefault, Clusters: []ClusterWeight{{stable, TotalWeight}}}
	warmHeaders := []HeaderMatch{{Name: WarmupHeader, Match: MatchExact, Value: "shop/checkout/9090"}}
	warmup := Route{Name: "warmup", Kind: RouteWarmup, Headers: warmHeaders,
		Clusters: []ClusterWeight{{canary, 5000}, {stable, 5000}}}
	warmupSticky := Route{Name: "warmup", Kind: RouteWarmup, Headers: warmHeaders,
		Clusters: []ClusterWeight{{canary, 3334}, {stable, 3333}, {sticky, 3333}}}
	stableOnly := func(s Service) Service { s.Endpoints = s.Endpoints[:1]; return s }
	tests := map[string]struct {
		service Service
		want    Plan
	}{
		"no rollout, no canary pod: all to stable, both clusters published, nothing to warm": {
			service: stableOnly(svc("shop", "checkout")),
			want: Plan{Services: onePort(toStable), Clusters: []Cluster{
				{Name: canary, ID: canaryCluster.ID, Protocol: ProtocolGRPC, LB: LBRoundRobin}, stableCluster}},
		},
		"no rollout with a canary pod: all to stable, canary warmed": {
			service: svc("shop", "checkout"),
			want:    Plan{Services: onePort(toStable, warmup), Clusters: []Cluster{canaryCluster, stableCluster}},
		},
		"canary pod not ready yet: canary warmed": {
			service: func() Service {
				s := svc("shop", "checkout")
				s.Endpoints[1].Ready = false
				return s
			}(),
			want: Plan{Services: onePort(toStable, warmup), Clusters: []Cluster{
				{Name: canary, ID: canaryCluster.ID, Protocol: ProtocolGRPC, LB: LBRoundRobin}, stableCluster}},
		},
		"canary step": {
			service: withStrategy(svc("shop", "checkout"), Strategy{CanaryWeight: 500}),
			want: Plan{Services: onePort(Route{Name: "default", Kind: RouteDefault, Clusters: []ClusterWeight{{stable, 9500}, {canary, 500}}}, warmup),
				Clusters: []Cluster{canaryCluster, stableCluster}},
		},
		"fully shifted: stable dropped from the default route, kept warm": {
			service: withStrategy(svc("shop", "checkout"), Strategy{CanaryWeight: TotalWeight}),
			want: Plan{Services: onePort(Route{Name: "default", Kind: RouteDefault, Clusters: []ClusterWeight{{canary, TotalWeight}}}, warmup),
				Clusters: []Cluster{canaryCluster, stableCluster}},
		},
		"mirror": {
			service: withStrategy(svc("shop", "checkout"), Strategy{Mirror: 1000}),
			want: Plan{Services: onePort(Route{Name: "default", Kind: RouteDefault, Clusters: []ClusterWeight{{stable, TotalWeight}},
				Mirror: &Mirror{Cluster: canary, Fraction: 1000}}, warmup),
				Clusters: []Cluster{canaryCluster, stableCluster}},
		},
		"cohorts sorted, header names lower-cased": {
			service: withStrategy(svc("shop", "checkout"), Strategy{Cohorts: []Cohort{
				{Source: SourceHeader, Name: "X-Cohort", Match: MatchExact, Value: "beta"},
				{Source: SourceCookie, Name: "beta", Match: MatchPresent},
			}}),
			want: Plan{Services: onePort(
				Route{Name: "cohort-0", Kind: RouteCohort, Headers: []HeaderMatch{{Name: "cookie", Match: MatchRegex, Value: `(?:.*;\s*)?beta=[^;]*(?:\s*;.*)?`}},
					Clusters: []ClusterWeight{{canary, TotalWeight}}},
				Route{Name: "cohort-1", Kind: RouteCohort, Headers: []HeaderMatch{{Name: "x-cohort", Match: MatchExact, Value: "beta"}},
					Clusters: []ClusterWeight{{canary, TotalWeight}}},
				toStable, warmup,
			), Clusters: []Cluster{canaryCluster, stableCluster}},
		},
		"sticky split": {
			service: withStrategy(svc("shop", "checkout"), Strategy{Sticky: &Sticky{Source: SourceHeader, Name: "X-User", Share: 3000}}),
			want: Plan{Services: onePort(
				Route{Name: "sticky", Kind: RouteSticky, Headers: []HeaderMatch{{Name: "x-user", Match: MatchPresent}},
					Clusters: []ClusterWeight{{sticky, TotalWeight}}, Hash: &HashPolicy{Source: SourceHeader, Name: "x-user"}},
				toStable, warmupSticky,
			), Clusters: []Cluster{canaryCluster, stableCluster, {
				Name: sticky, ID: ClusterID{"shop", "checkout", 9090, TrackSticky}, Protocol: ProtocolGRPC, LB: LBRingHash,
				Localities: []Locality{
					{Track: TrackCanary, Weight: 3000, Endpoints: []Address{{Pod: "checkout-canary-1", IP: "127.0.0.2", Port: 9090}}},
					{Track: TrackStable, Weight: 7000, Endpoints: []Address{{Pod: "checkout-1", IP: "127.0.0.1", Port: 9090}}},
				},
			}}},
		},
		"sticky split at 0%: the ring holds stable only": {
			service: withStrategy(svc("shop", "checkout"), Strategy{Sticky: &Sticky{Source: SourceCookie, Name: "session", Share: 0}}),
			want: Plan{Services: onePort(
				Route{Name: "sticky", Kind: RouteSticky, Headers: []HeaderMatch{{Name: "cookie", Match: MatchRegex, Value: `(?:.*;\s*)?session=[^;]*(?:\s*;.*)?`}},
					Clusters: []ClusterWeight{{sticky, TotalWeight}}, Hash: &HashPolicy{Source: SourceCookie, Name: "session"}},
				toStable, warmupSticky,
			), Clusters: []Cluster{canaryCluster, stableCluster, {
				Name: sticky, ID: ClusterID{"shop", "checkout", 9090, TrackSticky}, Protocol: ProtocolGRPC, LB: LBRingHash,
				Localities: []Locality{
					{Track: TrackStable, Weight: uint32(TotalWeight), Endpoints: []Address{{Pod: "checkout-1", IP: "127.0.0.1", Port: 9090}}},
				},
			}}},
		},
		"sticky split at 100% without canary pods: empty ring": {
			service: func() Service {
				s := withStrategy(svc("shop", "checkout"), Strategy{Sticky: &Sticky{Source: SourceHeader, Name: "x-user", Share: TotalWeight}})
				s.Endpoints = s.Endpoints[:1]
				return s
			}(),
			want: Plan{Services: onePort(
				Route{Name: "sticky", Kind: RouteSticky, Headers: []HeaderMatch{{Name: "x-user", Match: MatchPresent}},
					Clusters: []ClusterWeight{{sticky, TotalWeight}}, Hash: &HashPolicy{Source: SourceHeader, Name: "x-user"}},
				toStable, warmupSticky,
			), Clusters: []Cluster{
				{Name: canary, ID: canaryCluster.ID, Protocol: ProtocolGRPC, LB: LBRoundRobin},
				stableCluster,
				{Name: sticky, ID: ClusterID{"shop", "checkout", 9090, TrackSticky}, Protocol: ProtocolGRPC, LB: LBRingHash},
			}},
		},
		"cohort without ready canary pods: no cohort route yet, canary warmed": {
			service: withStrategy(stableOnly(svc("shop", "checkout")), Strategy{Cohorts: []Cohort{
				{Source: SourceHeader, Name: "x-cohort", Match: MatchPresent},
			}}),
			want: Plan{Services: onePort(
				toStable, warmup,
			), Clusters: []Cluster{{Name: canary, ID: canaryCluster.ID, Protocol: ProtocolGRPC, LB: LBRoundRobin}, stableCluster}},
		},
		"unready pods and pods without the port left out": {
			service: func() Service {
				s := svc("shop", "checkout")
				s.Endpoints = append(s.Endpoints,
					Endpoint{Pod: "checkout-2", IP: "127.0.0.3", Ports: map[string]uint32{"grpc": 9090}, Ready: false, Track: TrackStable},
					Endpoint{Pod: "checkout-3", IP: "127.0.0.4", Ports: map[string]uint32{"metrics": 9090}, Ready: true, Track: TrackStable},
				)
				return s
			}(),
			want: Plan{Services: onePort(toStable, warmup), Clusters: []Cluster{canaryCluster, stableCluster}},
		},
		"no ready endpoints: empty clusters": {
			service: func() Service {
				s := withStrategy(svc("shop", "checkout"), Strategy{CanaryWeight: 5000})
				s.Endpoints = nil
				return s
			}(),
			want: Plan{Services: onePort(Route{Name: "default", Kind: RouteDefault, Clusters: []ClusterWeight{{stable, 5000}, {canary, 5000}}}, warmup),
				Clusters: []Cluster{
					{Name: canary, ID: canaryCluster.ID, Protocol: ProtocolGRPC, LB: LBRoundRobin},
					{Name: stable, ID: stableCluster.ID, Protocol: ProtocolGRPC, LB: LBRoundRobin},
				}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Build(State{Services: []Service{tc.service}})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Build (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCookieMatch checks the cookie expressions against Cookie headers with
// full-match semantics, as Envoy and grpc-go apply them.
func TestCookieMatch(t *testing.T) {
	tests := map[string]struct {
		kind        MatchKind
		value       string
		match, miss []string
	}{
		"exact": {
			kind: MatchExact, value: "1",
			match: []string{"beta=1", "a=2; beta=1", "beta=1; a=2", "a=2;beta=1;c=3"},
			miss:  []string{"beta=10", "xbeta=1", "beta=2", "a=beta=1", "", "beta"},
		},
		"exact with special characters": {
			kind: MatchExact, value: "a.b",
			match: []string{"beta=a.b"},
			miss:  []string{"beta=axb"},
		},
		"present": {
			kind:  MatchPresent,
			match: []string{"beta=", "beta=anything", "x=1; beta=2"},
			miss:  []string{"betax=1", "x=beta", ""},
		},
		"regex": {
			kind: MatchRegex, value: "[0-9]+",
			match: []string{"beta=42", "x=y; beta=7; z=1"},
			miss:  []string{"beta=4a", "beta=", "x=42"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			hm := cookieMatch("beta", tc.kind, tc.value)
			if hm.Name != "cookie" || hm.Match != MatchRegex {
				t.Fatalf("cookieMatch = %+v, want a regex on the cookie header", hm)
			}
			re := regexp.MustCompile("^(?:" + hm.Value + ")$")
			for _, h := range tc.match {
				if !re.MatchString(h) {
					t.Errorf("%q does not match Cookie %q", hm.Value, h)
				}
			}
			for _, h := range tc.miss {
				if re.MatchString(h) {
					t.Errorf("%q matches Cookie %q", hm.Value, h)
				}
			}
		})
	}
}
