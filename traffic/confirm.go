package traffic

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/text"
	"github.com/sluice-dev/sluice/router"
	"github.com/sluice-dev/sluice/xds/server"
)

// Confirmation is what the proxies did with a service's routes.
type Confirmation struct {
	// Acked counts the proxies (by node id) that carry the confirmed routes.
	Acked int
	// Nacked counts the proxies that rejected them; they keep their last
	// acknowledged routes.
	Nacked int
	// NackMessages are the rejections' details, "<node> on <replica>:
	// <message>", of the proxies of every replica, sorted.
	NackMessages []string
	// Stale names the proxies not waited for, sorted: they left the routes
	// unanswered for longer than the xDS server's stale bound.
	Stale []string
	// Replicas counts the proxies by the replica they are connected to,
	// this one first, then the others by name.
	Replicas []v1alpha1.ReplicaProxies
	// Limits says, sorted, how many proxies of every replica cannot follow
	// part of the service's strategy and what they get instead, as
	// "<n> proxies: <limit>" (xds/translate.Limit).
	Limits []string
	// Holding names, for weight 0, the proxies on any replica that may
	// still send the canary traffic although they do not carry the routes
	// published now: their last acknowledged routes reach a canary (or
	// sticky) cluster, and they rejected the published routes or their
	// stream closed within the stale bound (server.Holders). Only those
	// for less than Options.CanaryDeletionWait; sorted by node.
	Holding []server.Holder
	// Overdue are such proxies past that bound: the canary may be deleted
	// anyway, and they lose what they still send it.
	Overdue []server.Holder
}

// Confirm blocks until the routes of the service namespace/service that carry
// the canary weight (0 means all to stable) are published and every proxy
// subscribed to them (proxyless listeners' route configurations and the
// sidecar route configurations of its ports) has acknowledged them or
// rejected them. Routes published later for the same weight (for example
// after an endpoint change) count too.
//
// It returns the counts, with NACK details. With no subscribed proxy it
// returns Acked = 0 at once; weight 0 for a service that is not published
// (no pods) is confirmed at once too. It fails when ctx ends first (saying
// what was still pending) or when the published weight moves to another
// value while it waits, for then the routes carrying this weight are gone.
//
// The weight must be in the published state first: the Rollout's phase must
// be active (Progressing, Paused, Promoting) and its status.currentWeight the
// weight, else Confirm waits for it until ctx ends.
func (c *Controller) Confirm(ctx context.Context, namespace, service string, weight router.Weight) (Confirmation, error) {
	start := time.Now()
	conf, err := c.confirm(ctx, ServiceKey{Namespace: namespace, Name: service}, weight)
	result := "acked"
	switch {
	case err != nil:
		result = "failed"
	case conf.Nacked > 0:
		result = "nacked"
	}
	c.metrics.confirms.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return conf, err
}

func (c *Controller) confirm(ctx context.Context, k ServiceKey, weight router.Weight) (Confirmation, error) {
	reached := false
	for {
		c.mu.Lock()
		pub, changed := c.published, c.changed
		c.mu.Unlock()
		ps, ok := pub.services[k]
		switch {
		case !ok && weight == 0 && pub.seq > 0:
			return Confirmation{}, nil
		case ok && ps.weight == weight && !ps.cohortPending:
			reached = true
			var holding []string
			if weight == 0 {
				holding = canaryClusters(k, ps.names[resource.ClusterType])
			}
			conf, done, err := c.waitRoutes(ctx, k, changed, ps.routes, holding)
			if done || err != nil {
				return conf, err
			}
			continue // republished: check the new routes
		case reached && ps.weight != weight:
			return Confirmation{}, fmt.Errorf("service %s: canary weight moved from %s to %s before every proxy confirmed it", k, weight, ps.weight)
		}
		select {
		case <-ctx.Done():
			now := "not published"
			switch {
			case ok && ps.cohortPending:
				now = "published without its cohort routes (the canary has no ready endpoint yet)"
			case ok:
				now = "published with canary weight " + ps.weight.String()
			}
			return Confirmation{}, fmt.Errorf("service %s is %s, still waiting for %s (is its Rollout active with that status.currentWeight?): %w", k, now, weight, ctx.Err())
		case <-changed:
		}
	}
}

