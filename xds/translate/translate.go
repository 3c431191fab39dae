package translate

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-dev/sluice/router"
)

// Options tune the generated resources. The zero value is valid and means the
// documented defaults.
type Options struct {
	// ConnectTimeout is the upstream connect timeout of every cluster
	// (Envoy only; proxyless gRPC ignores it). Default 5s, Envoy's own.
	ConnectTimeout time.Duration
	// SidecarAddress is the IP the Envoy outbound listeners bind. Default
	// "0.0.0.0".
	SidecarAddress string
	// ClusterDomain is the Kubernetes cluster domain used in the
	// fully-qualified virtual host names. Default "cluster.local".
	ClusterDomain string
}

// Defaults of [Options].
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultSidecarAddress = "0.0.0.0"
	DefaultClusterDomain  = "cluster.local"
)

// withDefaults fills in zero fields and checks the others.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	} else if o.ConnectTimeout < time.Millisecond {
		errs = append(errs, fmt.Errorf("connect timeout %v: want at least 1ms", o.ConnectTimeout))
	}
	if o.SidecarAddress == "" {
		o.SidecarAddress = DefaultSidecarAddress
	} else if _, err := netip.ParseAddr(o.SidecarAddress); err != nil {
		errs = append(errs, fmt.Errorf("sidecar address %q is not an IP address", o.SidecarAddress))
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = DefaultClusterDomain
	} else if strings.HasPrefix(o.ClusterDomain, ".") || strings.HasSuffix(o.ClusterDomain, ".") || strings.ContainsAny(o.ClusterDomain, " /:*") {
		errs = append(errs, fmt.Errorf("cluster domain %q: want a domain such as %q", o.ClusterDomain, DefaultClusterDomain))
	}
	return o, errors.Join(errs...)
}

// Translate turns a plan into the resources of both client flavours:
//
//   - proxyless gRPC: for every service with a gRPC port, a Listener
//     "<service>.<namespace>" (the lowest-numbered gRPC port, what the target
//     xds:///<service>.<namespace> resolves) and "<service>.<namespace>:<port>"
//     for each gRPC port, each with an api_listener whose route configuration
//     "<service>.<namespace>:<port>" has one virtual host matching any
//     authority;
//   - Envoy sidecars: for every namespace that has services or is named a
//     consumer, and every port number its visible services use, a Listener
//     "outbound_<port>/<namespace>" on SidecarAddress:<port> and its
//     RouteConfiguration of the same name, with one virtual host per
//     service that namespace may see on that port, answering
//     "<service>.<namespace>" and "<service>.<namespace>.svc.<cluster
//     domain>", with and without ":<port>", and the bare "<service>" only
//     for the namespace's own services;
//   - for every plan cluster, an EDS Cluster and its ClusterLoadAssignment.
//
// Every resource carries its [Access]: who may see it.
//
// It refuses a plan that fails [router.Plan.Validate], and it checks every
// resource with ValidateAll, so what it returns can be published as is.
func Translate(plan router.Plan, opts Options) (Resources, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return Resources{}, fmt.Errorf("translate: options: %w", err)
	}
	if err := plan.Validate(); err != nil {
		return Resources{}, fmt.Errorf("translate: invalid plan: %w", err)
	}
	res := Resources{variants: map[Form]map[string]proto.Message{}, limits: map[Form][]Limit{}}
	for _, f := range Forms[1:] {
		res.variants[f] = map[string]proto.Message{}
	}
	var errs []error
	add := func(typeURL, name string, m proto.Message, a Access) {
		if err := res.add(typeURL, name, m, a); err != nil {
			errs = append(errs, err)
		}
	}
	consumers := map[[2]string]router.Consumers{}
	for _, s := range plan.Services {
		consumers[[2]string{s.Namespace, s.Name}] = s.Consumers
	}
	for _, c := range plan.Clusters {
		a := Access{Namespace: c.ID.Namespace, Consumers: consumers[[2]string{c.ID.Namespace, c.ID.Service}]}
		if c.External != nil {
			// The client resolves the name: no ClusterLoadAssignment.
			cl, err := externalCluster(c, opts)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			add(resource.ClusterType, c.Name, cl, a)
			continue
		}
		cl, err := cluster(c, opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		add(resource.ClusterType, c.Name, cl, a)
		add(resource.EndpointType, c.Name, loadAssignment(c), a)
	}
	for _, form := range Forms {
		rs, limits, err := formResources(plan, opts, form)
		if err != nil {
			errs = append(errs, fmt.Errorf("form %s: %w", form, err))
			continue
		}
		slices.SortFunc(limits, func(a, b Limit) int { return cmp.Or(cmp.Compare(a.Route, b.Route), cmp.Compare(a.Feature, b.Feature)) })
		res.limits[form] = limits
		for _, r := range rs {
			if form == FormCurrent {
				add(r.typeURL, r.name, r.msg, r.access)
				continue
			}
			if r.typeURL != resource.RouteType {
				continue // listeners are the same in every form
			}
			if cur, ok := res.Get(r.typeURL, r.name); ok && proto.Equal(cur, r.msg) {
				continue
			}
			res.variants[form][r.name] = r.msg
		}
	}
	if len(errs) > 0 {
		return Resources{}, fmt.Errorf("translate: %w", errors.Join(errs...))
	}
	if err := validateAll(res); err != nil {
		return Resources{}, fmt.Errorf("translate: generated resource fails validation: %w", err)
	}
	if err := res.seal(); err != nil {
		return Resources{}, fmt.Errorf("translate: %w", err)
	}
	return res, nil
}

// formResources returns the listeners and route configurations of both
// client flavours in one form, and the features the form's proxyless
// clients cannot express.
func formResources(plan router.Plan, opts Options, form Form) ([]named, []Limit, error) {
	var out []named
	var limits []Limit
	var errs []error
	for _, s := range plan.Services {
		rs, ls, err := grpcResources(s, form)
		if err != nil {
			errs = append(errs, err)
		}
		out = append(out, rs...)
		limits = append(limits, ls...)
	}
	rs, err := sidecarResources(plan, opts, form)
	if err != nil {
		errs = append(errs, err)
	}
	out = append(out, rs...)
	return out, limits, errors.Join(errs...)
}

// validateAll runs the protoc-gen-validate rules of every resource, the
// variants of every form included.
func validateAll(res Resources) error {
	var errs []error
	for _, f := range Forms[1:] {
		for name, m := range res.variants[f] {
			if err := m.(interface{ ValidateAll() error }).ValidateAll(); err != nil {
				errs = append(errs, fmt.Errorf("form %s: RouteConfiguration %q: %w", f, name, err))
			}
		}
	}
	for _, t := range res.Types() {
		for _, name := range res.Names(t) {
			m, _ := res.Get(t, name)
			v, ok := m.(interface{ ValidateAll() error })
			if !ok {
				errs = append(errs, fmt.Errorf("%s %q has no validation rules", shortType(t), name))
				continue
			}
			if err := v.ValidateAll(); err != nil {
				errs = append(errs, fmt.Errorf("%s %q: %w", shortType(t), name, err))
			}
		}
	}
	return errors.Join(errs...)
}
