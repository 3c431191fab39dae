// Package testkit is support code for the tests that run against the local
// cluster (package local/cluster) and the local fleet (package local/fleet):
// the end-to-end packages e2e, e2e/chaos and e2e/interop. Go test packages
// cannot import one another, so what they share lives here: polling with
// deadlines, a delivered service's fixture, a load generator, raw ADS clients.
//
// It is not product code: nothing outside tests imports it, and `sluice`
// does not run it. Its helpers take a testing.TB and fail the test on error.
package testkit
