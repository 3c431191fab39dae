package lrs

import (
	"testing"
	"time"

	lrsv3 "github.com/envoyproxy/go-control-plane/envoy/service/load_stats/v3"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"

	"github.com/sluice-dev/sluice/xds/auth"
)

// laterAck is an answer the test gives when it likes.
type laterAck struct {
	done  chan struct{}
	acked bool
}

func (a *laterAck) Done() <-chan struct{} { return a.done }
func (a *laterAck) Acked() bool {
	select {
	case <-a.done:
		return a.acked
	default:
		return false
	}
}

// TestHeldReportsBounded plays a reporter whose acknowledgement another
// replica is slow to confirm, flooding reports meanwhile: a stream holds
// at most maxHeldPerStream reports, the rest are refused at once; the
// held ones count only for the answer they get (a no refuses them, no
// answer within the bound refuses them too), never on a guess.
func TestHeldReportsBounded(t *testing.T) {
	answers := map[string]*laterAck{
		canaryCluster: {done: make(chan struct{}), acked: true},
		stableCluster: {done: make(chan struct{}), acked: false},
	}
	reg := prometheus.NewRegistry()
	s, err := NewServer(Options{
		Attribute: AttributeCluster, Registerer: reg, Logger: testr.New(t), RequireIdentity: true,
		LookupAck: func(_ auth.Identity, cluster string) Ack { return answers[cluster] },
	})
	if err != nil {
		t.Fatal(err)
	}
	judged := make(chan struct{}, 16)
	s.judged = func() { judged <- struct{}{} }
	conn := serveWith(t, func(g *grpc.Server) { s.Register(g) }, grpc.StreamInterceptor(withIdentity))
	rejected := func(reason string) float64 {
		return testutil.ToFloat64(s.metrics.rejected.WithLabelValues(reason))
	}

	reports := make([]*lrsv3.LoadStatsRequest, 0, maxHeldPerStream+2)
	for range maxHeldPerStream + 2 {
		reports = append(reports, load(canaryCluster, "canary/r1", 10, 1))
	}
	if err := report(t, conn, "frontend", reports...); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the reports beyond the bound to be refused", func() bool {
		return rejected(RejectAckUnanswered) == 2
	})
	if got := testutil.ToFloat64(s.metrics.held); got != maxHeldPerStream {
		t.Errorf("held entries %v, want %d", got, maxHeldPerStream)
	}
	if got := s.Aggregator().Local(); len(got) != 0 {
		t.Fatalf("counted before any answer: %v", got)
	}
	close(answers[canaryCluster].done)
	for range maxHeldPerStream {
		<-judged
	}
	canary := Key{Namespace: "shop", Service: "checkout", Track: "canary", Revision: "r1"}
	if got := s.Aggregator().Local()[canary]; got.Requests != 11*maxHeldPerStream || got.Errors != maxHeldPerStream || got.InFlight != 0 {
		t.Errorf("canary after a yes: %+v, want the %d held reports' counts", got, maxHeldPerStream)
	}

	// A no refuses; no answer within the bound refuses too.
	if err := report(t, conn, "frontend", load(stableCluster, "stable/r1", 5, 0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stable report to be held", func() bool { return testutil.ToFloat64(s.metrics.held) == 1 })
	close(answers[stableCluster].done)
	<-judged
	if rejected(RejectUnacknowledged) != 1 {
		t.Errorf("unacknowledged rejections %v, want 1", rejected(RejectUnacknowledged))
	}
	s.holdFor = 50 * time.Millisecond
	answers[canaryCluster] = &laterAck{done: make(chan struct{}), acked: true}
	if err := report(t, conn, "batch", load(canaryCluster, "canary/r1", 100, 0)); err != nil {
		t.Fatal(err)
	}
	<-judged
	close(answers[canaryCluster].done) // too late
	if got := s.Aggregator().Local()[canary]; got.Requests != 11*maxHeldPerStream {
		t.Errorf("canary requests %d after an unanswered report, want %d", got.Requests, 11*maxHeldPerStream)
	}
	if rejected(RejectAckUnanswered) != 3 {
		t.Errorf("unanswered rejections %v, want 3", rejected(RejectAckUnanswered))
	}
	if got := testutil.ToFloat64(s.metrics.held); got != 0 {
		t.Errorf("held entries %v after every answer, want 0", got)
	}
}
