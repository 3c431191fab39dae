package certs

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	certinformers "k8s.io/client-go/informers/certificates/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// ClientSignerName is the signer of xDS client certificates requested
// through the Kubernetes CSR API.
const ClientSignerName = "sluice.dev/xds-client"

// ClientSignerOptions configure a [ClientSigner].
type ClientSignerOptions struct {
	// Namespace and SecretName locate the certificate Secret whose CA
	// signs. Required.
	Namespace  string
	SecretName string
	// Validity of a certificate, shortened to the CSR's
	// expirationSeconds when that is less. Default
	// [DefaultClientCertValidity].
	Validity time.Duration
	// Logger receives decisions and errors; when unset, the logger of the
	// context passed to Start is used.
	Logger logr.Logger
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// ClientSigner approves and signs CertificateSigningRequests for signer
// [ClientSignerName]: only a ServiceAccount's request for a certificate
// naming exactly that ServiceAccount (common name
// system:serviceaccount:<namespace>:<name>, no other names) is approved;
// every other request for the signer is denied, saying why. The
// certificate proves that ServiceAccount on the xDS port. It needs leader
// election: only the leader signs.
type ClientSigner struct {
	cs   kubernetes.Interface
	opts ClientSignerOptions
}

var (
	_ manager.Runnable               = (*ClientSigner)(nil)
	_ manager.LeaderElectionRunnable = (*ClientSigner)(nil)
)

// NewClientSigner validates opts and returns a signer that does nothing
// until Start.
func NewClientSigner(cs kubernetes.Interface, opts ClientSignerOptions) (*ClientSigner, error) {
	if cs == nil || opts.Namespace == "" || opts.SecretName == "" {
		return nil, errors.New("client certificate signer: a client, and the namespace and name of the certificate secret are required")
	}
	if opts.Validity < 0 {
		return nil, fmt.Errorf("client certificate signer: validity %s must not be negative", opts.Validity)
	}
	if opts.Validity == 0 {
		opts.Validity = DefaultClientCertValidity
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &ClientSigner{cs: cs, opts: opts}, nil
}

// NeedLeaderElection reports true: only the leader signs.
func (s *ClientSigner) NeedLeaderElection() bool { return true }

// Start handles every pending request for the signer until ctx ends.
func (s *ClientSigner) Start(ctx context.Context) error {
	log := s.opts.Logger
	if log.GetSink() == nil {
		log = logr.FromContextOrDiscard(ctx)
	}
	pending := make(chan *certificatesv1.CertificateSigningRequest, 64)
	inf := certinformers.NewCertificateSigningRequestInformer(s.cs, informerResync, cache.Indexers{})
	mine := func(o metav1.Object) bool {
		csr, ok := o.(*certificatesv1.CertificateSigningRequest)
		return ok && csr.Spec.SignerName == ClientSignerName && isPending(csr)
	}
	err := onObject(inf, mine, func(obj any, deleted bool) {
		if !deleted {
			select {
			case pending <- obj.(*certificatesv1.CertificateSigningRequest):
			case <-ctx.Done():
			}
		}
	})
	if err != nil {
		return fmt.Errorf("client certificate signer: watch: %w", err)
	}
	runInformers(ctx, inf)
	for {
		select {
		case <-ctx.Done():
			return nil
		case csr := <-pending:
			if err := s.handle(ctx, csr.DeepCopy(), log); err != nil && ctx.Err() == nil {
				// The informer's resync brings it back.
				log.Error(err, "client certificate request not handled", "csr", csr.Name)
			}
		}
	}
}

// isPending reports whether a request is neither decided nor signed.
func isPending(csr *certificatesv1.CertificateSigningRequest) bool {
	if len(csr.Status.Certificate) > 0 {
		return false
	}
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
			return false
		}
	}
	return true
}

// handle decides one request and, when approved, signs it.
func (s *ClientSigner) handle(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, log logr.Logger) error {
	api := s.cs.CertificatesV1().CertificateSigningRequests()
	req, problem := checkClientRequest(csr)
	if problem != "" {
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue,
			Reason: "SluiceXDSClientRules", Message: problem,
		})
		if _, err := api.UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("deny %s: %w", csr.Name, err)
		}
		log.Info("denied a client certificate request", "csr", csr.Name, "user", csr.Spec.Username, "reason", problem)
		return nil
	}
	if !approved(csr) {
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
			Reason: "SluiceXDSClient", Message: "a ServiceAccount requested a certificate naming itself",
		})
		updated, err := api.UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("approve %s: %w", csr.Name, err)
		}
		csr = updated
	}
	sec, err := s.cs.CoreV1().Secrets(s.opts.Namespace).Get(ctx, s.opts.SecretName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read the CA: %w", err)
	}
	validity := s.opts.Validity
	if e := csr.Spec.ExpirationSeconds; e != nil && time.Duration(*e)*time.Second < validity {
		validity = time.Duration(*e) * time.Second
	}
	certPEM, err := SignClient(BundleFromSecretData(sec.Data), req, s.opts.Now(), validity)
	if err != nil {
		return err
	}
	csr.Status.Certificate = certPEM
	if _, err := api.UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("issue %s: %w", csr.Name, err)
	}
	log.Info("issued a client certificate", "csr", csr.Name, "user", csr.Spec.Username, "validity", validity)
	return nil
}

func approved(csr *certificatesv1.CertificateSigningRequest) bool {
	return slices.ContainsFunc(csr.Status.Conditions, func(c certificatesv1.CertificateSigningRequestCondition) bool {
		return c.Type == certificatesv1.CertificateApproved && c.Status == corev1.ConditionTrue
	})
}

// checkClientRequest returns the parsed request when it follows the rules,
// else why not.
func checkClientRequest(csr *certificatesv1.CertificateSigningRequest) (*x509.Certificate, string) {
	user := csr.Spec.Username
	if _, _, err := serviceaccount.SplitUsername(user); err != nil {
		return nil, fmt.Sprintf("requested by %q, not a ServiceAccount: only a ServiceAccount may request a certificate, for itself", truncateText(user, 100))
	}
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, "spec.request is not a PEM certificate request"
	}
	r, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, "unparsable certificate request: " + truncateText(err.Error(), 200)
	}
	if err := r.CheckSignature(); err != nil {
		return nil, "the request's signature does not verify"
	}
	switch {
	case r.Subject.CommonName != user:
		return nil, fmt.Sprintf("the common name %q is not the requester %q", truncateText(r.Subject.CommonName, 100), user)
	case len(r.DNSNames)+len(r.IPAddresses)+len(r.URIs)+len(r.EmailAddresses) > 0:
		return nil, "the request names DNS names, IPs, URIs or e-mail addresses; only the common name is signed"
	}
	for _, u := range csr.Spec.Usages {
		if u != certificatesv1.UsageClientAuth && u != certificatesv1.UsageDigitalSignature && u != certificatesv1.UsageKeyEncipherment {
			return nil, fmt.Sprintf("usage %q: only client auth is signed", u)
		}
	}
	return &x509.Certificate{PublicKey: r.PublicKey, Subject: r.Subject}, ""
}

// truncateText shortens s to at most n bytes on a rune boundary.
func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
