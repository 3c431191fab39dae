package v1alpha1

// AnnotationExternal on a Service of type ExternalName declares an external
// dependency of its namespace: a gRPC service outside the cluster at
// spec.externalName, on the Service's port (the one named "grpc", or its
// only port), that the namespace's clients call through Sluice's routes as
// xds:///<service>.<namespace>, so their own load reports measure it. Its
// value is the protocol; only ExternalGRPC is accepted.
const AnnotationExternal = "sluice.dev/external"

// ExternalGRPC is the value of AnnotationExternal for a gRPC dependency.
const ExternalGRPC = "grpc"

// ExternalLoadConfigMap is the ConfigMap in a namespace where the leader
// writes its external dependencies' load (requests and errors per
// dependency, from the namespace's clients' load reports), one data key per
// dependency, for the dashboard to read with the user's rights.
const ExternalLoadConfigMap = "sluice-external-load"
