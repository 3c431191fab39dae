package podruntime

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// testService answers grpc.testing.TestService for one pod port: the unary
// methods identify the version and pod that answered, which is what traffic
// tests count; streaming methods are not served.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
	version  string
	hostname string
}

var _ testgrpc.TestServiceServer = (*testService)(nil)

// EmptyCall answers with an empty message.
func (s *testService) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

// UnaryCall answers with server_id = the image tag and hostname = the pod name.
func (s *testService) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{ServerId: s.version, Hostname: s.hostname}, nil
}

// CacheableUnaryCall answers like UnaryCall.
func (s *testService) CacheableUnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return s.UnaryCall(ctx, req)
}

// StreamingOutputCall is not served.
func (s *testService) StreamingOutputCall(*testgrpc.StreamingOutputCallRequest, grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	return errStreaming("StreamingOutputCall")
}

// StreamingInputCall is not served.
func (s *testService) StreamingInputCall(grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	return errStreaming("StreamingInputCall")
}

// FullDuplexCall is not served.
func (s *testService) FullDuplexCall(grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	return errStreaming("FullDuplexCall")
}

// HalfDuplexCall is not served.
func (s *testService) HalfDuplexCall(grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	return errStreaming("HalfDuplexCall")
}

func errStreaming(method string) error {
	return status.Errorf(codes.Unimplemented,
		"grpc.testing.TestService/%s is not served by the sluice pod runtime; it serves EmptyCall, UnaryCall and CacheableUnaryCall", method)
}
