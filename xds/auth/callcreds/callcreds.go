// Package callcreds lets grpc-go's xDS client in this process send the call
// credentials its bootstrap names (gRFC A97, e.g. a jwt_token_file holding
// a ServiceAccount token for Sluice).
//
// grpc-go reads GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS once, while its
// packages are initialised, and ignores call_creds without it. Importing
// this package for its side effect sets the variable early enough: Go
// initialises packages in the order of their import paths among those
// whose imports are ready, and this package, importing only os, is ready
// as soon as os is and sorts before every google.golang.org package. A
// value the environment already holds is kept.
//
// Programs that connect to Sluice with a token from an in-process xDS
// client (`sluice dev --demo`, the end-to-end tests) import it:
//
//	import _ "github.com/sluice-dev/sluice/xds/auth/callcreds"
package callcreds

import "os"

// EnvVar is grpc-go's switch for bootstrap call credentials.
const EnvVar = "GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS"

func init() {
	if _, ok := os.LookupEnv(EnvVar); !ok {
		// Setenv fails only for an invalid name, which EnvVar is not.
		if err := os.Setenv(EnvVar, "true"); err != nil {
			panic(err)
		}
	}
}
