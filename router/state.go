package router

// State is everything the router needs to know about the cluster: the services
// Sluice steers and, for each, its pods and its rollout strategy. The order of
// every slice in a State is irrelevant; [Build] sorts.
type State struct {
	Services []Service `json:"services"`
}

// Service is one logical service (the `sluice.dev/service` label) in one
// namespace. Its gRPC target is `xds:///<Name>.<Namespace>`.
type Service struct {
	Namespace string     `json:"namespace"`
	Name      string     `json:"name"`
	Ports     []Port     `json:"ports"`
	Endpoints []Endpoint `json:"endpoints,omitempty"`
	// Strategy is how traffic is currently split between the stable and the
	// canary track. The zero Strategy sends everything to stable.
	Strategy Strategy `json:"strategy,omitempty"`
	// Consumers are the other namespaces whose proxies may see and call the
	// service; by default only its own namespace's.
	Consumers Consumers `json:"consumers,omitempty"`
}

// Protocol is the application protocol spoken on a port. It decides how the
// Envoy sidecar talks to the upstream (HTTP/2 for gRPC) and which ports get a
// proxyless gRPC listener.
type Protocol string

// Protocols a [Port] may declare.
const (
	ProtocolGRPC Protocol = "grpc"
	ProtocolHTTP Protocol = "http"
)

// Port is a port of a service as its clients dial it. Endpoints serve it on
// the container port of the same Name.
type Port struct {
	Name     string   `json:"name"`
	Number   uint32   `json:"number"`
	Protocol Protocol `json:"protocol"`
}

// Track says which version of a service a pod runs (label `sluice.dev/track`).
type Track string

// Tracks of a pod, plus the pseudo-track of the sticky-split cluster.
const (
	TrackStable Track = "stable"
	TrackCanary Track = "canary"
	// TrackSticky names the per-port cluster that serves sticky splits. It
	// holds both tracks' endpoints, one locality per track, so it is valid in
	// cluster names but never on an [Endpoint].
	TrackSticky Track = "sticky"
)

// Endpoint is one pod of a service.
type Endpoint struct {
	// Pod is the pod name; unique within the service.
	Pod string `json:"pod"`
	// IP is the pod IP (IPv4 or IPv6).
	IP string `json:"ip"`
	// Ports maps a service port name to the pod's container port number. A pod
	// without an entry for a port does not serve that port.
	Ports map[string]uint32 `json:"ports"`
	// Ready is the pod's readiness; only ready endpoints receive traffic.
	Ready    bool   `json:"ready"`
	Track    Track  `json:"track"`
	Revision string `json:"revision,omitempty"`
}

// Strategy is the traffic split of one service, as data. The zero value sends
// all traffic to stable. Each part becomes routes in a fixed order: cohort
// routes, then the sticky route, then the weighted default route.
type Strategy struct {
	// CanaryWeight is the share of requests on the default route (those no
	// cohort or sticky route took) sent to the canary.
	CanaryWeight Weight `json:"canaryWeight,omitempty"`
	// Cohorts are requests that always go to the canary (beta users, testers).
	// A request joins if it matches any one of them.
	Cohorts []Cohort `json:"cohorts,omitempty"`
	// Sticky, when set, splits users by a key so that each user consistently
	// sees one version.
	Sticky *Sticky `json:"sticky,omitempty"`
	// Mirror is the share of default-route requests copied (fire and forget)
	// to the canary. Only Envoy honours it; proxyless gRPC ignores mirroring.
	Mirror Weight `json:"mirror,omitempty"`
}

// Source is where a request attribute is read from.
type Source string

// Sources of a [Cohort] or [Sticky] key.
const (
	SourceHeader Source = "header"
	SourceCookie Source = "cookie"
)

// MatchKind is how a [Cohort] compares the attribute.
type MatchKind string

// Match kinds of a [Cohort].
const (
	// MatchExact: the value equals Value.
	MatchExact MatchKind = "exact"
	// MatchRegex: the whole value matches the RE2 expression Value.
	MatchRegex MatchKind = "regex"
	// MatchPresent: the attribute is present, whatever its value.
	MatchPresent MatchKind = "present"
)

// Cohort selects requests that always go to the canary.
type Cohort struct {
	Source Source    `json:"source"`
	Name   string    `json:"name"`
	Match  MatchKind `json:"match"`
	// Value is the exact value or the regular expression; empty for present.
	Value string `json:"value,omitempty"`
}

// Sticky splits users between the tracks by a key read from each request.
// Share of the key space goes to the canary, and raising Share only moves
// users from stable to canary (see [Build] for the exact guarantee).
type Sticky struct {
	Source Source `json:"source"`
	Name   string `json:"name"`
	// Share is the fraction of users on the canary.
	Share Weight `json:"share"`
}