// canaryClusters are the clusters of service k, among names, that send
// traffic to its canary pods: its canary clusters, and its sticky clusters,
// which hold both tracks' endpoints.
func canaryClusters(k ServiceKey, names []string) []string {
	var out []string
	for _, n := range names {
		id, err := router.ParseClusterName(n)
		if err == nil && id.Namespace == k.Namespace && id.Service == k.Name &&
			(id.Track == router.TrackCanary || id.Track == router.TrackSticky) {
			out = append(out, n)
		}
	}
	return out
}

// waitRoutes waits until no subscribed proxy is pending on the given route
// versions of a service of namespace owner. done is false when a new
// publication came first. A rejection by a proxy of a consumer namespace
// holds only up to the xDS server's stale bound; then that proxy is named
// stale and skipped (see server.WaitSyncedFor). With holding (the canary's
// clusters, for weight 0: the routes drain the canary before its deletion),
// it also says which proxies of any replica may still send them traffic
// (Confirmation.Holding and Overdue).
func (c *Controller) waitRoutes(ctx context.Context, k ServiceKey, changed <-chan struct{}, routes map[string]string, holding []string) (Confirmation, bool, error) {
	owner := k.Namespace
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-wctx.Done():
		}
	}()
	names := make([]string, 0, len(routes))
	for n := range routes {
		names = append(names, n)
	}
	slices.Sort(names)
	acked, nacked, stale, details := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	where := map[string]staleWhere{}
	for _, name := range names {
		sy, err := c.srv.WaitSyncedFor(wctx, owner, resource.RouteType, name, routes[name])
		if err != nil {
			if ctx.Err() != nil {
				return Confirmation{}, true, fmt.Errorf("confirm routes: %w", err)
			}
			return Confirmation{}, false, nil
		}
		for _, id := range sy.Acked {
			acked[id] = true
		}
		for _, id := range sy.Nacked {
			nacked[id] = true
		}
		for _, id := range sy.Stale {
			stale[id] = true
			where[id] = staleWhere{replica: c.replica, since: sy.SilentSince[id]}
		}
	}
	for id := range nacked {
		delete(acked, id)
		delete(stale, id)
	}
	for id := range stale {
		delete(acked, id)
	}
	conf := Confirmation{Acked: len(acked), Nacked: len(nacked)}
	local := v1alpha1.ReplicaProxies{Replica: c.replica, Acked: int32(len(acked)), Nacked: int32(len(nacked)), Stale: int32(len(stale))}
	var others []v1alpha1.ReplicaProxies
	limits := c.srv.RouteLimits(names)
	var holders []server.Holder
	if len(holding) > 0 {
		for _, h := range c.srv.Holders(names, holding) {
			h.Replica = c.replica
			holders = append(holders, h)
		}
	}
	if c.peers != nil {
		var err error
		var peerHolders []server.Holder
		if others, peerHolders, err = c.waitPeers(wctx, owner, routes, holding, acked, nacked, stale, where, details, limits); err != nil {
			if ctx.Err() != nil {
				return Confirmation{}, true, fmt.Errorf("confirm routes on the other replicas: %w", err)
			}
			return Confirmation{}, false, nil
		}
		for id := range nacked {
			delete(acked, id)
			delete(stale, id)
		}
		for id := range stale {
			delete(acked, id)
		}
		conf = Confirmation{Acked: len(acked), Nacked: len(nacked)}
		holders = append(holders, peerHolders...)
	}
	if len(holding) > 0 {
		conf.Holding, conf.Overdue = c.splitHolders(k, holders, acked)
	}
	for id := range stale {
		conf.Stale = append(conf.Stale, where[id].describe(id))
	}
	slices.Sort(conf.Stale)
	conf.Replicas = append([]v1alpha1.ReplicaProxies{local}, others...)
	for l, n := range limits {
		conf.Limits = append(conf.Limits, fmt.Sprintf("%d %s: %s", n, plural(n, "proxy", "proxies"), l))
	}
	slices.Sort(conf.Limits)
	if len(nacked) > 0 {
		var local []string
		for id := range nacked {
			local = append(local, id)
		}
		conf.NackMessages = c.srv.RouteNackDetails(local, c.replica)
		for d := range details {
			conf.NackMessages = append(conf.NackMessages, d)
		}
		slices.Sort(conf.NackMessages)
		conf.NackMessages = slices.Compact(conf.NackMessages)
		c.log.Info("proxies rejected routes; they keep their last acknowledged routes",
			"routes", names, "nacked", conf.Nacked, "acked", conf.Acked, "details", conf.NackMessages)
	}
	return conf, true, nil
}

