// Package interop tests Sluice's xDS output with real proxyless clients that
// are not the grpc-go release the module pins: gRPC C-core through Debian's
// python3-grpcio, grpc-js with @grpc/grpc-js-xds from npm, and an older
// grpc-go built from the separate module in e2e/oldgrpc, next to the current
// grpc-go. Each client is a real process (client programs in
// e2e/testdata/interop and e2e/oldgrpc) driven over stdin.
//
// Two levels: the in-process tests connect the clients to a real xDS server
// publishing translated plans, routing to real gRPC backends; the controller
// tests (TestController*) run a local cluster of the package's own with one
// real `sluice controller` process, started while the in-process tests run,
// and drive whole deliveries of annotated Deployments through it, the old
// clients on its legacy listener and grpc-go also authenticated. `make deps`
// installs the clients.
package interop
