package traffic

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/router"
)

// strategies maps every service that has a Rollout to its strategy.
//
// A Rollout's service is spec.delivery.service, else the sluice.dev/service
// label of the Deployment of the same name, else the Rollout's name. When
// several Rollouts name one service, the active ones (see strategyFor) take
// precedence, and among several active ones the first by name wins and the
// conflict is reported.
func strategies(rollouts []v1alpha1.Rollout, deployments []appsv1.Deployment) (map[ServiceKey]router.Strategy, []Problem) {
	deploymentService := map[ServiceKey]string{}
	for _, d := range deployments {
		if s := d.Labels[v1alpha1.LabelService]; s != "" {
			deploymentService[ServiceKey{Namespace: d.Namespace, Name: d.Name}] = s
		}
	}
	byService := map[ServiceKey][]*v1alpha1.Rollout{}
	for i := range rollouts {
		r := &rollouts[i]
		name := r.Spec.Delivery.Service
		if name == "" {
			name = cmp.Or(deploymentService[ServiceKey{Namespace: r.Namespace, Name: r.Name}], r.Name)
		}
		k := ServiceKey{Namespace: r.Namespace, Name: name}
		byService[k] = append(byService[k], r)
	}
	out := map[ServiceKey]router.Strategy{}
	var problems []Problem
	for k, rs := range byService {
		slices.SortFunc(rs, func(a, b *v1alpha1.Rollout) int { return cmp.Compare(a.Name, b.Name) })
		var active []*v1alpha1.Rollout
		for _, r := range rs {
			if r.Status.Phase.Active() {
				active = append(active, r)
			}
		}
		if len(active) == 0 {
			continue
		}
		if len(active) > 1 {
			problems = append(problems, Problem{Service: k, Object: "rollout/" + active[1].Name,
				Message: fmt.Sprintf("rollouts %q and %q are both active for this service; %q steers it", active[0].Name, active[1].Name, active[0].Name)})
		}
		st, err := strategyFor(active[0])
		if err != nil {
			problems = append(problems, Problem{Service: k, Object: "rollout/" + active[0].Name,
				Message: fmt.Sprintf("%v; all traffic goes to stable until it is fixed", err)})
			continue
		}
		out[k] = st
	}
	return out, problems
}

// strategyFor turns an active Rollout into a strategy. In every mode the
// default route sends status.currentWeight of the remaining requests to the
// canary and the cohort, when set, always reaches it. On top:
//   - canary with a sticky key: a sticky split whose share is the current
//     weight, so each user stays on one version as the weight grows;
//   - beta: the cohort is required;
//   - ab: a sticky split whose share is spec.delivery.split (required, with the
//     sticky key).
//
// Inactive phases (Idle, Succeeded, RolledBack) send everything to stable and
// are handled by the caller.
func strategyFor(r *v1alpha1.Rollout) (router.Strategy, error) {
	d := r.Spec.Delivery
	w, err := r.Status.CurrentWeight.Weight()
	if err != nil {
		return router.Strategy{}, fmt.Errorf("status.currentWeight: %w", err)
	}
	st := router.Strategy{CanaryWeight: w}
	if r.Status.Phase == v1alpha1.PhasePromoting && w == 0 {
		// The canary is draining before it is deleted: its cohort and its
		// share of a sticky split go back to stable too, so that deleting
		// it fails no request once the proxies confirmed weight 0.
		return st, nil
	}
	if d.Cohort != nil {
		c, err := cohort(*d.Cohort)
		if err != nil {
			return router.Strategy{}, fmt.Errorf("spec.delivery.cohort: %w", err)
		}
		st.Cohorts = []router.Cohort{c}
	}
	var sticky *router.Sticky
	if d.Sticky != nil {
		src, err := matchSource(d.Sticky.Source)
		if err != nil {
			return router.Strategy{}, fmt.Errorf("spec.delivery.sticky: %w", err)
		}
		sticky = &router.Sticky{Source: src, Name: d.Sticky.Name}
	}
	switch d.Mode {
	case v1alpha1.ModeCanary:
		if sticky != nil {
			sticky.Share = st.CanaryWeight
			st.Sticky = sticky
		}
	case v1alpha1.ModeBeta:
		if d.Cohort == nil {
			return router.Strategy{}, errors.New("spec.delivery.cohort: beta mode needs a cohort")
		}
	case v1alpha1.ModeAB:
		if sticky == nil || d.Split == nil {
			return router.Strategy{}, errors.New("spec.delivery: ab mode needs a sticky key and a split")
		}
		share, err := d.Split.Weight()
		if err != nil {
			return router.Strategy{}, fmt.Errorf("spec.delivery.split: %w", err)
		}
		sticky.Share = share
		st.Sticky = sticky
	default:
		return router.Strategy{}, fmt.Errorf("spec.delivery.mode %q is not one of canary, beta, ab", d.Mode)
	}
	return st, nil
}

func cohort(c v1alpha1.Cohort) (router.Cohort, error) {
	src, err := matchSource(c.Source)
	if err != nil {
		return router.Cohort{}, err
	}
	out := router.Cohort{Source: src, Name: c.Name, Value: c.Value}
	switch c.Match {
	case v1alpha1.MatchExact:
		out.Match = router.MatchExact
	case v1alpha1.MatchPresent:
		out.Match = router.MatchPresent
	case v1alpha1.MatchRegex:
		out.Match = router.MatchRegex
	default:
		return router.Cohort{}, fmt.Errorf("match %q is not one of Exact, Present, Regex", c.Match)
	}
	return out, nil
}

func matchSource(s v1alpha1.MatchSource) (router.Source, error) {
	switch s {
	case v1alpha1.SourceHeader:
		return router.SourceHeader, nil
	case v1alpha1.SourceCookie:
		return router.SourceCookie, nil
	}
	return "", fmt.Errorf("source %q is not one of Header, Cookie", s)
}