// ProxyNack is a rejection by one proxy that is still in force: the proxy
// does not carry the published content of a resource it rejected.
// Replica names the replica the proxy is connected to.
type ProxyNack = server.Rejection

// peerNackTimeout bounds how long Nacks waits for another replica's
// answer; a replica that does not answer in time is left out.
const peerNackTimeout = time.Second

// Nacks lists the rejections in force for the resources of one service
// by the proxies of every replica, sorted by node, type and replica; each
// names its replica. The rollout controller shows them on the Rollout. A
// replica that does not answer within a second (or failed to answer
// Confirm lately) is left out; one names at most 16 rejections.
func (c *Controller) Nacks(namespace, service string) []ProxyNack {
	c.mu.Lock()
	ps, ok := c.published.services[ServiceKey{Namespace: namespace, Name: service}]
	c.mu.Unlock()
	if !ok {
		return nil
	}
	out := c.srv.Rejections(ps.names)
	for i := range out {
		out[i].Replica = c.replica
	}
	out = append(out, c.peerNacks(ps.names)...)
	slices.SortStableFunc(out, func(a, b ProxyNack) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.TypeURL, b.TypeURL), cmp.Compare(a.Replica, b.Replica))
	})
	return out
}

// peerNacks asks every other replica, at once, for its proxies'
// rejections in force of names.
func (c *Controller) peerNacks(names map[string][]string) []ProxyNack {
	if c.peers == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerNackTimeout)
	defer cancel()
	peers, err := c.peers(ctx)
	if err != nil {
		return nil
	}
	answers := make(chan []ProxyNack, len(peers))
	asked := 0
	for _, p := range peers {
		c.mu.Lock()
		_, down := c.peerDown[p.Addr]
		c.mu.Unlock()
		if down {
			continue
		}
		asked++
		go func() {
			ps, err := server.QuerySyncRequest(ctx, p.Conn, server.SyncRequest{Rejected: names})
			if err != nil {
				c.log.V(1).Info("rejections of another replica's proxies not known", "replica", p.Addr, "error", err.Error())
				answers <- nil
				return
			}
			rs := ps.Rejections[:min(len(ps.Rejections), 16)]
			for i := range rs {
				rs[i].Replica = text.Truncate(cmp.Or(ps.Replica, p.Addr), 253)
				rs[i].Node = text.Truncate(rs[i].Node, 253)
				rs[i].Message = text.Truncate(rs[i].Message, text.MaxMessage)
			}
			answers <- rs
		}()
	}
	var out []ProxyNack
	for range asked {
		out = append(out, <-answers...)
	}
	return out
}

