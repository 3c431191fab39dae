package traffic

import (
	"context"
	"fmt"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/server"
	"github.com/sluice-dev/sluice/xds/translate"
)

// publication is what the controller last handed to the xDS server.
type publication struct {
	// seq counts publications, starting at 1.
	seq      uint64
	version  string
	services map[ServiceKey]publishedService
	// localities holds every published cluster locality as
	// localityKey(cluster, sub-zone): the only places load can come from.
	localities map[string]struct{}
}

func localityKey(cluster, subZone string) string { return cluster + "\x00" + subZone }

// localitiesOf lists the localities of every cluster of the plan.
func localitiesOf(plan router.Plan) map[string]struct{} {
	out := map[string]struct{}{}
	for _, c := range plan.Clusters {
		if c.External != nil {
			// The client resolves the name: its reports carry no
			// locality of Sluice's.
			out[localityKey(c.Name, "")] = struct{}{}
			continue
		}
		for _, l := range c.Localities {
			out[localityKey(c.Name, router.LocalitySubZone(l.Track, l.Revision))] = struct{}{}
		}
	}
	return out
}

// Serves reports whether the current publication has a locality sub-zone in
// cluster: load reported for anything else was not served by Sluice's routes
// (or no longer is) and must not create counters.
func (c *Controller) Serves(cluster, subZone string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.published.localities[localityKey(cluster, subZone)]
	return ok
}

// publishedService is one service's part of a publication.
type publishedService struct {
	weight router.Weight
	// cohortPending is set while the strategy has cohorts but no port
	// routes them yet (the canary has no ready endpoint): a weight is not
	// confirmed then, or a beta step would count before its cohort reaches
	// the new version.
	cohortPending bool
	// routes maps the names of the route configurations that carry the
	// service's routes to their published content versions.
	routes map[string]string
	// names lists, per type URL, the resources that carry the service.
	names map[string][]string
}

// publish reads the cluster, builds and translates the plan and hands it to
// the xDS server.
func (c *Controller) publish(ctx context.Context) error {
	start := time.Now()
	objs, err := c.source.list(ctx)
	if err != nil {
		c.metrics.publishes.WithLabelValues("failed").Inc()
		return fmt.Errorf("list cluster objects: %w", err)
	}
	state, problems := StateFrom(objs)
	plan, buildProblems, err := c.build(state)
	problems = append(problems, buildProblems...)
	if err == nil {
		var externalProblems []Problem
		plan, externalProblems = addExternals(plan, objs.Services)
		problems = append(problems, externalProblems...)
	}
	c.logProblems(problems)
	if err != nil {
		c.metrics.publishes.WithLabelValues("failed").Inc()
		return err
	}
	res, err := translate.Translate(plan, c.topts)
	if err != nil {
		c.metrics.publishes.WithLabelValues("failed").Inc()
		return fmt.Errorf("translate plan: %w", err)
	}
	c.metrics.buildSeconds.Observe(time.Since(start).Seconds())
	c.metrics.services.Set(float64(len(plan.Services)))

	c.mu.Lock()
	unchanged := c.published.seq > 0 && c.published.version == res.Version()
	c.mu.Unlock()
	if unchanged {
		c.metrics.publishes.WithLabelValues("unchanged").Inc()
		return nil
	}
	desired := server.Resources{}
	for _, t := range server.Types {
		desired[t] = res.ByType(t)
	}
	if err := c.srv.Publish(ctx, desired, server.VariantsOf(res), server.GrantsOf(res)); err != nil {
		c.metrics.publishes.WithLabelValues("failed").Inc()
		return fmt.Errorf("publish %d resources (version %.12s): %w", res.Len(), res.Version(), err)
	}
	pub := publication{version: res.Version(), services: c.describe(state, plan, res), localities: localitiesOf(plan)}
	c.mu.Lock()
	pub.seq = c.published.seq + 1
	c.published = pub
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	c.metrics.publishes.WithLabelValues("published").Inc()
	c.log.V(1).Info("published routes", "version", res.Version(), "services", len(plan.Services),
		"resources", res.Len(), "took", time.Since(start))
	return nil
}

