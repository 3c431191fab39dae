// Package podruntime makes the pods of the local test cluster real network
// endpoints.
//
// The local cluster (DESIGN §4) runs no containers: kwok marks pods Running
// and gives them loopback IPs such as 127.100.0.7. A Runtime watches Pods in
// every namespace and, for each Running pod with a pod IP inside 127.0.0.0/8,
// listens on podIP:containerPort for every TCP container port. Each listener
// answers both gRPC over cleartext HTTP/2 (grpc.testing.TestService, whose
// UnaryCall reports the image tag as server_id and the pod name as hostname)
// and plain HTTP/1.1 (GET / returns the pod, namespace, image and version as
// JSON).
//
// The runtime plays the kubelet's part in a pod's life: kwok leaves a new pod
// Running but not Ready, and the runtime marks it Ready (conditions and
// container statuses) once every port listens, as a readiness probe would.
// When a pod gets a deletionTimestamp its ports stop taking connections and
// send GOAWAY (GracefulStop) while calls in flight finish, for at most the
// pod's deletion grace period; then the runtime removes the pod object (kwok
// does at the end of the grace period otherwise).
//
// A container's env injects faults: SIM_ERROR_RATE (0..1, the probability
// that a call fails, drawn independently per call from a seeded source;
// SIM_SEED sets the seed, else it derives from the pod and container names;
// SIM_ERROR_MODE=even spaces failures evenly instead) and SIM_LATENCY (a Go
// duration, "exp:20ms" or "p50=10ms,p99=200ms", added to every call). A
// malformed value makes every call on that container's ports fail with a
// message naming the variable, so a typo in a test manifest is never mistaken
// for a healthy version.
//
// gRPC and HTTP/1.1 share a port by sniffing each new connection: one that
// opens with the HTTP/2 preface goes to grpc-go's own server, anything else to
// net/http. HTTP requests over prior-knowledge HTTP/2 are therefore not
// served; gRPC over HTTP/1.1 does not exist.
//
// The package splits into a pure part (spec.go: Pod → the ports to serve and
// how they behave) and the I/O shell (mux.go: the protocol split; server.go:
// one port; runtime.go: the informer and the reconcile loop).
package podruntime
