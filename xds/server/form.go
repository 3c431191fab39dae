package server

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-dev/sluice/xds/translate"
)

// Client forms.
//
// Generations of xDS clients read some fields differently (docs/traffic.md,
// "Client compatibility"), so route configurations can come in several
// forms. Options.FormOf picks a stream's form from its Node; each form other
// than the default has a LinearCache of its own for route configurations,
// so every resource is still serialized once per change and form, never
// once per proxy. Listeners, clusters and endpoints are the same for all.
//
// Waits and ACK tracking speak the default form's content versions: a
// target names the default content and, for each form, the content that
// form's streams must carry instead.

// Variant is how the route configurations of one form differ from the
// default ones. The default form's entry (key "") carries only Limits.
type Variant struct {
	// Routes replace, for streams of the form, the default route
	// configurations of the same name. Each must name a route
	// configuration of the default set.
	Routes map[string]proto.Message
	// Limits lists, per route configuration name, what the form's clients
	// cannot express there and what they get instead; shown in
	// ProxyStatus.Limits of the streams subscribed to that route.
	Limits map[string][]string
}

// formSep is reserved: form names cannot contain it.
const formSep = "."

// checkForms validates the configured form names.
func checkForms(forms []string) error {
	var errs []error
	seen := map[string]bool{}
	for _, f := range forms {
		switch {
		case f == "":
			errs = append(errs, errors.New("empty form name (the default form needs no name)"))
		case strings.ContainsAny(f, formSep+"#"):
			errs = append(errs, fmt.Errorf("form %q: names cannot contain %q or '#'", f, formSep))
		case seen[f]:
			errs = append(errs, fmt.Errorf("form %q listed twice", f))
		}
		seen[f] = true
	}
	return errors.Join(errs...)
}

// histKey is the history key of a type in a form ("" is the default form).
func histKey(typeURL, form string) string {
	if form == "" {
		return typeURL
	}
	return typeURL + "#" + form
}

// cacheKey is the MuxCache key serving typeURL to a stream of form.
func cacheKey(typeURL, form string) string {
	if form == "" || typeURL != resource.RouteType {
		return typeURL
	}
	return histKey(typeURL, form)
}

// formOf returns the form of a node and why; "" for the default form or a
// form the server does not serve.
func (s *Server) formOf(node *corev3.Node) (string, string) {
	if s.classify == nil || node == nil {
		return "", ""
	}
	f, why := s.classify(node)
	if f != "" && !s.forms[f] {
		return "", fmt.Sprintf("%s (form %q is not served: default form)", why, f)
	}
	return f, why
}

// formChecked is the full route set of one form: the default routes with
// the variant's replacements, and their content versions.
type formChecked struct {
	routes   map[string]proto.Message
	versions map[string]string
	limits   map[string][]string
}

// checkVariants validates the variants against the checked default set:
// served forms only, route configurations only, names of the default set,
// ValidateAll and closed references.
func (s *Server) checkVariants(c checked, variants map[string]Variant) (map[string]formChecked, error) {
	out := map[string]formChecked{}
	var errs []error
	for f := range s.forms {
		v := variants[f]
		fc := formChecked{
			routes:   maps.Clone(c.resources[resource.RouteType]),
			versions: maps.Clone(c.versions[resource.RouteType]),
			limits:   map[string][]string{},
		}
		for name, ls := range v.Limits {
			fc.limits[name] = append([]string(nil), ls...)
		}
		for _, name := range sortedKeys(v.Routes) {
			m := v.Routes[name]
			if _, ok := c.resources[resource.RouteType][name]; !ok {
				errs = append(errs, fmt.Errorf("form %s: route %q replaces no default route", f, name))
				continue
			}
			if err := checkOne(resource.RouteType, name, m); err != nil {
				errs = append(errs, fmt.Errorf("form %s: route %q: %w", f, name, err))
				continue
			}
			ver, err := ContentVersion(m)
			if err != nil {
				errs = append(errs, fmt.Errorf("form %s: route %q: %w", f, name, err))
				continue
			}
			fc.routes[name] = m
			fc.versions[name] = ver
		}
		full := maps.Clone(c.resources)
		full[resource.RouteType] = fc.routes
		for _, err := range checkReferences(full) {
			errs = append(errs, fmt.Errorf("form %s: %w", f, err))
		}
		out[f] = fc
	}
	if len(variants[""].Routes) > 0 {
		errs = append(errs, errors.New("the default form takes no route variants, only limits"))
	}
	for _, f := range sortedKeys(variants) {
		if f != "" && !s.forms[f] {
			errs = append(errs, fmt.Errorf("form %q is not served (Options.Forms)", f))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid xDS resources, nothing published: %w", errors.Join(errs...))
	}
	return out, nil
}

// targetOf returns the target for the content version of a resource,
// with the content each form carries instead when version is the current
// default content.
func (s *Server) targetOf(typeURL, name, version string) target {
	tg := target{typeURL: typeURL, name: name, version: version}
	if typeURL != resource.RouteType {
		return tg
	}
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	if s.published[typeURL][name] != version {
		return tg
	}
	for f, byName := range s.formPublished {
		if v, ok := byName[name]; ok && v != version {
			if tg.byForm == nil {
				tg.byForm = map[string]string{}
			}
			tg.byForm[f] = v
		}
	}
	return tg
}

// ClientForms are the forms New serves when Options.Forms and
// Options.FormOf are both unset: the translator's forms other than
// translate.FormCurrent, chosen by [ClientForm].
var ClientForms = func() []string {
	var out []string
	for _, f := range translate.Forms[1:] {
		out = append(out, string(f))
	}
	return out
}()

// ClientForm picks a node's form with translate.FormFor, from its
// user_agent_name and user_agent_version (or, for Envoy, the semantic
// version of user_agent_build_version). translate.FormCurrent is the
// default form "".
func ClientForm(node *corev3.Node) (string, string) {
	c := translate.Client{Name: node.GetUserAgentName(), Version: node.GetUserAgentVersion()}
	if v := node.GetUserAgentBuildVersion().GetVersion(); c.Version == "" && v != nil {
		c.Version = fmt.Sprintf("%d.%d.%d", v.GetMajorNumber(), v.GetMinorNumber(), v.GetPatch())
	}
	f, why := translate.FormFor(c)
	if f == translate.FormCurrent {
		return "", why
	}
	return string(f), why
}

// VariantsOf returns the route variants and limits of translated resources,
// per form, ready for [Server.UpdateVariants].
func VariantsOf(res translate.Resources) map[string]Variant {
	out := map[string]Variant{}
	for _, f := range translate.Forms {
		key := string(f)
		if f == translate.FormCurrent {
			key = ""
		}
		v := Variant{Limits: map[string][]string{}}
		if f != translate.FormCurrent {
			v.Routes = res.Variant(f)
		}
		for _, l := range res.Limits(f) {
			v.Limits[l.Route] = append(v.Limits[l.Route], l.String())
		}
		out[key] = v
	}
	return out
}

// FormVersion returns the content version published for typeURL/name in a
// form (ProxyStatus.Form; "" is the default form): what a proxy of that form
// carries once it is up to date.
func (s *Server) FormVersion(form, typeURL, name string) (string, bool) {
	s.pubMu.RLock()
	defer s.pubMu.RUnlock()
	if form != "" && typeURL == resource.RouteType {
		if byName, ok := s.formPublished[form]; ok {
			v, ok := byName[name]
			return v, ok
		}
	}
	v, ok := s.published[typeURL][name]
	return v, ok
}
