package testkit

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// versionServer answers with its version, failing every failEvery-th call
// (never if 0).
type versionServer struct {
	testgrpc.UnimplementedTestServiceServer
	version   string
	failEvery int64
	calls     atomic.Int64
}

func (s *versionServer) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if n := s.calls.Add(1); s.failEvery > 0 && n%s.failEvery == 0 {
		return nil, status.Error(codes.Unavailable, "injected")
	}
	return &testgrpc.SimpleResponse{ServerId: s.version}, nil
}

func serveVersion(t *testing.T, s *versionServer) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, s)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestLoadCountsAnswersAndFailures runs a load against a real gRPC server
// until it has seen failures, and checks that the counts match the
// server's own and that Check reports the failures.
func TestLoadCountsAnswersAndFailures(t *testing.T) {
	s := &versionServer{version: "v1", failEvery: 5}
	l := StartLoad(t, serveVersion(t, s), 200)
	Poll(t, 30*time.Second, "two failures", func(context.Context) error {
		if _, failures, _ := l.Snapshot(); failures < 2 {
			return status.Errorf(codes.Unknown, "%d failures", failures)
		}
		return nil
	})
	l.Stop()
	answers, failures, msgs := l.Snapshot()
	// StartLoad's first call, which waits for the connection, is not counted.
	if got, want := int64(answers["v1"]+failures), s.calls.Load()-1; got != want {
		t.Errorf("the load counted %d calls, the server %d after the first", got, want)
	}
	if len(msgs) != 1 {
		t.Errorf("failure messages %v, want the injected one", msgs)
	}
	first, last, ok := l.Seen("v1")
	ff, lf := l.Failed()
	if !ok || last.Before(first) || ff.IsZero() || lf.Before(ff) {
		t.Errorf("v1 seen %v..%v (%v), failures %v..%v", first, last, ok, ff, lf)
	}
	r := &fatalRecorder{TB: t}
	var errs []string
	rec := &errorRecorder{fatalRecorder: r, errs: &errs}
	l.Check(rec)
	if len(errs) != 1 {
		t.Errorf("Check reported %q, want the failed RPCs", errs)
	}
}

type errorRecorder struct {
	*fatalRecorder
	errs *[]string
}

func (r *errorRecorder) Errorf(format string, args ...any) {
	*r.errs = append(*r.errs, format)
}
