package testkit

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// Load sends RPCs at a steady rate through one client connection and counts
// the answers by version (the pod runtime answers with its image tag) and
// the failures by message, with when each was first and last seen.
type Load struct {
	mu        sync.Mutex
	answers   map[string]int
	firstSeen map[string]time.Time
	lastSeen  map[string]time.Time
	failures  int
	firstFail time.Time
	lastFail  time.Time
	failMsgs  map[string]int
	stop      func()
}

// StartLoad sends rate RPCs a second over conn, each with 5 s to complete,
// until Stop is called or the test ends. The first call must succeed within
// a minute (waiting for the connection to be ready), or t fails.
func StartLoad(t testing.TB, conn *grpc.ClientConn, rate int) *Load {
	t.Helper()
	c := testgrpc.NewTestServiceClient(conn)
	first, cancelFirst := context.WithTimeout(context.Background(), time.Minute)
	defer cancelFirst()
	if _, err := c.UnaryCall(first, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("first call through xDS: %v", err)
	}
	l := &Load{answers: map[string]int{}, firstSeen: map[string]time.Time{}, lastSeen: map[string]time.Time{},
		failMsgs: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				l.one(ctx, c)
			}()
		}
	}()
	var once sync.Once
	l.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(l.stop)
	return l
}

func (l *Load) one(ctx context.Context, c testgrpc.TestServiceClient) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.UnaryCall(cctx, &testgrpc.SimpleRequest{})
	if ctx.Err() != nil {
		return // the load stopped; not the data plane's failure
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if l.failures == 0 {
			l.firstFail = now
		}
		l.failures++
		l.lastFail = now
		l.failMsgs[err.Error()]++
		return
	}
	v := resp.GetServerId()
	l.answers[v]++
	if _, ok := l.firstSeen[v]; !ok {
		l.firstSeen[v] = now
	}
	l.lastSeen[v] = now
}

// Stop stops sending and waits for the RPCs in flight; it may be called
// more than once.
func (l *Load) Stop() { l.stop() }

// Snapshot returns copies of the counts so far.
func (l *Load) Snapshot() (answers map[string]int, failures int, msgs map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.answers), l.failures, maps.Clone(l.failMsgs)
}

// Check stops the load, fails t (without stopping it) if any RPC failed,
// and returns the answers by version.
func (l *Load) Check(t testing.TB) (answers map[string]int) {
	t.Helper()
	l.Stop()
	answers, failures, msgs := l.Snapshot()
	if failures > 0 {
		t.Errorf("%d RPCs failed: %v", failures, msgs)
	}
	return answers
}

// Seen is when version first and last answered; ok is false if it never
// did.
func (l *Load) Seen(version string) (first, last time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	first, ok = l.firstSeen[version]
	return first, l.lastSeen[version], ok
}

// Failed is when an RPC first and last failed (zero times if none did).
func (l *Load) Failed() (first, last time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstFail, l.lastFail
}
