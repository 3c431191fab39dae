// Package demo plays the scripted story of `sluice dev --demo`: a sample
// service on the local cluster serves proxyless gRPC clients while new
// versions go out by canary, get rolled back, and reach a beta cohort first.
package demo

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/xds"
)

// Load sends a steady stream of UnaryCalls through grpc-go's xDS client and
// counts the answers by the version that served them.
type Load struct {
	mu       sync.Mutex
	byVer    map[string]int64 // successful calls by server version
	errors   int64
	lastErr  string
	total    int64
	conn     *grpc.ClientConn
	header   map[string]string
	interval time.Duration
}

// Tally is what a Load counted.
type Tally struct {
	ByVersion map[string]int64
	Errors    int64
	Total     int64
	LastError string
}

// NewLoad dials target (xds:///<service>.<namespace>) with an xDS client
// configured by bootstrap JSON and returns a load of rps calls per second,
// each carrying the given headers (e.g. a beta cohort header).
func NewLoad(bootstrap []byte, target string, rps int, header map[string]string) (*Load, error) {
	if rps <= 0 {
		return nil, fmt.Errorf("load of %d calls per second: want > 0", rps)
	}
	rb, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		return nil, fmt.Errorf("xDS resolver: %w", err)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	return &Load{byVer: map[string]int64{}, conn: conn, header: header, interval: time.Second / time.Duration(rps)}, nil
}

// Run sends calls until ctx ends, then closes the connection.
func (l *Load) Run(ctx context.Context) {
	defer l.conn.Close()
	client := testgrpc.NewTestServiceClient(l.conn)
	var md metadata.MD
	if len(l.header) > 0 {
		md = metadata.New(l.header)
	}
	t := time.NewTicker(l.interval)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if md != nil {
				cctx = metadata.NewOutgoingContext(cctx, md)
			}
			resp, err := client.UnaryCall(cctx, &testgrpc.SimpleRequest{})
			if ctx.Err() != nil {
				return // stopping: not the service's fault
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total++
			if err != nil {
				l.errors++
				l.lastErr = err.Error()
				return
			}
			l.byVer[resp.GetServerId()]++
		}()
	}
}

// Take returns the counts since the last Take and resets them.
func (l *Load) Take() Tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := Tally{ByVersion: l.byVer, Errors: l.errors, Total: l.total, LastError: l.lastErr}
	l.byVer, l.errors, l.total, l.lastErr = map[string]int64{}, 0, 0, ""
	return t
}

// String renders a tally as "v1 91% v2 9% errors 0/100".
func (t Tally) String() string {
	if t.Total == 0 {
		return "no calls"
	}
	vers := make([]string, 0, len(t.ByVersion))
	for v := range t.ByVersion {
		vers = append(vers, v)
	}
	sort.Strings(vers)
	var b strings.Builder
	for _, v := range vers {
		fmt.Fprintf(&b, "%s %3.0f%%  ", v, 100*float64(t.ByVersion[v])/float64(t.Total))
	}
	fmt.Fprintf(&b, "errors %d/%d", t.Errors, t.Total)
	return b.String()
}
