package lrs

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc"
)

// Three replicas forwarding to each other over real gRPC: each ends up with
// the sum of all three, and a replica never forwards to itself.
func TestPeersShareTotals(t *testing.T) {
	const n = 3
	aggs := make([]*Aggregator, n)
	addrs := make([]string, n)
	for i := range n {
		aggs[i] = NewAggregator()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer()
		RegisterForwarding(g, aggs[i])
		go g.Serve(l) //nolint:errcheck // returns when stopped
		t.Cleanup(g.Stop)
		addrs[i] = l.Addr().String()
	}
	for i := range n {
		aggs[i].add(1, canary, Totals{Requests: uint64(10 * (i + 1)), Errors: uint64(i + 1)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range n {
		p := &Peers{
			Aggregator: aggs[i],
			Resolve:    func(context.Context) ([]string, error) { return addrs, nil },
			Self:       addrs[i],
			Source:     addrs[i],
			Interval:   10 * time.Millisecond,
			Logger:     testr.New(t),
		}
		go func() {
			if err := p.Start(ctx); err != nil {
				t.Errorf("peers %d: %v", i, err)
			}
		}()
	}
	want := Totals{Requests: 60, Errors: 6}
	for i := range n {
		eventually(t, "every replica holds the sum", func() bool { return aggs[i].Totals()[canary] == want })
		if got := aggs[i].Local()[canary]; got.Requests != uint64(10*(i+1)) {
			t.Errorf("replica %d local totals %+v changed by forwarding", i, got)
		}
		for _, s := range aggs[i].Sources() {
			if s == addrs[i] {
				t.Errorf("replica %d received its own totals", i)
			}
		}
	}
}

func TestPeersNeedTheirParts(t *testing.T) {
	for name, p := range map[string]*Peers{
		"no aggregator": {Resolve: func(context.Context) ([]string, error) { return nil, nil }, Source: "a"},
		"no resolver":   {Aggregator: NewAggregator(), Source: "a"},
		"no source":     {Aggregator: NewAggregator(), Resolve: func(context.Context) ([]string, error) { return nil, nil }},
	} {
		if err := p.Start(context.Background()); err == nil {
			t.Errorf("%s: Start succeeded, want an error", name)
		}
	}
}
