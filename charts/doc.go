// Package charts holds Sluice's Helm chart (charts/sluice) and the helpers
// that build Helm from the Go module proxy and render the chart, for the
// chart's tests here and the end-to-end tests that apply it to a cluster.
package charts
