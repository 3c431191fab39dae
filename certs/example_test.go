package certs_test

import (
	"crypto/tls"
	"fmt"

	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/sluice-dev/sluice/certs"
)

// Example shows the wiring of `sluice controller` with self-managed
// certificates: every replica serves the Secret through a Reloader, and the
// elected leader runs the Rotator. `sluice dev` registers its webhooks by
// URL on loopback, so it sets RotatorOptions.IPAddresses to 127.0.0.1
// instead of (or besides) DNS names. With cert-manager, leave the Rotator
// out and point the Reloader at cert-manager's Secret or mounted files; its
// CA injector then fills caBundle.
func Example() {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		fmt.Println(err)
		return
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	const ns, secret = "sluice-system", "sluice-webhook-certs"

	reloader, err := certs.NewReloader(cs, certs.ReloaderOptions{
		Namespace: ns, SecretName: secret, Registerer: metrics.Registry,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	rotator, err := certs.NewRotator(cs, certs.RotatorOptions{
		Namespace: ns, SecretName: secret,
		DNSNames:           certs.ServiceDNSNames("sluice-webhook", ns),
		MutatingWebhooks:   []string{"sluice-mutating"},
		ValidatingWebhooks: []string{"sluice-validating"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		LeaderElection: true, LeaderElectionID: "sluice-controller",
		WebhookServer: webhook.NewServer(webhook.Options{
			Port:    9443,
			TLSOpts: []func(*tls.Config){reloader.ConfigureTLS},
		}),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, add := range []func() error{
		func() error { return mgr.Add(reloader) },
		func() error { return mgr.Add(rotator) },
		func() error { return mgr.AddReadyzCheck("certificates", reloader.Checker) },
	} {
		if err := add(); err != nil {
			fmt.Println(err)
			return
		}
	}
}
