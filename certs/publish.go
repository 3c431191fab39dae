package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// CAConfigMapName is the ConfigMap that holds Sluice's CA bundle in every
// namespace, under key ca.crt (like kube-root-ca.crt), so that xDS clients
// can mount it to verify Sluice's serving certificate.
const CAConfigMapName = "sluice-ca"

// PublisherOptions configure a [Publisher].
type PublisherOptions struct {
	// Namespace and SecretName locate the certificate Secret whose ca.crt
	// is published. Required.
	Namespace  string
	SecretName string
	// CheckInterval is the period of a full pass even without events.
	// Default [DefaultCheckInterval].
	CheckInterval time.Duration
	// Logger receives progress and errors; when unset, the logger of the
	// context passed to Start is used.
	Logger logr.Logger
}

// Publisher keeps ConfigMap [CAConfigMapName] in every namespace equal to
// the trust bundle of the certificate Secret (current and previous CAs,
// so clients keep verifying through a CA rotation). It needs leader
// election: only the leader writes.
type Publisher struct {
	cs   kubernetes.Interface
	opts PublisherOptions
}

var (
	_ manager.Runnable               = (*Publisher)(nil)
	_ manager.LeaderElectionRunnable = (*Publisher)(nil)
)

// NewPublisher validates opts and returns a Publisher that does nothing
// until Start.
func NewPublisher(cs kubernetes.Interface, opts PublisherOptions) (*Publisher, error) {
	if cs == nil || opts.Namespace == "" || opts.SecretName == "" {
		return nil, errors.New("CA publisher: a client, and the namespace and name of the certificate secret are required")
	}
	if opts.CheckInterval < 0 {
		return nil, fmt.Errorf("CA publisher: check interval %s must not be negative", opts.CheckInterval)
	}
	if opts.CheckInterval == 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	return &Publisher{cs: cs, opts: opts}, nil
}

// NeedLeaderElection reports true: only the leader writes.
func (p *Publisher) NeedLeaderElection() bool { return true }

// Start publishes at once, then on every change of the Secret, of a
// namespace or of a published ConfigMap, and every CheckInterval, until
// ctx ends.
func (p *Publisher) Start(ctx context.Context) error {
	log := p.opts.Logger
	if log.GetSink() == nil {
		log = logr.FromContextOrDiscard(ctx)
	}
	trigger, poke := newTrigger()
	secretInf := secretInformer(p.cs, p.opts.Namespace, p.opts.SecretName)
	nsInf := corev1informers.NewNamespaceInformer(p.cs, informerResync, cache.Indexers{})
	cmInf := corev1informers.NewFilteredConfigMapInformer(p.cs, metav1.NamespaceAll, informerResync, cache.Indexers{},
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", CAConfigMapName).String()
		})
	isSecret := func(o metav1.Object) bool {
		return o.GetNamespace() == p.opts.Namespace && o.GetName() == p.opts.SecretName
	}
	for inf, match := range map[cache.SharedIndexInformer]func(metav1.Object) bool{
		secretInf: isSecret,
		nsInf:     func(metav1.Object) bool { return true },
		cmInf:     func(o metav1.Object) bool { return o.GetName() == CAConfigMapName },
	} {
		if err := onObject(inf, match, poke); err != nil {
			return fmt.Errorf("CA publisher: watch: %w", err)
		}
	}
	runInformers(ctx, secretInf, nsInf, cmInf)
	if !cache.WaitForCacheSync(ctx.Done(), secretInf.HasSynced, nsInf.HasSynced, cmInf.HasSynced) {
		return nil
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-trigger:
		case <-timer.C:
		}
		if err := p.publish(ctx, secretInf.GetStore(), nsInf.GetStore(), cmInf.GetStore()); err != nil && ctx.Err() == nil {
			log.Error(err, "CA bundle not published in every namespace; retrying")
			timer.Reset(min(5*time.Second, p.opts.CheckInterval))
			continue
		}
		timer.Reset(p.opts.CheckInterval)
	}
}

// publish writes the bundle into every namespace whose ConfigMap differs.
func (p *Publisher) publish(ctx context.Context, secrets, namespaces, configMaps cache.Store) error {
	obj, ok, err := secrets.GetByKey(p.opts.Namespace + "/" + p.opts.SecretName)
	if err != nil || !ok {
		return err // no Secret yet: the Rotator or cert-manager writes it
	}
	ca := obj.(*corev1.Secret).Data[SecretKeyCACert]
	if len(ca) == 0 {
		return nil
	}
	var errs []error
	for _, o := range namespaces.List() {
		ns := o.(*corev1.Namespace)
		if ns.Status.Phase == corev1.NamespaceTerminating {
			continue
		}
		cur, found, err := configMaps.GetByKey(ns.Name + "/" + CAConfigMapName)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if found && bytes.Equal([]byte(cur.(*corev1.ConfigMap).Data[SecretKeyCACert]), ca) {
			continue
		}
		if err := p.write(ctx, ns.Name, ca, cur, found); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *Publisher) write(ctx context.Context, namespace string, ca []byte, cur any, found bool) error {
	api := p.cs.CoreV1().ConfigMaps(namespace)
	if !found {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: CAConfigMapName, Labels: map[string]string{ManagedByLabel: "sluice"}},
			Data:       map[string]string{SecretKeyCACert: string(ca)},
		}
		if _, err := api.Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create configmap %s/%s: %w", namespace, CAConfigMapName, err)
		}
		return nil
	}
	cm := cur.(*corev1.ConfigMap).DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[SecretKeyCACert] = string(ca)
	if _, err := api.Update(ctx, cm, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("update configmap %s/%s: %w", namespace, CAConfigMapName, err)
	}
	return nil
}