// waitPeers polls every other replica until none of its proxies is pending
// on routes, adding their states to the sets. A replica that cannot be
// reached, or replicas that cannot be found at all, are retried for
// PeerGrace since they first failed (remembered across calls, so a lasting
// failure delays one step, not every one) and then named stale
// ("replica <addr>", "peers (<error>)") and not waited for: proxies of a
// dead replica reconnect to a live one.
//
// A replica whose address refuses connections (nothing listens there: its
// process is gone, so it holds no stream) is skipped at once, unless the
// routes are draining the canary before its deletion (holding is set): then the grace still
// gives its proxies time to reconnect to a live replica first.
//
// It returns the counts of each other replica as it last answered,
// sorted by replica name; the NACK details of the other replicas' proxies
// are added to details.
func (c *Controller) waitPeers(ctx context.Context, owner string, routes map[string]string, holding []string, acked, nacked, stale map[string]bool, where map[string]staleWhere, details map[string]bool, limits map[string]int) ([]v1alpha1.ReplicaProxies, []server.Holder, error) {
	targets := make([]server.SyncTarget, 0, len(routes))
	for name, v := range routes {
		targets = append(targets, server.SyncTarget{TypeURL: resource.RouteType, Name: name, Version: v, Owner: owner})
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].Name < targets[j].Name })
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var waiting []string
		var counts []v1alpha1.ReplicaProxies
		var holders []server.Holder
		peerLimits := map[string]int{}
		peers, err := c.peers(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, nil, ctx.Err()
		case err != nil:
			if c.unreachable("peers", true) {
				stale[text.Truncate("peers ("+err.Error()+")", 253)] = true
			} else {
				waiting = append(waiting, "peers ("+err.Error()+")")
			}
		default:
			c.unreachable("peers", false)
		}
		for _, p := range peers {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			ps, err := server.QuerySyncRequest(qctx, p.Conn, server.SyncRequest{Targets: targets, Holding: holding})
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil, nil, fmt.Errorf("waiting for replica %s: %w", p.Addr, ctx.Err())
				}
				// A replica killed and started again at the same address
				// accepts connections before the connection to it leaves
				// its backoff (the query fails fast with the old error):
				// reconnect at once, and give the new process the grace
				// from now, not from when the old one died.
				refused := refusesConnections(ctx, p.Addr)
				if !refused {
					if r, ok := p.Conn.(interface{ ResetConnectBackoff() }); ok {
						r.ResetConnectBackoff()
					}
				}
				if c.peerFailed(p.Addr, refused) || (len(holding) == 0 && refused) {
					stale["replica "+p.Addr] = true
					counts = append(counts, v1alpha1.ReplicaProxies{Replica: p.Addr, Stale: 1})
				} else {
					waiting = append(waiting, "replica "+p.Addr+" ("+err.Error()+")")
				}
				continue
			}
			c.unreachable(p.Addr, false)
			counts = append(counts, v1alpha1.ReplicaProxies{Replica: cmp.Or(ps.Replica, p.Addr),
				Acked: int32(len(ps.Acked)), Nacked: int32(len(ps.Nacked)), Stale: int32(len(ps.Stale))})
			for l, n := range ps.Limits {
				peerLimits[l] += n
			}
			for _, h := range ps.Holders {
				h.Replica = cmp.Or(ps.Replica, p.Addr)
				holders = append(holders, h)
			}
			for _, id := range ps.Acked {
				acked[id] = true
			}
			for _, id := range ps.Nacked {
				nacked[id] = true
			}
			for _, d := range ps.NackDetails {
				details[text.Truncate(d, 2*253+text.MaxMessage+8)] = true
			}
			for _, id := range ps.Stale {
				stale[id] = true
				where[id] = staleWhere{replica: cmp.Or(ps.Replica, p.Addr), since: ps.SilentSince[id]}
			}
			for _, id := range ps.Pending {
				waiting = append(waiting, id+" on replica "+p.Addr)
			}
		}
		if len(waiting) == 0 {
			for l, n := range peerLimits {
				limits[l] += n
			}
			slices.SortFunc(counts, func(a, b v1alpha1.ReplicaProxies) int { return cmp.Compare(a.Replica, b.Replica) })
			return counts, holders, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("waiting for %s: %w", strings.Join(waiting, ", "), ctx.Err())
		case <-tick.C:
		}
	}
}

