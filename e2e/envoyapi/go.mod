// A separate module: decodes the translator's goldens with the Envoy API of
// the 1.2x era (go-control-plane v0.10.1, Envoy API of late 2021), to show
// that the form an older Envoy gets has no field that API does not know.
module github.com/sluice-dev/sluice/e2e/envoyapi

go 1.20

require (
	github.com/envoyproxy/go-control-plane v0.10.1
	google.golang.org/protobuf v1.27.1
	sigs.k8s.io/yaml v1.3.0
)

require (
	github.com/census-instrumentation/opencensus-proto v0.2.1 // indirect
	github.com/cncf/xds/go v0.0.0-20211001041855-01bcc9b48dfe // indirect
	github.com/envoyproxy/protoc-gen-validate v0.1.0 // indirect
	github.com/golang/protobuf v1.5.0 // indirect
	gopkg.in/yaml.v2 v2.4.0 // indirect
)
