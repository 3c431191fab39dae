package podruntime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// counters are one pod's request and error totals; they survive restarts of
// the pod's listeners.
type counters struct {
	requests atomic.Int64
	errors   atomic.Int64
}

// verdict is what the fault injection decided for one call.
type verdict int

const (
	answer      verdict = iota // serve the call normally
	injectFault                // fail with "injected fault"
	misconfig                  // fail naming the malformed setting
	aborted                    // the caller left or the port is stopping
)

// injectedFault is the message of every call failed by SIM_ERROR_RATE.
const injectedFault = "injected fault"

// portServer serves one pod port: one listener answering gRPC (HTTP/2 with
// prior knowledge) and plain HTTP/1.1.
type portServer struct {
	pod    PodSpec
	spec   PortSpec
	addr   string
	log    logr.Logger
	counts *counters

	calls  atomic.Uint64 // sequence number of the next call, for Behavior.Fails; restarts with the listener
	forced chan struct{} // closed when draining times out; aborts latency waits
	split  *protocolSplit
	http   *http.Server
	grpc   *grpc.Server
	served sync.WaitGroup // the Serve loops
}

// startPort binds pod.IP:spec.Port and serves it until stop.
func startPort(logger logr.Logger, pod PodSpec, spec PortSpec, counts *counters) (*portServer, error) {
	addr := net.JoinHostPort(pod.IP, strconv.Itoa(int(spec.Port)))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s for pod %s/%s: %w", addr, pod.Namespace, pod.Name, err)
	}
	s := &portServer{
		pod: pod, spec: spec, addr: addr, counts: counts,
		log:    logger.WithValues("addr", addr, "container", spec.Container, "version", spec.Version),
		forced: make(chan struct{}),
		split:  newProtocolSplit(ln),
	}
	s.grpc = grpc.NewServer(
		grpc.UnaryInterceptor(s.unaryInterceptor),
		grpc.StreamInterceptor(s.streamInterceptor),
	)
	testgrpc.RegisterTestServiceServer(s.grpc, &testService{version: spec.Version, hostname: pod.Name})
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	s.http = &http.Server{
		Handler:           s,
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(logWriter{s.log}, "", 0),
	}
	s.served.Go(func() {
		// ErrServerStopped: the pod was stopped before this goroutine ran.
		if err := s.grpc.Serve(s.split.grpc); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error(err, "Serving gRPC stopped unexpectedly")
		}
	})
	s.served.Go(func() {
		if err := s.http.Serve(s.split.http1); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error(err, "Serving HTTP stopped unexpectedly")
		}
	})
	if spec.Behavior.Problem != "" {
		s.log.Info("Serving a misconfigured container: every call fails", "problem", spec.Behavior.Problem)
	}
	return s, nil
}

// endpoint describes what s listens on.
func (s *portServer) endpoint() Endpoint {
	return Endpoint{Namespace: s.pod.Namespace, Pod: s.pod.Name, IP: s.pod.IP, Port: s.spec.Port, Version: s.spec.Version}
}

// stop closes the listener at once, so the address is free when stop
// returns, then lets calls in flight finish in the background for up to
// drain before cutting them off. The returned channel is closed when every
// connection is closed.
func (s *portServer) stop(drain time.Duration) <-chan struct{} {
	if err := s.split.close(); err != nil {
		s.log.Error(err, "Closing the listener")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), drain)
		defer cancel()
		httpDone := make(chan struct{})
		go func() {
			defer close(httpDone)
			if err := s.http.Shutdown(ctx); err != nil {
				s.log.V(1).Info("HTTP connections still open after draining", "drain", drain, "reason", err.Error())
			}
		}()
		grpcDone := make(chan struct{})
		go func() {
			defer close(grpcDone)
			s.grpc.GracefulStop()
		}()
		<-httpDone // at the latest when ctx expires
		select {
		case <-grpcDone:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			s.log.V(1).Info("Calls still in flight after draining; cutting them off", "drain", drain)
			close(s.forced)
			s.grpc.Stop()
			if err := s.http.Close(); err != nil {
				s.log.Error(err, "Closing HTTP connections")
			}
		}
		<-grpcDone
		s.served.Wait()
	}()
	return done
}

// ServeHTTP answers HTTP/1.1 requests.
func (s *portServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch s.admit(r.Context()) {
	case aborted:
		http.Error(w, "pod is stopping or the request was cancelled", http.StatusServiceUnavailable)
		return
	case misconfig:
		http.Error(w, s.problem(), http.StatusInternalServerError)
		return
	case injectFault:
		http.Error(w, injectedFault, http.StatusServiceUnavailable)
		return
	case answer:
	}
	if r.URL.Path != "/" {
		http.Error(w, fmt.Sprintf("no such path %q; the pod runtime serves GET /", r.URL.Path), http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, fmt.Sprintf("method %s not allowed on /; use GET", r.Method), http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	body, err := json.Marshal(Identity{Pod: s.pod.Name, Namespace: s.pod.Namespace, Image: s.spec.Image, Version: s.spec.Version})
	if err != nil {
		http.Error(w, fmt.Sprintf("encode identity: %v", err), http.StatusInternalServerError)
		return
	}
	if _, err := w.Write(append(body, '\n')); err != nil {
		s.log.V(1).Info("Writing the response failed", "reason", err.Error())
	}
}

// Identity is the JSON body of GET / on every served port.
type Identity struct {
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	Image     string `json:"image"`
	Version   string `json:"version"`
}

func (s *portServer) unaryInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.grpcVerdict(ctx, s.admit(ctx)); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *portServer) streamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := s.grpcVerdict(ss.Context(), s.admit(ss.Context())); err != nil {
		return err
	}
	return handler(srv, ss)
}

func (s *portServer) grpcVerdict(ctx context.Context, v verdict) error {
	switch v {
	case aborted:
		if err := ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		return status.Error(codes.Unavailable, "pod is stopping")
	case misconfig:
		return status.Error(codes.FailedPrecondition, s.problem())
	case injectFault:
		return status.Error(codes.Unavailable, injectedFault)
	default:
		return nil
	}
}

// admit counts a call, waits the configured latency and decides whether the
// call fails.
func (s *portServer) admit(ctx context.Context) verdict {
	n := s.calls.Add(1)
	s.counts.requests.Add(1)
	b := s.spec.Behavior
	v := answer
	switch {
	case b.Problem != "":
		v = misconfig
	case b.Fails(n):
		v = injectFault
	}
	if d := b.Delay(n); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return aborted
		case <-s.forced:
			return aborted
		}
	}
	if v != answer {
		s.counts.errors.Add(1)
	}
	return v
}

func (s *portServer) problem() string {
	return fmt.Sprintf("pod %s/%s container %q is misconfigured: %s", s.pod.Namespace, s.pod.Name, s.spec.Container, s.spec.Behavior.Problem)
}

// logWriter sends net/http's own messages (bad prefaces, broken
// connections) to the runtime's logger instead of the process's stderr.
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.V(1).Info("HTTP server", "message", strings.TrimSpace(string(p)))
	return len(p), nil
}
