package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// DefaultPollInterval is how often a file-mode [Reloader] re-reads its files.
const DefaultPollInterval = 10 * time.Second

// ReloaderOptions configure a [Reloader]. Exactly one source is used:
//
//   - Secret mode (SecretName set): the Reloader watches the Secret, whether
//     a [Rotator] or cert-manager writes it.
//   - File mode (CertFile set): the Reloader polls files, e.g. a mounted
//     cert-manager Secret. Kubelet replaces mounted files by an atomic
//     symlink swap, which file-change notifications report unreliably, so
//     the files are re-read every PollInterval instead.
type ReloaderOptions struct {
	// Namespace and SecretName select Secret mode.
	Namespace  string
	SecretName string
	// CertFile and KeyFile select file mode; CAFile is optional and only
	// feeds the cert="ca" metric.
	CertFile string
	KeyFile  string
	CAFile   string
	// PollInterval is the file-mode re-read period. Default
	// [DefaultPollInterval].
	PollInterval time.Duration
	// Registerer receives the sluice_cert_expiry_timestamp_seconds gauge;
	// nil registers nothing. Several Reloaders may share one Registerer.
	Registerer prometheus.Registerer
	// Logger receives reloads and errors; when unset, the logger of the
	// context passed to Start is used.
	Logger logr.Logger
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Reloader serves the current certificate of the Secret or files to TLS
// handshakes. Every replica runs one, leader or not. A new certificate
// applies to the next handshake: no restart, and open connections are not
// disturbed. Unusable content never replaces a good certificate.
type Reloader struct {
	cs     kubernetes.Interface
	opts   ReloaderOptions
	source string
	expiry *prometheus.GaugeVec

	current atomic.Pointer[tls.Certificate]
	// cas is the pool of the CA bundle loaded with the certificate, nil
	// while none was.
	cas atomic.Pointer[x509.CertPool]

	mu      sync.Mutex
	lastErr error
}

var (
	_ manager.Runnable               = (*Reloader)(nil)
	_ manager.LeaderElectionRunnable = (*Reloader)(nil)
	_ healthz.Checker                = (*Reloader)(nil).Checker
)

// NewReloader validates opts and returns a Reloader that holds no
// certificate until Start has loaded one. cs is required in Secret mode and
// ignored in file mode.
func NewReloader(cs kubernetes.Interface, opts ReloaderOptions) (*Reloader, error) {
	var errs []error
	secretMode, fileMode := opts.SecretName != "", opts.CertFile != ""
	switch {
	case secretMode && fileMode:
		errs = append(errs, fmt.Errorf("choose one source: secret %q or file %q, not both", opts.SecretName, opts.CertFile))
	case !secretMode && !fileMode:
		errs = append(errs, errors.New("a source is required: a secret name, or certificate and key files"))
	case secretMode && (opts.Namespace == "" || cs == nil):
		errs = append(errs, fmt.Errorf("secret %q needs a namespace and a Kubernetes client", opts.SecretName))
	case fileMode && opts.KeyFile == "":
		errs = append(errs, fmt.Errorf("certificate file %q needs a key file", opts.CertFile))
	}
	if opts.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("poll interval %s must not be negative", opts.PollInterval))
	}
	expiry, err := registerExpiry(opts.Registerer)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("certificate reloader: %w", err)
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	source := "file " + opts.CertFile
	if secretMode {
		source = "secret " + opts.Namespace + "/" + opts.SecretName
	}
	return &Reloader{cs: cs, opts: opts, source: source, expiry: expiry}, nil
}

// NeedLeaderElection reports false: every replica serves.
func (r *Reloader) NeedLeaderElection() bool { return false }

// Start loads the certificate and keeps it current until ctx ends. It
// returns nil when ctx ends and an error only if it cannot start watching.
func (r *Reloader) Start(ctx context.Context) error {
	log := r.opts.Logger
	if log.GetSink() == nil {
		log = logr.FromContextOrDiscard(ctx)
	}
	log = log.WithValues("source", r.source)
	if r.opts.SecretName != "" {
		return r.watchSecret(ctx, log)
	}
	return r.pollFiles(ctx, log)
}

// GetCertificate returns the current serving certificate; use it as
// tls.Config.GetCertificate. Before the first load it fails, so the
// handshake fails and readiness (see Ready) is false.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := r.current.Load(); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no serving certificate loaded yet from %s", r.source)
}

// ClientCAs returns the CAs of the bundle loaded with the certificate
// (current and previous), to verify client certificates they issued; nil
// while no bundle was loaded (file mode without a CA file, or an issuer
// that publishes none).
func (r *Reloader) ClientCAs() *x509.CertPool { return r.cas.Load() }

// ConfigureTLS points cfg at GetCertificate. Pass it in controller-runtime's
// webhook.Options.TLSOpts; the webhook server then skips its own file
// watcher.
func (r *Reloader) ConfigureTLS(cfg *tls.Config) {
	cfg.GetCertificate = r.GetCertificate
}

// Ready returns nil once a certificate is loaded and while it has not
// expired, else an error saying why, including the last load error.
func (r *Reloader) Ready() error {
	c := r.current.Load()
	r.mu.Lock()
	lastErr := r.lastErr
	r.mu.Unlock()
	switch {
	case c == nil && lastErr != nil:
		return fmt.Errorf("no serving certificate loaded from %s: %w", r.source, lastErr)
	case c == nil:
		return fmt.Errorf("no serving certificate loaded yet from %s", r.source)
	case !r.opts.Now().Before(c.Leaf.NotAfter):
		return fmt.Errorf("serving certificate from %s expired at %s", r.source, c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// Checker is Ready in the form of a controller-runtime healthz.Checker, for
// mgr.AddReadyzCheck.
func (r *Reloader) Checker(*http.Request) error { return r.Ready() }

// load parses a key pair and, if usable, makes it current. caPEM may be
// empty; it only feeds the cert="ca" metric. It returns whether the
// certificate changed.
func (r *Reloader) load(certPEM, keyPEM, caPEM []byte) (bool, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil && pair.Leaf == nil {
		err = errors.New("key pair has no leaf certificate")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastErr = err
	if err != nil {
		return false, fmt.Errorf("load serving certificate from %s: %w", r.source, err)
	}
	changed := false
	if old := r.current.Load(); old == nil || !old.Leaf.Equal(pair.Leaf) {
		r.current.Store(&pair)
		r.expiry.WithLabelValues(CertLabelServing).Set(float64(pair.Leaf.NotAfter.Unix()))
		changed = true
	}
	if len(caPEM) == 0 {
		return changed, nil
	}
	cas, err := ParseCertificates(caPEM)
	if err != nil {
		return changed, fmt.Errorf("serving certificate loaded, but the CA bundle from %s is unusable: %w", r.source, err)
	}
	pool := x509.NewCertPool()
	for _, ca := range cas {
		if ca.IsCA {
			pool.AddCert(ca)
		}
	}
	r.cas.Store(pool)
	r.expiry.WithLabelValues(CertLabelCA).Set(float64(issuerOf(r.current.Load().Leaf, cas).NotAfter.Unix()))
	return changed, nil
}

// issuerOf returns the CA of cas that signed leaf, or the first CA when none
// did (a foreign issuer, e.g. an intermediate not in the bundle).
func issuerOf(leaf *x509.Certificate, cas []*x509.Certificate) *x509.Certificate {
	for _, ca := range cas {
		if leaf.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return cas[0]
}
