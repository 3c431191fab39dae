// Package interop tests Sluice's xDS output with real proxyless clients that
// are not the grpc-go release the module pins: gRPC C-core through Debian's
// python3-grpcio, grpc-js with @grpc/grpc-js-xds from npm, and an older
// grpc-go built from the separate module in e2e/oldgrpc, next to the current
// grpc-go. Each client is a real process (client programs in
// e2e/testdata/interop and e2e/oldgrpc) driven over stdin, connected to a
// real xDS server publishing translated plans, and routing to real gRPC
// backends. `make deps` installs the clients.
package interop
