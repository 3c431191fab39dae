package router

import (
	"errors"
	"testing"
)

// validPlan is a plan with every route kind, a mirror and a sticky cluster.
func validPlan(t *testing.T) Plan {
	t.Helper()
	s := withStrategy(svc("shop", "checkout"), Strategy{
		CanaryWeight: 500,
		Mirror:       100,
		Cohorts:      []Cohort{{Source: SourceHeader, Name: "x-cohort", Match: MatchExact, Value: "beta"}},
		Sticky:       &Sticky{Source: SourceHeader, Name: "x-user", Share: 2000},
	})
	p, err := Build(State{Services: []Service{s}})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return p
}

func TestValidateAcceptsBuiltPlan(t *testing.T) {
	p := validPlan(t)
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	// The warm-up route is optional: Build leaves it out when there is no
	// canary to warm.
	port := &p.Services[0].Ports[0]
	if last := port.Routes[len(port.Routes)-1]; last.Kind != RouteWarmup {
		t.Fatalf("validPlan's last route is %q, want a warm-up route", last.Kind)
	}
	port.Routes = port.Routes[:len(port.Routes)-1]
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate without the warm-up route: %v", err)
	}
}

func TestValidateErrors(t *testing.T) {
	// Route indexes in validPlan: 0 cohort, 1 sticky, 2 default, 3 warm-up.
	routes := func(p *Plan) []Route { return p.Services[0].Ports[0].Routes }
	tests := map[string]struct {
		edit func(p *Plan)
		want []error
	}{
		"weights short of 100%": {
			edit: func(p *Plan) { routes(p)[2].Clusters[0].Weight-- },
			want: []error{ErrWeightSum},
		},
		"weights above 100%": {
			edit: func(p *Plan) { routes(p)[2].Clusters[1].Weight += 10_000 },
			want: []error{ErrWeightSum},
		},
		"zero-sum route": {
			edit: func(p *Plan) { routes(p)[2].Clusters = nil },
			want: []error{ErrWeightSum},
		},
		"zero-weight target": {
			edit: func(p *Plan) {
				r := routes(p)
				r[0].Clusters = append(r[0].Clusters, ClusterWeight{Cluster: r[2].Clusters[0].Cluster, Weight: 0})
			},
			want: []error{ErrZeroWeight},
		},
		"same cluster twice in a route": {
			edit: func(p *Plan) {
				r := routes(p)
				r[2].Clusters[1].Cluster = r[2].Clusters[0].Cluster
			},
			want: []error{ErrDuplicateName},
		},
		"unknown cluster": {
			edit: func(p *Plan) { routes(p)[0].Clusters[0].Cluster = "shop/checkout/9090/blue" },
			want: []error{ErrUnknownCluster},
		},
		"unknown mirror cluster": {
			edit: func(p *Plan) { routes(p)[2].Mirror.Cluster = "nowhere" },
			want: []error{ErrUnknownCluster},
		},
		"mirror fraction zero": {
			edit: func(p *Plan) { routes(p)[2].Mirror.Fraction = 0 },
			want: []error{ErrMirror},
		},
		"upper-case header": {
			edit: func(p *Plan) { routes(p)[0].Headers[0].Name = "X-Cohort" },
			want: []error{ErrHeaderName},
		},
		"upper-case hash header": {
			edit: func(p *Plan) { routes(p)[1].Hash.Name = "X-User" },
			want: []error{ErrHeaderName},
		},
		"bad regex": {
			edit: func(p *Plan) { routes(p)[0].Headers[0] = HeaderMatch{Name: "x", Match: MatchRegex, Value: "("} },
			want: []error{ErrHeaderMatch},
		},
		"default route first": {
			edit: func(p *Plan) {
				r := routes(p)
				r[0], r[2] = r[2], r[0]
			},
			want: []error{ErrRouteOrder},
		},
		"sticky before cohort": {
			edit: func(p *Plan) {
				r := routes(p)
				r[0], r[1] = r[1], r[0]
			},
			want: []error{ErrRouteOrder},
		},
		"warm-up before default": {
			edit: func(p *Plan) {
				r := routes(p)
				r[2], r[3] = r[3], r[2]
			},
			want: []error{ErrRouteOrder},
		},
		"two warm-up routes": {
			edit: func(p *Plan) {
				w := routes(p)[3]
				w.Name = "warmup-2"
				p.Services[0].Ports[0].Routes = append(routes(p), w)
			},
			want: []error{ErrRouteOrder},
		},
		"only a warm-up route": {
			edit: func(p *Plan) { p.Services[0].Ports[0].Routes = routes(p)[3:] },
			want: []error{ErrRouteOrder},
		},
		"unknown route kind": {
			edit: func(p *Plan) { routes(p)[3].Kind = "shadow" },
			want: []error{ErrRouteOrder},
		},
		"warm-up without its header match": {
			edit: func(p *Plan) { routes(p)[3].Headers = nil },
			want: []error{ErrWarmup},
		},
		"warm-up header value of another port": {
			edit: func(p *Plan) { routes(p)[3].Headers[0].Value = WarmupValue("shop", "checkout", 9091) },
			want: []error{ErrWarmup},
		},
		"warm-up with an extra header match": {
			edit: func(p *Plan) {
				routes(p)[3].Headers = append(routes(p)[3].Headers, HeaderMatch{Name: "x-a", Match: MatchPresent})
			},
			want: []error{ErrWarmup},
		},
		"default route with headers before the warm-up": {
			edit: func(p *Plan) { routes(p)[2].Headers = []HeaderMatch{{Name: "x-a", Match: MatchPresent}} },
			want: []error{ErrWarmup},
		},
		"warm-up with a mirror": {
			edit: func(p *Plan) { routes(p)[3].Mirror = routes(p)[2].Mirror },
			want: []error{ErrWarmup},
		},
		"warm-up misses the clusters of other routes": {
			edit: func(p *Plan) {
				r := routes(p)
				r[3].Clusters = []ClusterWeight{{Cluster: r[2].Clusters[0].Cluster, Weight: TotalWeight}}
			},
			want: []error{ErrWarmup},
		},
		"no routes": {
			edit: func(p *Plan) { p.Services[0].Ports[0].Routes = nil },
			want: []error{ErrRouteOrder},
		},
		"route name twice": {
			edit: func(p *Plan) { routes(p)[1].Name = routes(p)[0].Name },
			want: []error{ErrDuplicateName},
		},
		"cluster twice": {
			edit: func(p *Plan) { p.Clusters = append(p.Clusters, p.Clusters[0]) },
			want: []error{ErrDuplicateName},
		},
		"service twice": {
			edit: func(p *Plan) { p.Services = append(p.Services, p.Services[0]) },
			want: []error{ErrDuplicateName},
		},
		"cluster name not from its id": {
			edit: func(p *Plan) { p.Clusters[0].ID.Port = 1 },
			want: []error{ErrClusterName},
		},
		"locality weight zero": {
			edit: func(p *Plan) { p.Clusters[0].Localities[0].Weight = 0 },
			want: []error{ErrLocality},
		},
		"locality of no track": {
			edit: func(p *Plan) { p.Clusters[0].Localities[0].Track = TrackSticky },
			want: []error{ErrLocality},
		},
		"endpoint listed twice": {
			edit: func(p *Plan) {
				l := &p.Clusters[0].Localities[0]
				l.Endpoints = append(l.Endpoints, l.Endpoints[0])
			},
			want: []error{ErrEndpoint},
		},
		"bad protocol and policy": {
			edit: func(p *Plan) {
				p.Clusters[0].Protocol = "tcp"
				p.Clusters[1].LB = "random"
			},
			want: []error{ErrProtocol},
		},
		"several problems at once": {
			edit: func(p *Plan) {
				routes(p)[2].Clusters[0].Weight = 1
				routes(p)[0].Headers[0].Name = "X-Cohort"
				p.Clusters[0].Localities[0].Weight = 0
			},
			want: []error{ErrWeightSum, ErrHeaderName, ErrLocality},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := validPlan(t)
			tc.edit(&p)
			err := p.Validate()
			if err == nil {
				t.Fatal("Validate accepted the plan")
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("Validate error does not wrap %v:\n%v", w, err)
				}
			}
		})
	}
}
