// Package cluster builds, starts and stops a real local Kubernetes control
// plane for development and end-to-end tests: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler built from upstream sources, kwok
// simulating a node and pod lifecycles with loopback pod IPs, and the pod
// runtime that makes those pods answer gRPC and HTTP.
//
// No container engine is needed: every component is a process on loopback,
// started in its own process group and killed with the parent process
// (Linux parent-death signal), so nothing outlives a test or `sluice dev`.
package cluster
