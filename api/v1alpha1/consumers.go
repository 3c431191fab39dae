package v1alpha1

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sluice-dev/sluice/router"
)

// syntaxConsumers is the accepted syntax of AnnotationConsumers.
const syntaxConsumers = `comma-separated namespace names, or "*" alone for every namespace, e.g. "frontend,payments"`

// maxConsumers bounds the namespaces one annotation may name.
const maxConsumers = 256

// ParseConsumers reads the value of AnnotationConsumers: the namespaces,
// besides the Deployment's own, whose proxies may see and call the service
// over xDS. "*" alone grants every namespace; an empty value grants none.
// Spaces around names are ignored; names must be DNS-1123 labels.
func ParseConsumers(v string) (router.Consumers, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return router.Consumers{}, nil
	}
	if v == "*" {
		return router.Consumers{All: true}, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) > maxConsumers {
		return router.Consumers{}, fmt.Errorf("%d namespaces, at most %d (use \"*\" for every namespace)", len(parts), maxConsumers)
	}
	var errs []error
	ns := make([]string, 0, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		switch {
		case p == "*":
			errs = append(errs, errors.New(`"*" must stand alone`))
		case p == "":
			errs = append(errs, errors.New("empty namespace name"))
		default:
			if msgs := validation.IsDNS1123Label(p); len(msgs) > 0 {
				errs = append(errs, fmt.Errorf("namespace %q: %s", p, strings.Join(msgs, "; ")))
				continue
			}
			ns = append(ns, p)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return router.Consumers{}, err
	}
	slices.Sort(ns)
	return router.Consumers{Namespaces: slices.Compact(ns)}, nil
}
