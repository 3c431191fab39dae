package dashboard

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// source reads namespaces from the API server and keeps each answer for a
// short while, so that many open pages cost the API server one read per
// namespace per freshness interval.
type source struct {
	client    client.Client
	fixed     []string
	freshness time.Duration

	mu      sync.Mutex
	teams   *cachedTeams
	data    map[string]*cachedNamespace
	history map[types.NamespacedName][]Point
	// listed are the Rollouts of namespaces read only for their Rollouts:
	// other teams' services, for a team page's "Depends on".
	listed map[string]*cachedRollouts
}

type cachedRollouts struct {
	mu       sync.Mutex // one read at a time per namespace
	at       time.Time
	rollouts []v1alpha1.Rollout
	err      error
}

type cachedTeams struct {
	at    time.Time
	teams map[string][]string // team → namespaces, all of them (before access)
}

type cachedNamespace struct {
	mu   sync.Mutex // one read at a time per namespace
	at   time.Time
	data namespaceData
	err  error
}

// teamNamespaces returns every team with the namespaces access allows,
// leaving out teams with none. A person allowed everywhere is asked once,
// others about each namespace, a few at a time.
func (s *source) teamNamespaces(ctx context.Context, access Access) (map[string][]string, error) {
	all, err := s.allTeams(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	if every, ok := access.(allNamespaces); ok {
		yes, err := every.AllowedEverywhere(ctx)
		if err != nil {
			return nil, err
		}
		if yes {
			for team, nss := range all {
				out[team] = append([]string(nil), nss...)
			}
			return out, nil
		}
	}
	type ask struct {
		team, ns string
		ok       bool
		err      error
	}
	var asks []ask
	for team, nss := range all {
		for _, ns := range nss {
			asks = append(asks, ask{team: team, ns: ns})
		}
	}
	slots := make(chan struct{}, readers)
	var wg sync.WaitGroup
	for i := range asks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			asks[i].ok, asks[i].err = access.Allowed(ctx, asks[i].ns)
		}()
	}
	wg.Wait()
	for _, a := range asks {
		if a.err != nil {
			return nil, a.err
		}
		if a.ok {
			out[a.team] = append(out[a.team], a.ns)
		}
	}
	// Namespaces keep allTeams' order (sorted) within a team.
	return out, nil
}

// allTeams groups namespaces by their sluice.dev/team label. A reader who
// may not list namespaces sees the fixed ones.
func (s *source) allTeams(ctx context.Context) (map[string][]string, error) {
	s.mu.Lock()
	cached := s.teams
	s.mu.Unlock()
	if cached != nil && time.Since(cached.at) < 5*s.freshness {
		return cached.teams, nil
	}
	var nss []corev1.Namespace
	var list corev1.NamespaceList
	switch err := s.client.List(ctx, &list); {
	case err == nil:
		nss = list.Items
	case apierrors.IsForbidden(err) && len(s.fixed) > 0:
		for _, name := range s.fixed {
			ns := corev1.Namespace{}
			if err := s.client.Get(ctx, types.NamespacedName{Name: name}, &ns); err != nil {
				if !apierrors.IsForbidden(err) {
					return nil, fmt.Errorf("get namespace: %w", err)
				}
				ns.Name = name
			}
			nss = append(nss, ns)
		}
	default:
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	teams := map[string][]string{}
	for _, ns := range nss {
		team := ns.Labels[v1alpha1.LabelTeam]
		if team == "" {
			team = NoTeam
		}
		teams[team] = append(teams[team], ns.Name)
	}
	for _, v := range teams {
		sort.Strings(v)
	}
	s.mu.Lock()
	s.teams = &cachedTeams{at: time.Now(), teams: teams}
	s.mu.Unlock()
	return teams, nil
}

// readers bounds how many namespaces one page reads at once.
const readers = 4

// reading is one namespace's data or why it could not be read.
type reading struct {
	namespaceData
	err error
}

// namespaces reads several namespaces, a few at a time, in the order given.
func (s *source) namespaces(ctx context.Context, nss []string) []reading {
	out := make([]reading, len(nss))
	slots := make(chan struct{}, readers)
	var wg sync.WaitGroup
	for i, ns := range nss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			out[i].namespaceData, out[i].err = s.namespace(ctx, ns)
		}()
	}
	wg.Wait()
	return out
}

// namespace returns what the API server holds about ns, read at most
// freshness ago. The caller has checked access.
func (s *source) namespace(ctx context.Context, ns string) (namespaceData, error) {
	s.mu.Lock()
	c, ok := s.data[ns]
	if !ok {
		c = &cachedNamespace{}
		s.data[ns] = c
	}
	s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < s.freshness {
		return c.data, c.err
	}
	c.data, c.err = s.read(ctx, ns)
	c.at = time.Now()
	if c.err == nil {
		s.remember(c.data)
	}
	return c.data, c.err
}

