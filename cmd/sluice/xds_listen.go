package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sluice-dev/sluice/certs"
	"github.com/sluice-dev/sluice/xds/auth"
)

// xdsAuthOptions are the flags of who may use the xDS listeners.
type xdsAuthOptions struct {
	tokenAudience      string
	legacyPort         int
	legacyAll          bool
	maxStreamsPerIdent int
}

func (o *xdsAuthOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.tokenAudience, "xds-token-audience", auth.DefaultAudience, "audience of the ServiceAccount tokens xDS clients present (verified with the TokenReview API)")
	f.IntVar(&o.legacyPort, "xds-legacy-port", 0, "port of the plaintext xDS and load reporting listener for old clients that can present no identity (0: off); only namespaces labelled "+auth.LegacyNamespaceLabel+"="+auth.LegacyNamespaceEnabled+" are served there, and their reports never promote a canary")
	f.BoolVar(&o.legacyAll, "xds-legacy-all-namespaces", false, "serve every namespace on --xds-legacy-port, labelled or not (for local clusters)")
	f.IntVar(&o.maxStreamsPerIdent, "xds-max-streams-per-identity", auth.DefaultMaxStreamsPerIdentity, "streams one identity (ServiceAccount, client certificate, or legacy namespace) may hold open on the xDS listeners")
}

// xdsListener is one gRPC listener of the xDS server.
type xdsListener struct {
	server *grpc.Server
	addr   string
}

// xdsListeners builds the authenticated xDS listener (TLS with the
// reloader's certificate; tokens and client certificates) and, with
// --xds-legacy-port, the plaintext legacy one, where cache tells which
// namespaces opted in.
func (o controllerOptions) xdsListeners(cs kubernetes.Interface, reloader *certs.Reloader, cache client.Reader, log logr.Logger) ([]xdsListener, error) {
	a := o.xdsAuth
	if a.maxStreamsPerIdent <= 0 {
		return nil, fmt.Errorf("--xds-max-streams-per-identity %d: want at least 1", a.maxStreamsPerIdent)
	}
	if a.legacyPort < 0 || a.legacyPort > 65535 {
		return nil, fmt.Errorf("--xds-legacy-port %d: want a port, or 0 for off", a.legacyPort)
	}
	if a.legacyAll && a.legacyPort == 0 {
		return nil, errors.New("--xds-legacy-all-namespaces needs --xds-legacy-port")
	}
	metrics, err := auth.NewMetrics(ctrlmetrics.Registry)
	if err != nil {
		return nil, fmt.Errorf("xDS auth metrics: %w", err)
	}
	tokens, err := auth.NewTokenVerifier(auth.TokenOptions{
		Reviews:  cs.AuthenticationV1().TokenReviews(),
		Audience: a.tokenAudience,
		OnReview: metrics.Review,
	})
	if err != nil {
		return nil, err
	}
	guard, err := auth.NewGuard(auth.GuardOptions{
		Tokens:                tokens,
		MaxStreamsPerIdentity: a.maxStreamsPerIdent,
		Metrics:               metrics,
		Logger:                log.WithName("xds-auth"),
	})
	if err != nil {
		return nil, err
	}
	opts := append(xdsKeepalive(), guard.ServerOptions()...)
	opts = append(opts, grpc.Creds(auth.ServerCredentials(reloader.GetCertificate, reloader.ClientCAs)))
	out := []xdsListener{{server: grpc.NewServer(opts...), addr: net.JoinHostPort(o.xdsHost, strconv.Itoa(o.xdsPort))}}
	if a.legacyPort == 0 {
		return out, nil
	}
	legacy, err := auth.NewGuard(auth.GuardOptions{
		Legacy:                true,
		LegacyAllowed:         legacyRule(cache, a.legacyAll),
		MaxStreamsPerIdentity: a.maxStreamsPerIdent,
		Metrics:               metrics,
		Logger:                log.WithName("xds-legacy"),
	})
	if err != nil {
		return nil, err
	}
	log.Info("serving old xDS clients in plaintext", "port", a.legacyPort, "allNamespaces", a.legacyAll)
	return append(out, xdsListener{
		server: grpc.NewServer(append(xdsKeepalive(), legacy.ServerOptions()...)...),
		addr:   net.JoinHostPort(o.xdsHost, strconv.Itoa(a.legacyPort)),
	}), nil
}

// legacyRule says which namespaces may use the legacy listener: those
// labelled to opt in (read from the manager's cache), or all.
func legacyRule(cache client.Reader, all bool) func(ctx context.Context, namespace string) error {
	return func(ctx context.Context, namespace string) error {
		if all {
			return nil
		}
		var ns corev1.Namespace
		if err := cache.Get(ctx, types.NamespacedName{Name: namespace}, &ns); err != nil {
			return fmt.Errorf("read namespace: %w", err)
		}
		if ns.Labels[auth.LegacyNamespaceLabel] != auth.LegacyNamespaceEnabled {
			return fmt.Errorf("it is not labelled %s=%s", auth.LegacyNamespaceLabel, auth.LegacyNamespaceEnabled)
		}
		return nil
	}
}

// addClientTrust keeps the CA bundle that signs the serving certificate in
// ConfigMap sluice-ca of every namespace, for xDS clients to mount, and,
// when Sluice holds its CA's key (--cert-mode=self), signs client
// certificates requested through the CSR API (leader only).
func addClientTrust(mgr manager.Manager, cs kubernetes.Interface, o controllerOptions, log logr.Logger) error {
	pub, err := certs.NewPublisher(cs, certs.PublisherOptions{Namespace: o.namespace, SecretName: o.certSecret, Logger: log.WithName("ca-bundle")})
	if err != nil {
		return err
	}
	if err := mgr.Add(pub); err != nil {
		return err
	}
	if o.certMode != certModeSelf {
		return nil
	}
	signer, err := certs.NewClientSigner(cs, certs.ClientSignerOptions{Namespace: o.namespace, SecretName: o.certSecret, Logger: log.WithName("client-certs")})
	if err != nil {
		return err
	}
	return mgr.Add(signer)
}
