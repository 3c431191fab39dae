// Package v1alpha1 holds the sluice.dev/v1alpha1 API: the cluster-scoped
// DeploymentPolicy that platform teams write, the namespaced Rollout that
// records the live state of one Deployment's progressive delivery, the label
// and annotation names that Sluice and its users share, and the parsers that
// turn a Deployment's sluice.dev/* annotations into a typed Delivery.
//
// The deepcopy functions and the CRD manifests under crds/ are generated; run
// `go generate ./api/...` after changing a type.
//
// +kubebuilder:object:generate=true
// +groupName=sluice.dev
package v1alpha1

//go:generate go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0 object paths=./...
//go:generate go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0 crd paths=./... output:crd:dir=./crds