// rolloutsOnly reads the Rollouts of several namespaces, a few at a time,
// in the order given: what a team page needs of other teams' namespaces
// (their services' phase and status.callers), without their Deployments,
// ReplicaSets, Events and Services.
func (s *source) rolloutsOnly(ctx context.Context, nss []string) []reading {
	out := make([]reading, len(nss))
	slots := make(chan struct{}, readers)
	var wg sync.WaitGroup
	for i, ns := range nss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			out[i].Namespace = ns
			out[i].Rollouts, out[i].err = s.rollouts(ctx, ns)
		}()
	}
	wg.Wait()
	return out
}

// rollouts returns the Rollouts of ns, read at most freshness ago: from
// the namespace's whole reading if a page read it lately, else by listing
// them alone. The caller has checked access.
func (s *source) rollouts(ctx context.Context, ns string) ([]v1alpha1.Rollout, error) {
	s.mu.Lock()
	whole := s.data[ns]
	c, ok := s.listed[ns]
	if !ok {
		c = &cachedRollouts{}
		s.listed[ns] = c
	}
	s.mu.Unlock()
	if whole != nil && whole.mu.TryLock() {
		fresh := !whole.at.IsZero() && time.Since(whole.at) < s.freshness && whole.err == nil
		ros := whole.data.Rollouts
		whole.mu.Unlock()
		if fresh {
			return ros, nil
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < s.freshness {
		return c.rollouts, c.err
	}
	var list v1alpha1.RolloutList
	c.err = s.client.List(ctx, &list, client.InNamespace(ns))
	if c.err != nil {
		c.err = fmt.Errorf("list rollouts: %w", c.err)
	}
	c.rollouts, c.at = list.Items, time.Now()
	return c.rollouts, c.err
}

// remember keeps the chart points of every Rollout of d, so a rollout's
// chart outlives the few decisions its status holds; it forgets Rollouts
// that are gone.
func (s *source) remember(d namespaceData) {
	s.mu.Lock()
	defer s.mu.Unlock()
	present := map[types.NamespacedName]bool{}
	for i := range d.Rollouts {
		ro := &d.Rollouts[i]
		key := types.NamespacedName{Namespace: ro.Namespace, Name: ro.Name}
		present[key] = true
		var since time.Time
		if ro.Status.CanaryStartedAt != nil {
			since = ro.Status.CanaryStartedAt.Time
		}
		s.history[key] = mergePoints(s.history[key], ro.Status.Analysis, since)
	}
	for key := range s.history {
		if key.Namespace == d.Namespace && !present[key] {
			delete(s.history, key)
		}
	}
}

// seen returns the chart points remembered for a Rollout.
func (s *source) seen(key types.NamespacedName) []Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.history[key]
}

func (s *source) read(ctx context.Context, ns string) (namespaceData, error) {
	d := namespaceData{Namespace: ns}
	var ros v1alpha1.RolloutList
	if err := s.client.List(ctx, &ros, client.InNamespace(ns)); err != nil {
		return d, fmt.Errorf("list rollouts: %w", err)
	}
	d.Rollouts = ros.Items
	if err := s.readExternals(ctx, &d); err != nil {
		return d, err
	}
	if len(d.Rollouts) == 0 {
		return d, nil
	}
	// What a reader may not list is left out and said; the Rollouts show.
	var deps appsv1.DeploymentList
	if err := s.list(ctx, ns, &deps, "deployments: versions unknown", &d.Problems, client.HasLabels{v1alpha1.LabelService}); err != nil {
		return d, err
	}
	d.Deployments = deps.Items
	var rss appsv1.ReplicaSetList
	if err := s.list(ctx, ns, &rss, "replicasets: the stable version may be unknown", &d.Problems, client.HasLabels{v1alpha1.LabelRevision}); err != nil {
		return d, err
	}
	d.ReplicaSets = rss.Items
	var events eventsv1.EventList
	if err := s.list(ctx, ns, &events, "events: no timeline, recent rollouts or warnings", &d.Problems); err != nil {
		return d, err
	}
	for _, e := range events.Items {
		if e.Regarding.Kind == "Rollout" || e.Regarding.Kind == "Deployment" {
			d.Events = append(d.Events, e)
		}
	}
	return d, nil
}

// list lists into list; a Forbidden answer adds "may not list <what>" to
// problems instead of failing.
func (s *source) list(ctx context.Context, ns string, list client.ObjectList, what string, problems *[]string, opts ...client.ListOption) error {
	err := s.client.List(ctx, list, append(opts, client.InNamespace(ns))...)
	switch {
	case apierrors.IsForbidden(err):
		*problems = append(*problems, ns+": you may not list "+what)
		return nil
	case err != nil:
		return fmt.Errorf("list %s: %w", strings.Fields(what)[0], err)
	}
	return nil
}
