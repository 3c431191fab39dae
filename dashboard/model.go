package dashboard

import "time"

// NoTeam is the team key of namespaces without the sluice.dev/team label.
// Label values start with an alphanumeric character, so no real team has it.
const NoTeam = "_none"

// TeamSummary is one team on the index page.
type TeamSummary struct {
	// Team is the sluice.dev/team label value, or NoTeam.
	Team string `json:"team"`
	// Namespaces the reader may see, sorted.
	Namespaces []string `json:"namespaces"`
}

// Team is the team page: every service of the team's visible namespaces.
type Team struct {
	Team       string    `json:"team"`
	Namespaces []string  `json:"namespaces"`
	Services   []Service `json:"services"`
	// Warnings are recent warning Events of Sluice about the team's
	// Deployments and Rollouts (policy violations, rollbacks), newest first.
	Warnings []Event `json:"warnings"`
	// Problems say what of the team's namespaces could not be read; the
	// rest shows.
	Problems []string `json:"problems"`
	// DependsOn are services of other teams that the team's namespaces
	// call, among those the reader may see.
	DependsOn []Dependency `json:"dependsOn"`
	// External are the external dependencies the team's namespaces
	// declare, with their callers' figures.
	External []ExternalDependency `json:"external"`
}

// Service is one opted-in Deployment with its delivery.
type Service struct {
	Namespace string `json:"namespace"`
	// Name is the Rollout's (and Deployment's) name.
	Name string `json:"name"`
	// Service is the logical service name the routes use.
	Service string   `json:"service"`
	Mode    string   `json:"mode"`
	Phase   string   `json:"phase"`
	Message string   `json:"message"`
	Stable  Version  `json:"stable"`
	Canary  *Version `json:"canary,omitempty"`
	// Steps are the canary's weighted steps: each one's weight, whether it
	// is done, current or pending, and when the proxies acknowledged it.
	Steps []Step `json:"steps"`
	// Verdicts are the latest analysis decision of each metric.
	Verdicts []Verdict `json:"verdicts"`
	// Evidence is the message of the latest analysis Event: what the
	// verdicts rest on.
	Evidence string  `json:"evidence,omitempty"`
	Proxies  Proxies `json:"proxies"`
	// Recent are the latest deliveries, newest first.
	Recent []Delivery `json:"recent"`
	// Callers are the namespaces that call the service, most requests
	// first, from their own load reports; CallersSince is when the counts
	// began.
	Callers      []Caller   `json:"callers"`
	CallersSince *time.Time `json:"callersSince,omitempty"`
}

// Version is one track of a service.
type Version struct {
	// Revision is the pod template hash Sluice labels pods with.
	Revision string `json:"revision"`
	// Version is the image tag of the track's Deployment, when known.
	Version string `json:"version,omitempty"`
	Image   string `json:"image,omitempty"`
	// Weight is the track's share of traffic, e.g. "95%", and BasisPoints
	// the same in hundredths of a percent.
	Weight      string `json:"weight"`
	BasisPoints int32  `json:"basisPoints"`
	// ErrorRate is the track's error rate since the canary began, e.g.
	// "0.5%", empty when the analysis has not measured it.
	ErrorRate string `json:"errorRate,omitempty"`
	// Requests is the number of requests behind ErrorRate.
	Requests int64 `json:"requests,omitempty"`
}

// Verdict is one analysis decision.
type Verdict struct {
	Metric    string    `json:"metric"`
	Value     string    `json:"value"`
	Threshold string    `json:"threshold"`
	Samples   int64     `json:"samples"`
	Verdict   string    `json:"verdict"`
	Step      int32     `json:"step"`
	Time      time.Time `json:"time"`
}

// Proxies counts the proxies carrying the current weight.
type Proxies struct {
	Acked    int32  `json:"acked"`
	Nacked   int32  `json:"nacked"`
	Stale    int32  `json:"stale"`
	LastNack string `json:"lastNack,omitempty"`
}

// Delivery is one past or current rollout of a revision.
type Delivery struct {
	Revision string `json:"revision,omitempty"`
	// Outcome is "in progress", "promoted", "rolled back" or "superseded".
	Outcome string     `json:"outcome"`
	Started *time.Time `json:"started,omitempty"`
	Ended   *time.Time `json:"ended,omitempty"`
	// Duration is Ended − Started, rounded to the second, e.g. "2m10s".
	Duration string `json:"duration,omitempty"`
	// Why is the closing Event's message.
	Why string `json:"why,omitempty"`
}

// Event is a Kubernetes Event about a Rollout or Deployment.
type Event struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Reason  string    `json:"reason"`
	Kind    string    `json:"kind"`
	Object  string    `json:"object"`
	Message string    `json:"message"`
	Count   int32     `json:"count,omitempty"`
}

// Rollout is the rollout page: a service with its timeline and chart.
type Rollout struct {
	Service
	// Timeline holds the Rollout's Events, oldest first.
	Timeline []Event `json:"timeline"`
	// Series are error-rate points per version for the chart, oldest first.
	Series []Point `json:"series"`
	// Problems say what could not be read.
	Problems []string `json:"problems"`
}

// Step is one canary step.
type Step struct {
	Index  int    `json:"index"`
	Weight string `json:"weight"`
	// State is "done", "current" or "pending".
	State string `json:"state"`
	// AckedAt is when every proxy acknowledged the step's weight.
	AckedAt *time.Time `json:"ackedAt,omitempty"`
}

// Point is one analysis of the canary's error rate. Rates are fractions
// (0.01 is 1%); a negative rate was not measured.
type Point struct {
	Time   time.Time `json:"time"`
	Canary float64   `json:"canary"`
	Stable float64   `json:"stable"`
	// Bound is the ceiling the canary's rate is judged against.
	Bound float64 `json:"bound"`
	Step  int32   `json:"step"`
}
