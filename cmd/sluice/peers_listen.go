package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/xds/auth"
	"github.com/sluice-dev/sluice/xds/lrs"
	"github.com/sluice-dev/sluice/xds/server"
)

// defaultPeerPort is the port of the replica-to-replica listener.
const defaultPeerPort = 18001

func (o *controllerOptions) addPeerFlags(f *pflag.FlagSet) {
	f.StringVar(&o.replicaName, "replica-name", hostname(), "this replica's name on the Rollouts' proxy status and to its peers (default: the host, i.e. pod, name; set it when replicas share a host)")
	f.IntVar(&o.peerPort, "peer-port", defaultPeerPort, "port of the replica-to-replica listener (load forwarding, proxy sync), opened with --peers only: mutual TLS, only Sluice's own serving certificate is accepted")
}

// peerChannel serves the replica-to-replica services, load forwarding and
// proxy sync, on --peer-port, and forwards this replica's load reports to
// the others. Both ends present Sluice's own serving certificate (cert) and
// accept nothing else (certs.PeerTLS); callers are then auth.MethodPeer. It
// returns the pool of connections to the other replicas, or nil without
// --peers: a lone replica has no peers and opens no peer listener.
func (o controllerOptions) peerChannel(mgr manager.Manager, cert func(*tls.ClientHelloInfo) (*tls.Certificate, error),
	xds *server.Server, loads *lrs.Server, log logr.Logger) (*server.PeerPool, error) {
	if o.peers == "" {
		return nil, nil
	}
	if o.peerPort <= 0 || o.peerPort > 65535 {
		return nil, fmt.Errorf("--peer-port %d: want a port in 1..65535", o.peerPort)
	}
	own := &certs.PeerTLS{Certificate: cert}
	g := peerServer(own, o.replicaName, xds, loads.Aggregator())
	if err := mgr.Add(grpcRunnable{server: g, addr: net.JoinHostPort(o.xdsHost, strconv.Itoa(o.peerPort)), what: "peers"}); err != nil {
		return nil, err
	}
	resolve, self := o.resolvePeers()
	if err := mgr.Add(&lrs.Peers{
		Aggregator:  loads.Aggregator(),
		Resolve:     resolve,
		Self:        self,
		Source:      o.incarnation,
		Credentials: own.ClientCredentials(),
		Logger:      log.WithName("load-peers"),
	}); err != nil {
		return nil, err
	}
	return &server.PeerPool{Resolve: resolve, Self: self, Credentials: own.ClientCredentials()}, nil
}

// peerServer is the gRPC server of the peer listener: mutual TLS with
// Sluice's own certificate, then proxy sync, acknowledgements and load forwarding for callers
// that are therefore replicas.
func peerServer(own *certs.PeerTLS, name string, xds *server.Server, agg *lrs.Aggregator) *grpc.Server {
	g := grpc.NewServer(append(xdsKeepalive(), grpc.Creds(own.ServerCredentials()), grpc.UnaryInterceptor(asPeer))...)
	xds.RegisterSync(g, name)
	xds.RegisterAcks(g)
	lrs.RegisterForwarding(g, agg)
	return g
}

// asPeer marks every call on the peer listener as made by a replica of
// Sluice: the listener's mutual TLS admitted only Sluice's own certificate.
func asPeer(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(auth.NewContext(ctx, auth.Identity{Method: auth.MethodPeer, Name: "sluice"}), req)
}

// resolvePeers returns the peer listener addresses of every replica named
// by --peers, and this replica's own (--pod-ip and --peer-port). --peers is
// a comma-separated list whose entries are DNS names, each resolving to
// replicas' IPs (a headless Service) that listen on --peer-port, or
// host:port addresses taken as they are (replicas on one host).
func (o controllerOptions) resolvePeers() (resolve func(ctx context.Context) ([]string, error), self string) {
	port := strconv.Itoa(o.peerPort)
	return func(ctx context.Context) ([]string, error) {
		var addrs []string
		for _, entry := range strings.Split(o.peers, ",") {
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(entry); err == nil {
				addrs = append(addrs, entry)
				continue
			}
			ips, err := net.DefaultResolver.LookupHost(ctx, entry)
			if err != nil {
				return nil, err
			}
			for _, ip := range ips {
				addrs = append(addrs, net.JoinHostPort(ip, port))
			}
		}
		return addrs, nil
	}, net.JoinHostPort(o.podIP, port)
}

// hostname is the default replica name: the host (pod) name.
func hostname() string {
	host, err := os.Hostname()
	if err != nil {
		return "sluice"
	}
	return host
}
