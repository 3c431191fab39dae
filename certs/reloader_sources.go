package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// watchSecret loads the Secret on every add or update event until ctx ends.
// A deleted Secret leaves the current certificate in place: the Rotator or
// cert-manager will write a new one, and until then the old one still
// serves.
func (r *Reloader) watchSecret(ctx context.Context, log logr.Logger) error {
	inf := secretInformer(r.cs, r.opts.Namespace, r.opts.SecretName)
	match := func(o metav1.Object) bool {
		return o.GetNamespace() == r.opts.Namespace && o.GetName() == r.opts.SecretName
	}
	err := onObject(inf, match, func(obj any, deleted bool) {
		if deleted {
			log.Info("certificate secret deleted; keeping the current certificate until a new one is written")
			return
		}
		sec, ok := obj.(*corev1.Secret)
		if !ok {
			return
		}
		changed, err := r.load(sec.Data[SecretKeyCert], sec.Data[SecretKeyKey], sec.Data[SecretKeyCACert])
		r.report(log, changed, err)
	})
	if err != nil {
		return fmt.Errorf("watch certificate secret: %w", err)
	}
	runInformers(ctx, inf)
	<-ctx.Done()
	return nil
}

// pollFiles re-reads the files every PollInterval until ctx ends, loading
// them when their content changed.
func (r *Reloader) pollFiles(ctx context.Context, log logr.Logger) error {
	var last [3][]byte
	ticker := time.NewTicker(r.opts.PollInterval)
	defer ticker.Stop()
	for {
		cur, err := r.readFiles()
		if err != nil {
			r.mu.Lock()
			r.lastErr = err
			r.mu.Unlock()
			log.Error(err, "cannot read certificate files; keeping the current certificate")
		} else if !bytes.Equal(cur[0], last[0]) || !bytes.Equal(cur[1], last[1]) || !bytes.Equal(cur[2], last[2]) {
			// Content is remembered even when it fails to load: a
			// half-written pair is retried once the files change again,
			// and a broken pair is reported once, not on every tick.
			last = cur
			changed, err := r.load(cur[0], cur[1], cur[2])
			r.report(log, changed, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// readFiles returns the content of the certificate, key and CA files; the
// CA content is nil when no CA file is configured.
func (r *Reloader) readFiles() ([3][]byte, error) {
	var out [3][]byte
	for i, path := range []string{r.opts.CertFile, r.opts.KeyFile, r.opts.CAFile} {
		if path == "" {
			continue
		}
		b, err := os.ReadFile(path)
		// The CA file only feeds a metric; issuers that publish no CA
		// (ACME, for one) must not stop the serving certificate loading.
		if err != nil && !(path == r.opts.CAFile && errors.Is(err, fs.ErrNotExist)) {
			return out, fmt.Errorf("read certificate files: %w", err)
		}
		out[i] = b
	}
	return out, nil
}

// report logs the outcome of a load.
func (r *Reloader) report(log logr.Logger, changed bool, err error) {
	if err != nil {
		log.Error(err, "certificate not (fully) loaded; the previous one, if any, keeps serving")
	}
	if changed {
		if c := r.current.Load(); c != nil {
			log.Info("serving certificate loaded", "serial", c.Leaf.SerialNumber.String(), "notAfter", c.Leaf.NotAfter.UTC())
		}
	}
}