// splitHolders drops the holders that carry the published routes on some
// replica (acked: a proxy that reconnected elsewhere and took them), keeps
// one entry per node (the earliest), and splits the rest by whether they
// have held service k's canary for less than the deletion wait. A holder's
// start is the earliest this controller saw it holding k's canary, so a
// proxy cannot extend the wait by reconnecting and rejecting again; the
// memory is dropped once nothing holds the canary.
func (c *Controller) splitHolders(k ServiceKey, holders []server.Holder, acked map[string]bool) (holding, overdue []server.Holder) {
	slices.SortFunc(holders, func(a, b server.Holder) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), a.Since.Compare(b.Since), cmp.Compare(a.Replica, b.Replica))
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := c.holdingSince[k]
	if c.holdingSince == nil {
		c.holdingSince = map[ServiceKey]map[string]time.Time{}
	}
	next := map[string]time.Time{}
	now := time.Now()
	for i, h := range holders {
		if acked[h.Node] || (i > 0 && holders[i-1].Node == h.Node) {
			continue
		}
		if first, ok := seen[h.Node]; ok && first.Before(h.Since) {
			h.Since = first
		}
		next[h.Node] = h.Since
		if now.Sub(h.Since) < c.deletionWait {
			holding = append(holding, h)
		} else {
			overdue = append(overdue, h)
		}
	}
	if len(next) == 0 {
		delete(c.holdingSince, k)
	} else {
		c.holdingSince[k] = next
	}
	return holding, overdue
}

// DescribeHolder says, for the Rollout's status and Events, which proxy
// h is, why it may still send the canary traffic and until when that holds
// the canary's deletion: "<node> on <replica> (rejected the routes at
// <time>; waited for until <time>)".
func (c *Controller) DescribeHolder(h server.Holder) string {
	why := "rejected the routes"
	if h.Disconnected {
		why = "disconnected"
	}
	return fmt.Sprintf("%s on %s (%s at %s; waited for until %s)", text.Truncate(h.Node, 253), text.Truncate(h.Replica, 253), why,
		h.Since.UTC().Format(time.RFC3339), h.Since.Add(c.deletionWait).UTC().Format(time.RFC3339))
}

// peerFailure is one peer's run of failures.
type peerFailure struct {
	since   time.Time
	refused bool
}

// unreachable records whether key (a peer address, or "peers" for the
// resolution) failed now, and reports whether it has been failing for
// longer than the grace.
func (c *Controller) unreachable(key string, failed bool) bool {
	if !failed {
		c.mu.Lock()
		delete(c.peerDown, key)
		c.mu.Unlock()
		return false
	}
	return c.peerFailed(key, false)
}

// peerFailed records that the query of peer addr failed now, and whether
// its address refused connections; it reports whether the peer has been
// failing for longer than the grace. A peer whose address refused
// connections and now accepts them is a new process: its failures count
// from now.
func (c *Controller) peerFailed(addr string, refused bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.peerDown[addr]
	if !ok || (f.refused && !refused) {
		if c.peerDown == nil {
			c.peerDown = map[string]peerFailure{}
		}
		c.peerDown[addr] = peerFailure{since: time.Now(), refused: refused}
		return false
	}
	c.peerDown[addr] = peerFailure{since: f.since, refused: refused}
	return time.Since(f.since) >= c.peerGrace
}

// refusesConnections reports whether nothing listens at addr (host:port):
// the connection is refused. Any other outcome (accepted, timed out,
// unresolvable, no route) could be a live replica out of reach, and is not.
func refusesConnections(ctx context.Context, addr string) bool {
	dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err == nil {
		conn.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// plural is one or many by n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// staleWhere is where a stale proxy was seen: the replica it is connected
// to and, when it went silent, since when.
type staleWhere struct {
	replica string
	since   time.Time
}

// describe names stale proxy id for the Rollout's status:
// "<node> on <replica>, silent since <time>". Entries that are no proxy
// ("replica <addr>", "peers (...)") have no replica and stay as they are.
func (w staleWhere) describe(id string) string {
	if w.replica == "" {
		return id
	}
	s := id + " on " + w.replica
	if !w.since.IsZero() {
		s += ", silent since " + w.since.UTC().Format(time.RFC3339)
	}
	return s
}
