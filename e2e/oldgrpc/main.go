// Command oldgrpc is a proxyless xDS client built with an older grpc-go
// release (see go.mod), driven over stdin with the protocol of
// e2e/testdata/interop/client.py: it prints one JSON line naming itself,
// then answers each line {"n": N, "md": {...}} with the tracks that answered
// N sequential grpc.testing.TestService/UnaryCall RPCs and the errors.
//
// Usage: GRPC_XDS_BOOTSTRAP=bootstrap.json oldgrpc xds:///<target>
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // registers the xds:/// resolver
)

type request struct {
	N  int               `json:"n"`
	MD map[string]string `json:"md"`
}

type result struct {
	Tracks   map[string]int `json:"tracks"`
	Versions map[string]int `json:"versions"`
	Errors   map[string]int `json:"errors"`
	Failures map[string]int `json:"failures"`
	Messages []string       `json:"messages"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "oldgrpc:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 2 {
		return fmt.Errorf("usage: oldgrpc xds:///<target>")
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(map[string]string{"client": "grpc-go", "version": grpcVersion()}); err != nil {
		return err
	}
	conn, err := grpc.Dial(os.Args[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial %s: %w", os.Args[1], err)
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			return fmt.Errorf("read request: %w", err)
		}
		res := result{Tracks: map[string]int{}, Versions: map[string]int{}, Errors: map[string]int{}, Failures: map[string]int{}}
		var kv []string
		for k, v := range req.MD {
			kv = append(kv, k, v)
		}
		for i := 0; i < req.N; i++ {
			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), kv...), 10*time.Second)
			resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			cancel()
			if err != nil {
				code := status.Code(err).String()
				res.Errors[code]++
				res.Failures[code+": "+status.Convert(err).Message()]++
				if len(res.Messages) < 3 {
					res.Messages = append(res.Messages, err.Error())
				}
				continue
			}
			res.Tracks[resp.GetHostname()]++
			if v := resp.GetServerId(); v != "" {
				res.Versions[v]++
			}
		}
		if err := out.Encode(res); err != nil {
			return err
		}
	}
	return in.Err()
}

// grpcVersion is the grpc-go module version this binary was built with.
func grpcVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "google.golang.org/grpc" {
				return d.Version
			}
		}
	}
	return grpc.Version
}
