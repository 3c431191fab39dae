package lrs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Peers forwards this replica's own load-report totals to every other
// replica, so that whichever replica leads (and judges canaries) holds the
// sum over all of them, whatever replica each proxy happens to report to.
//
// Forwarding to all peers rather than to the current leader needs no leader
// discovery and survives a leadership change without a gap: the new leader
// already holds everyone's latest totals. With the two or three replicas
// Sluice runs, the cost is a handful of small RPCs per interval.
type Peers struct {
	// Aggregator whose local totals are forwarded; it also receives the
	// peers' totals through RegisterForwarding. Required.
	Aggregator *Aggregator
	// Resolve returns the peer listener addresses (host:port) of every
	// replica, this one included, e.g. from the DNS name of a headless
	// Service. Required.
	Resolve func(ctx context.Context) ([]string, error)
	// Self is this replica's own address as Resolve returns it; it is
	// skipped.
	Self string
	// Source names this replica; it must change when the replica restarts.
	// Required.
	Source string
	// Credentials secure the connections to the peers: Sluice's own
	// certificate, and only a peer presenting it is trusted
	// (certs.PeerTLS.ClientCredentials). Required.
	Credentials credentials.TransportCredentials
	// Interval between rounds; zero means DefaultInterval.
	Interval time.Duration
	// Logger reports failed rounds.
	Logger logr.Logger
}

// NeedLeaderElection is false: every replica forwards.
func (p *Peers) NeedLeaderElection() bool { return false }

// Start forwards every Interval until ctx ends. A failed forward is logged
// and retried at the next round; totals are cumulative, so nothing is lost.
func (p *Peers) Start(ctx context.Context) error {
	switch {
	case p.Aggregator == nil:
		return errors.New("load peers: Aggregator is required")
	case p.Resolve == nil:
		return errors.New("load peers: Resolve is required")
	case p.Source == "":
		return errors.New("load peers: Source is required")
	case p.Credentials == nil:
		return errors.New("load peers: Credentials are required (the peer channel is mutual TLS)")
	case p.Interval < 0:
		return fmt.Errorf("load peers: interval %s must not be negative", p.Interval)
	}
	interval := p.Interval
	if interval == 0 {
		interval = DefaultInterval
	}
	conns := map[string]*grpc.ClientConn{}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := p.round(ctx, conns, interval); err != nil && ctx.Err() == nil {
			p.Logger.Error(err, "forward load reports to peers", "source", p.Source)
		}
	}
}

// round forwards once to every current peer, opening connections to new
// peers and closing those to peers that are gone.
func (p *Peers) round(ctx context.Context, conns map[string]*grpc.ClientConn, timeout time.Duration) error {
	addrs, err := p.Resolve(ctx)
	if err != nil {
		return fmt.Errorf("resolve peers: %w", err)
	}
	addrs = slices.DeleteFunc(slices.Clone(addrs), func(a string) bool { return a == p.Self })
	for a, c := range conns {
		if !slices.Contains(addrs, a) {
			c.Close()
			delete(conns, a)
		}
	}
	var errs []error
	for _, a := range addrs {
		c, ok := conns[a]
		if !ok {
			c, err = grpc.NewClient(a, grpc.WithTransportCredentials(p.Credentials))
			if err != nil {
				errs = append(errs, fmt.Errorf("peer %s: %w", a, err))
				continue
			}
			conns[a] = c
		}
		fctx, cancel := context.WithTimeout(ctx, timeout)
		err := (&Forwarder{Aggregator: p.Aggregator, Conn: c, Source: p.Source}).Forward(fctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", a, err))
		}
	}
	return errors.Join(errs...)
}
