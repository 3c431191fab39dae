package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/xds/lrs/callers"
)

// externalWriter keeps, per namespace, the ConfigMap
// v1alpha1.ExternalLoadConfigMap with the load on each of its external
// dependencies: one data key per dependency, holding a CallerStatus as
// JSON. Each write is a merge patch of the keys that changed.
type externalWriter struct {
	since   map[callers.Service]time.Time
	prev    map[callers.Service]map[string]callers.Load
	prevAt  time.Time
	written map[callers.Service]*v1alpha1.CallerStatus
}

func newExternalWriter() *externalWriter {
	return &externalWriter{since: map[callers.Service]time.Time{}, written: map[callers.Service]*v1alpha1.CallerStatus{}}
}

// write writes the external dependencies' load now; it returns how many
// namespaces could not be written.
func (w *externalWriter) write(ctx context.Context, c client.Client, loads map[callers.Service]map[string]callers.Load, now time.Time) (int, error) {
	byNamespace := map[string]map[string]string{}
	for svc, l := range loads {
		since, ok := w.since[svc]
		if !ok {
			since = now
			w.since[svc] = now
		}
		var prev map[string]callers.Load
		if w.prev != nil {
			if prev = w.prev[svc]; prev == nil {
				prev = map[string]callers.Load{}
			}
		}
		st := callers.Status(l, prev, since, w.prevAt, now)
		if callers.Same(st, w.written[svc]) {
			continue
		}
		b, err := json.Marshal(st)
		if err != nil {
			return 0, fmt.Errorf("encode load of %s/%s: %w", svc.Namespace, svc.Name, err)
		}
		if byNamespace[svc.Namespace] == nil {
			byNamespace[svc.Namespace] = map[string]string{}
		}
		byNamespace[svc.Namespace][svc.Name] = string(b)
		w.written[svc] = st
	}
	w.prev, w.prevAt = loads, now
	for svc := range w.written {
		if _, ok := loads[svc]; !ok {
			delete(w.written, svc)
			delete(w.since, svc)
		}
	}
	var failed int
	var last error
	for ns, data := range byNamespace {
		if err := patchExternalLoad(ctx, c, ns, data); err != nil {
			failed++
			last = err
			// Written again at the next change.
			for name := range data {
				delete(w.written, callers.Service{Namespace: ns, Name: name})
			}
		}
	}
	return failed, last
}

// patchExternalLoad merges data into the namespace's ConfigMap, creating it
// if it is missing.
func patchExternalLoad(ctx context.Context, c client.Client, namespace string, data map[string]string) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: v1alpha1.ExternalLoadConfigMap}}
	body, err := json.Marshal(map[string]any{"data": data})
	if err != nil {
		return err
	}
	err = c.Patch(ctx, cm, client.RawPatch(types.MergePatchType, body))
	if apierrors.IsNotFound(err) {
		cm.Labels = map[string]string{"app.kubernetes.io/managed-by": "sluice"}
		cm.Data = data
		err = c.Create(ctx, cm)
	}
	if err != nil {
		return fmt.Errorf("write ConfigMap %s/%s: %w", namespace, v1alpha1.ExternalLoadConfigMap, err)
	}
	return nil
}