// build builds the plan. If the state has invalid services, each of them is
// replaced by its last valid version (or left out if it never had one), so
// one broken service never blocks the others.
func (c *Controller) build(state router.State) (router.Plan, []Problem, error) {
	current := make(map[ServiceKey]bool, len(state.Services))
	for _, s := range state.Services {
		current[ServiceKey{Namespace: s.Namespace, Name: s.Name}] = true
	}
	plan, err := router.Build(state)
	if err == nil {
		c.remember(state.Services, current)
		return plan, nil, nil
	}
	var (
		problems []Problem
		good     = make([]router.Service, 0, len(state.Services))
		valid    []router.Service
	)
	for _, s := range state.Services {
		k := ServiceKey{Namespace: s.Namespace, Name: s.Name}
		if _, err := router.Build(router.State{Services: []router.Service{s}}); err != nil {
			last, ok := c.lastGood[k]
			what := "it keeps its last valid routes"
			if ok {
				good = append(good, last)
			} else {
				what = "it is not published"
			}
			problems = append(problems, Problem{Service: k, Object: "service", Message: fmt.Sprintf("%v; %s", err, what)})
			continue
		}
		good = append(good, s)
		valid = append(valid, s)
	}
	c.remember(valid, current)
	plan, err = router.Build(router.State{Services: good})
	if err != nil {
		return router.Plan{}, problems, fmt.Errorf("build plan: %w", err)
	}
	return plan, problems, nil
}

// remember keeps the last valid version of each current service (valid ones
// replace what was kept) and forgets services that are gone.
func (c *Controller) remember(valid []router.Service, current map[ServiceKey]bool) {
	keep := make(map[ServiceKey]router.Service, len(current))
	for k, s := range c.lastGood {
		if current[k] {
			keep[k] = s
		}
	}
	for _, s := range valid {
		keep[ServiceKey{Namespace: s.Namespace, Name: s.Name}] = s
	}
	c.lastGood = keep
}

// describe records, per service, its weight and the resources carrying it.
func (c *Controller) describe(state router.State, plan router.Plan, res translate.Resources) map[ServiceKey]publishedService {
	out := make(map[ServiceKey]publishedService, len(plan.Services))
	weights := map[ServiceKey]router.Weight{}
	cohorts := map[ServiceKey]bool{}
	for _, svc := range state.Services {
		if len(svc.Strategy.Cohorts) > 0 {
			cohorts[ServiceKey{Namespace: svc.Namespace, Name: svc.Name}] = true
		}
	}
	sidecarNamespaces := translate.SidecarNamespaces(plan)
	for _, sp := range plan.Services {
		k := ServiceKey{Namespace: sp.Namespace, Name: sp.Name}
		ps := publishedService{routes: map[string]string{}, names: map[string][]string{}, cohortPending: cohorts[k]}
		add := func(typeURL, name string) {
			if _, ok := res.Get(typeURL, name); !ok {
				return
			}
			ps.names[typeURL] = append(ps.names[typeURL], name)
			if typeURL == resource.RouteType {
				if v, ok := c.srv.DesiredVersion(typeURL, name); ok {
					ps.routes[name] = v
				}
			}
		}
		add(resource.ListenerType, translate.GRPCListenerName(sp.Namespace, sp.Name, 0))
		for _, port := range sp.Ports {
			grpcName := translate.GRPCListenerName(sp.Namespace, sp.Name, port.Number)
			add(resource.ListenerType, grpcName)
			add(resource.RouteType, grpcName)
			for _, ns := range sidecarNamespaces {
				if sp.Consumers.Allows(sp.Namespace, ns) {
					add(resource.ListenerType, translate.SidecarListenerName(ns, port.Number))
					add(resource.RouteType, translate.SidecarListenerName(ns, port.Number))
				}
			}
			for _, r := range port.Routes {
				switch r.Kind {
				case router.RouteDefault:
					weights[k] = canaryShare(r, sp.Namespace, sp.Name)
				case router.RouteCohort:
					ps.cohortPending = false
				}
			}
			for _, track := range []router.Track{router.TrackStable, router.TrackCanary, router.TrackSticky} {
				name := router.ClusterName(sp.Namespace, sp.Name, port.Number, track)
				add(resource.ClusterType, name)
				add(resource.EndpointType, name)
			}
		}
		ps.weight = weights[k]
		out[k] = ps
	}
	return out
}

// canaryShare is the weight of the canary cluster on a default route.
func canaryShare(r router.Route, namespace, service string) router.Weight {
	for _, cw := range r.Clusters {
		if id, err := router.ParseClusterName(cw.Cluster); err == nil && id.Track == router.TrackCanary &&
			id.Namespace == namespace && id.Service == service {
			return cw.Weight
		}
	}
	return 0
}
