package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// ExternalDependency is a gRPC service outside the cluster that a
// namespace's clients call through Sluice's routes, with what their own
// load reports say of it.
type ExternalDependency struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Target is what the clients dial, xds:///<name>.<namespace>.
	Target string `json:"target"`
	// Address is the DNS name and port called.
	Address string `json:"address"`
	// Callers are the namespace's reporting callers (usually the namespace
	// itself), as for a service.
	Callers      []Caller `json:"callers"`
	CallersSince *string  `json:"callersSince,omitempty"`
	Requests     int64    `json:"requests"`
	Errors       int64    `json:"errors"`
	ErrorRate    string   `json:"errorRate"`
	RequestRate  string   `json:"requestRate,omitempty"`
	// RecentErrorRate covers the last window only.
	RecentErrorRate string `json:"recentErrorRate,omitempty"`
}

// readExternals reads the namespace's external dependencies (Services
// annotated sluice.dev/external) and the load Sluice wrote for them; what
// the reader may not read becomes a problem.
func (s *source) readExternals(ctx context.Context, d *namespaceData) error {
	var svcs corev1.ServiceList
	if err := s.list(ctx, d.Namespace, &svcs, "services: no external dependencies", &d.Problems); err != nil {
		return err
	}
	for _, svc := range svcs.Items {
		if _, ok := svc.Annotations[v1alpha1.AnnotationExternal]; ok {
			d.Externals = append(d.Externals, svc)
		}
	}
	if len(d.Externals) == 0 {
		return nil
	}
	var cm corev1.ConfigMap
	switch err := s.client.Get(ctx, types.NamespacedName{Namespace: d.Namespace, Name: v1alpha1.ExternalLoadConfigMap}, &cm); {
	case apierrors.IsNotFound(err):
	case apierrors.IsForbidden(err):
		d.Problems = append(d.Problems, d.Namespace+": you may not get ConfigMap "+v1alpha1.ExternalLoadConfigMap+": no figures for external dependencies")
	case err != nil:
		return fmt.Errorf("get ConfigMap %s: %w", v1alpha1.ExternalLoadConfigMap, err)
	default:
		d.ExternalLoad = cm.Data
	}
	return nil
}

// externals builds the view of d's external dependencies, sorted by name.
func (d namespaceData) externals() []ExternalDependency {
	out := make([]ExternalDependency, 0, len(d.Externals))
	for _, svc := range d.Externals {
		e := ExternalDependency{Namespace: svc.Namespace, Name: svc.Name, Target: "xds:///" + svc.Name + "." + svc.Namespace,
			Address: svc.Spec.ExternalName, Callers: []Caller{}, ErrorRate: "–"}
		if len(svc.Spec.Ports) > 0 {
			e.Address += ":" + strconv.Itoa(int(svc.Spec.Ports[0].Port))
			for _, p := range svc.Spec.Ports {
				if p.Name == "grpc" {
					e.Address = svc.Spec.ExternalName + ":" + strconv.Itoa(int(p.Port))
				}
			}
		}
		var st v1alpha1.CallerStatus
		if raw, ok := d.ExternalLoad[svc.Name]; ok && json.Unmarshal([]byte(raw), &st) == nil {
			e.Callers, _ = callerViews(&st)
			since := st.Since.Time.Format("2006-01-02T15:04:05Z07:00")
			e.CallersSince = &since
			var recent, recentErrors int64
			for _, c := range st.Callers {
				e.Requests, e.Errors = e.Requests+c.Requests, e.Errors+c.Errors
				recent, recentErrors = recent+c.RecentRequests, recentErrors+c.RecentErrors
			}
			e.ErrorRate = ratio(e.Errors, e.Requests)
			if w := st.Window.Duration; w > 0 {
				e.RequestRate = strconv.FormatFloat(float64(recent)/w.Seconds(), 'f', 1, 64) + "/s"
				if recent > 0 {
					e.RecentErrorRate = ratio(recentErrors, recent)
				}
			}
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
