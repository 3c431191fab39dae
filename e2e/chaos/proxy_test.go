package chaos

import (
	"fmt"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/sluice-dev/sluice/e2e/testkit"
	"github.com/sluice-dev/sluice/xds/translate"
)

// proxyBehaviour says what a raw proxy does with route configurations
// after the first: acknowledge, never answer (hung), or reject (NACK).
type proxyBehaviour int

const (
	proxyHangs proxyBehaviour = iota
	proxyNacks
	proxySlow // acknowledges slowAck after each response
)

// slowAck is how long a slow proxy takes to acknowledge: visible next to a
// healthy proxy's milliseconds, below the stale bound of the fleet (5 s).
const slowAck = 3 * time.Second

// rawProxy is an ADS client of one replica, subscribed to the service's
// route configuration, that acknowledges the first one and then behaves as
// told. It runs until the test ends or stop is called.
func (s *service) rawProxy(t testing.TB, addr, node string, b proxyBehaviour) (stop func()) {
	stop, _ = s.rawProxyAcks(t, addr, node, b)
	return stop
}

// rawProxyAcks is rawProxy that also returns when it sent each
// acknowledgement, in order.
func (s *service) rawProxyAcks(t testing.TB, addr, node string, b proxyBehaviour) (stop func(), acks func() []time.Time) {
	t.Helper()
	p, stop := s.routeProxy(t, addr, node, func(n int, _ *discovery.DiscoveryResponse) testkit.Reply {
		switch {
		case n == 0:
			return testkit.Reply{}
		case b == proxyHangs:
			return testkit.Reply{Hang: true}
		case b == proxyNacks:
			return testkit.Reply{Nack: "chaos: this proxy rejects every route configuration after its first"}
		case b == proxySlow:
			return testkit.Reply{After: slowAck}
		}
		return testkit.Reply{}
	})
	p.WaitFirst(t, node)
	return stop, p.Answers
}

// routeProxy starts a raw ADS client of the replica at addr, with the
// service's token, subscribed to the service's route configuration and
// answering as answer says; stop also closes its connection.
func (s *service) routeProxy(t testing.TB, addr, node string, answer func(n int, resp *discovery.DiscoveryResponse) testkit.Reply) (p *testkit.RouteProxy, stop func()) {
	t.Helper()
	conn := testkit.DialXDS(t, addr, caFile, s.tokenFile(t))
	p = testkit.StartRouteProxy(t, conn, node, translate.GRPCListenerName(s.Namespace, "checkout", 8080), answer)
	stop = func() {
		p.Stop()
		conn.Close()
	}
	t.Cleanup(stop)
	return p, stop
}

// proxyNode names a raw proxy of a test on a replica.
func proxyNode(kind, replica string) string { return fmt.Sprintf("chaos-%s-%s", kind, replica) }
