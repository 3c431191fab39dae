package dashboard

import (
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/rollout/analysis"
)

// maxRecent is how many past deliveries a service shows.
const maxRecent = 5

// maxWarnings is how many warning Events a team page shows.
const maxWarnings = 20

// namespaceData is what the API server holds about one namespace.
type namespaceData struct {
	Namespace   string
	Rollouts    []v1alpha1.Rollout
	Deployments []appsv1.Deployment
	// ReplicaSets keep the stable version's pod template while its
	// Deployment, paused, already holds the canary's.
	ReplicaSets []appsv1.ReplicaSet
	Events      []eventsv1.Event
	// Problems say what could not be read, for the page.
	Problems []string
	// Externals are the Services declaring external dependencies, and
	// ExternalLoad the data of the ConfigMap Sluice writes their load to.
	Externals    []corev1.Service
	ExternalLoad map[string]string
}

// services builds the view of every Rollout in d, sorted by name.
func (d namespaceData) services() []Service {
	out := make([]Service, 0, len(d.Rollouts))
	for i := range d.Rollouts {
		out = append(out, d.service(&d.Rollouts[i]))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// deployment returns the Deployment named name, or nil.
func (d namespaceData) deployment(name string) *appsv1.Deployment {
	for i := range d.Deployments {
		if d.Deployments[i].Name == name {
			return &d.Deployments[i]
		}
	}
	return nil
}

// eventsOf returns the Events about the object of kind and name, oldest
// first.
func (d namespaceData) eventsOf(kind, name string) []Event {
	var out []Event
	for _, e := range d.Events {
		if e.Regarding.Kind == kind && e.Regarding.Name == name {
			out = append(out, eventView(e))
		}
	}
	sortEvents(out)
	return out
}

// warnings returns Sluice's warning Events in d, newest first, leaving out
// the analysis' holds: every step begins with one (too few samples yet).
func (d namespaceData) warnings() []Event {
	var out []Event
	for _, e := range d.Events {
		if e.Type == "Warning" && strings.HasPrefix(e.ReportingController, "sluice") && e.Reason != "AnalysisHold" {
			out = append(out, eventView(e))
		}
	}
	sortEvents(out)
	reverse(out)
	return out
}

func (d namespaceData) service(ro *v1alpha1.Rollout) Service {
	st := ro.Status
	s := Service{
		Namespace: ro.Namespace,
		Name:      ro.Name,
		Service:   ro.Spec.Delivery.Service,
		Mode:      string(ro.Spec.Delivery.Mode),
		Phase:     string(st.Phase),
		Message:   st.Message,
		Proxies:   Proxies{Acked: st.Proxies.Acked, Nacked: st.Proxies.Nacked, Stale: st.Proxies.Stale, LastNack: st.Proxies.LastNack},
		Verdicts:  latestVerdicts(st.Analysis),
	}
	if s.Phase == "" {
		s.Phase = string(v1alpha1.PhaseIdle)
	}
	stableRate, canaryRate := trackRates(st.Analysis)
	// Either Deployment may hold either revision: the paused Deployment
	// holds the canary's template, and once the canary is gone (rolled
	// back) only there.
	owners := []string{ro.Name, v1alpha1.CanaryName(ro.Name)}
	s.Stable = d.version(st.StableRevision, owners, v1alpha1.TotalBasisPoints-st.CurrentWeight)
	if st.CanaryRevision != "" {
		c := d.version(st.CanaryRevision, owners, st.CurrentWeight)
		c.ErrorRate, c.Requests = canaryRate.text(), canaryRate.samples
		s.Canary = &c
		s.Stable.ErrorRate, s.Stable.Requests = stableRate.text(), stableRate.samples
	}
	events := d.eventsOf("Rollout", ro.Name)
	s.Steps = steps(ro, events)
	for i := len(events) - 1; i >= 0; i-- {
		if strings.HasPrefix(events[i].Reason, "Analysis") {
			s.Evidence = events[i].Message
			break
		}
	}
	s.Recent = deliveries(events)
	s.Callers, s.CallersSince = callerViews(st.Callers)
	return s
}

// version describes a track: its revision, and the image of the pod
// template of that revision, from one of the Deployments or, when they moved
// on, from one of their ReplicaSets.
func (d namespaceData) version(rev string, deployments []string, w v1alpha1.BasisPoints) Version {
	v := Version{Revision: rev, Weight: w.String(), BasisPoints: int32(w)}
	var tmpl *corev1.PodTemplateSpec
	for _, name := range deployments {
		if dep := d.deployment(name); tmpl == nil && dep != nil && dep.Spec.Template.Labels[v1alpha1.LabelRevision] == rev {
			tmpl = &dep.Spec.Template
		}
	}
	for i := range d.ReplicaSets {
		rs := &d.ReplicaSets[i]
		if tmpl == nil && rs.Spec.Template.Labels[v1alpha1.LabelRevision] == rev && ownedBy(rs.OwnerReferences, deployments) {
			tmpl = &rs.Spec.Template
		}
	}
	if rev == "" || tmpl == nil || len(tmpl.Spec.Containers) == 0 {
		return v
	}
	v.Image = tmpl.Spec.Containers[0].Image
	v.Version = imageTag(v.Image)
	return v
}

func ownedBy(refs []metav1.OwnerReference, deployments []string) bool {
	for _, r := range refs {
		if r.Kind == "Deployment" && slices.Contains(deployments, r.Name) {
			return true
		}
	}
	return false
}

// imageTag returns the tag of an image reference, or its digest, or "".
func imageTag(image string) string {
	if i := strings.LastIndex(image, "@"); i >= 0 {
		return image[i+1:]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}
	return ""
}

// latestVerdicts returns the newest decision of each metric, sorted by
// metric.
func latestVerdicts(ds []v1alpha1.AnalysisDecision) []Verdict {
	latest := map[string]v1alpha1.AnalysisDecision{}
	for _, d := range ds {
		if old, ok := latest[d.Metric]; !ok || !d.Time.Before(&old.Time) {
			latest[d.Metric] = d
		}
	}
	out := make([]Verdict, 0, len(latest))
	for _, d := range latest {
		out = append(out, Verdict{Metric: d.Metric, Value: d.Value, Threshold: d.Threshold, Samples: d.Samples,
			Verdict: string(d.Verdict), Step: d.Step, Time: d.Time.Time})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Metric < out[j].Metric })
	return out
}

// measured is a rate with the requests behind it (0 when not counted).
type measured struct {
	rate    float64
	samples int64
	known   bool
}

func (m measured) text() string {
	if !m.known {
		return ""
	}
	return percent(m.rate)
}

// percent formats a fraction as a percentage with at most two decimals,
// e.g. 0.2012 as "20.12%".
func percent(f float64) string {
	s := strconv.FormatFloat(f*100, 'f', 2, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "%"
}

// trackRates reads the error rates of both tracks since the canary began
// from the newest analysis: the canary's from its critical-error-rate (or
// error-rate) decision, the stable one's by subtracting the
// error-rate-vs-stable decision's difference, taken at the same time.
func trackRates(ds []v1alpha1.AnalysisDecision) (stable, canary measured) {
	for _, p := range points(ds) {
		if p.Canary >= 0 {
			canary = measured{rate: p.Canary, samples: p.samples, known: true}
		}
		if p.Stable >= 0 {
			stable = measured{rate: p.Stable, known: true}
		}
	}
	return stable, canary
}

// analysed is a Point with the number of canary requests behind it.
type analysed struct {
	Point
	samples int64
}

// points turns analysis decisions into chart points, one per analysis
// time, oldest first. Decisions without samples measured nothing.
func points(ds []v1alpha1.AnalysisDecision) []analysed {
	byTime := map[time.Time]*analysed{}
	var order []time.Time
	at := func(t time.Time, step int32) *analysed {
		p, ok := byTime[t]
		if !ok {
			p = &analysed{Point: Point{Time: t, Canary: -1, Stable: -1, Bound: -1, Step: step}}
			byTime[t] = p
			order = append(order, t)
		}
		return p
	}
	vsStable := map[time.Time]float64{}
	for _, d := range ds {
		v, err := strconv.ParseFloat(d.Value, 64)
		if err != nil || d.Samples == 0 {
			continue
		}
		t := d.Time.Time
		switch d.Metric {
		case analysis.MetricCriticalErrorRate:
			p := at(t, d.Step)
			p.Canary, p.samples = v, d.Samples
		case analysis.MetricErrorRate:
			p := at(t, d.Step)
			if th, err := strconv.ParseFloat(d.Threshold, 64); err == nil {
				p.Bound = th
			}
			if p.samples == 0 {
				p.Canary, p.samples = v, d.Samples
			}
		case analysis.MetricErrorRateVsStable:
			at(t, d.Step)
			vsStable[t] = v
		}
	}
	sort.Slice(order, func(i, j int) bool { return order[i].Before(order[j]) })
	out := make([]analysed, 0, len(order))
	for _, t := range order {
		p := byTime[t]
		if diff, ok := vsStable[t]; ok && p.Canary >= 0 {
			p.Stable = max(p.Canary-diff, 0)
		}
		out = append(out, *p)
	}
	return out
}

// deliveries reads the rollouts of revisions from a Rollout's Events
// (oldest first) and returns them newest first: each starts with
// CanaryStarted and ends with Promoted, RolledBack or CanaryAbandoned, or
// with the next CanaryStarted when a newer revision superseded it.
func deliveries(events []Event) []Delivery {
	out := []Delivery{}
	var cur *Delivery
	end := func(outcome, why string, t time.Time) {
		if cur == nil {
			return
		}
		cur.Outcome, cur.Ended, cur.Why = outcome, &t, why
		if cur.Started != nil {
			cur.Duration = t.Sub(*cur.Started).Round(time.Second).String()
		}
		out = append(out, *cur)
		cur = nil
	}
	for _, e := range events {
		switch e.Reason {
		case "CanaryStarted":
			rev := startedRevision(e.Message)
			end("superseded", "replaced by revision "+rev, e.Time)
			t := e.Time
			cur = &Delivery{Revision: rev, Outcome: "in progress", Started: &t}
		case "CanarySuperseded":
			// "revision X arrived while Y was promoting; Y is now stable":
			// Y made it.
			if n := len(out); n > 0 && out[n-1].Outcome == "superseded" {
				out[n-1].Why = e.Message
				if strings.HasSuffix(e.Message, "is now stable") {
					out[n-1].Outcome = "promoted"
				}
			}
		case "Promoted":
			end("promoted", e.Message, e.Time)
		case "RolledBack":
			end("rolled back", e.Message, e.Time)
		case "CanaryAbandoned":
			end("abandoned", e.Message, e.Time)
		}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	reverse(out)
	if len(out) > maxRecent {
		out = out[:maxRecent]
	}
	return out
}

// startedRevision reads the revision from a CanaryStarted message
// ("started canary <rev> (<mode>) against stable <rev>").
func startedRevision(msg string) string {
	f := strings.Fields(msg)
	if len(f) >= 3 && f[1] == "canary" {
		return f[2]
	}
	return ""
}

func eventView(e eventsv1.Event) Event {
	t := e.EventTime.Time
	var count int32
	if e.Series != nil {
		t, count = e.Series.LastObservedTime.Time, e.Series.Count
	}
	if t.IsZero() {
		t = e.DeprecatedLastTimestamp.Time
	}
	if t.IsZero() {
		t = e.CreationTimestamp.Time
	}
	return Event{Time: t, Type: e.Type, Reason: e.Reason, Kind: e.Regarding.Kind, Object: e.Regarding.Name,
		Message: e.Note, Count: count}
}

func sortEvents(es []Event) {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Time.Before(es[j].Time) })
}

func reverse[T any](s []T) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}
