package v1alpha1

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/router"
)

// MinStepInterval is the shortest step interval accepted.
const MinStepInterval = time.Second

// Accepted syntax of each annotation, quoted in error messages.
const (
	syntaxSteps        = `comma-separated percentages, strictly increasing, each more than 0 and less than 100, decimals allowed, e.g. "1,5,25,50" or "0.5,5,50"`
	syntaxStepInterval = `a Go duration of at least 1s, e.g. "30s" or "2m"`
	syntaxRate         = `a percentage with a % sign or a fraction between 0 and 1, e.g. "1%" or "0.01"`
	syntaxLatency      = `a positive Go duration, e.g. "300ms"`
	syntaxCohort       = `"header:<name>=<value>", "header:<name>" (present), "header:<name>~<regex>" or "cookie:<name>=<value>", with lower-case header names, e.g. "header:x-cohort=beta" or "cookie:beta=1"`
	syntaxSticky       = `"header:<name>" or "cookie:<name>", with lower-case header names, e.g. "header:x-user-id" or "cookie:session"`
	syntaxSplit        = `a percentage from 0 to 100, decimals allowed, e.g. "50" or "12.5"`
	syntaxService      = `a DNS-1035 label: lower-case letters, digits and '-', starting with a letter, at most 63 characters, e.g. "checkout"`
)

// ParseDelivery reads the sluice.dev/* delivery annotations of a Deployment.
// Fields whose annotation is absent stay unset, for WithDefaults to fill.
// fld is the path of the annotations map, normally metadata.annotations; each
// error names its annotation under it and states the accepted syntax with an
// example. Beta needs a cohort and ab needs a split and a sticky key. A
// sluice.dev/ key within two edits of a known annotation is reported as a
// likely typo.
func ParseDelivery(annotations map[string]string, fld *field.Path) (Delivery, field.ErrorList) {
	var d Delivery
	var errs field.ErrorList
	path := func(key string) *field.Path { return fld.Key(key) }

	if v, ok := annotations[AnnotationRollout]; ok {
		switch m := DeliveryMode(v); m {
		case ModeCanary, ModeBeta, ModeAB, ModeOff:
			d.Mode = m
		default:
			errs = append(errs, field.NotSupported(path(AnnotationRollout), v,
				[]string{string(ModeCanary), string(ModeBeta), string(ModeAB), string(ModeOff)}))
		}
	}
	if v, ok := annotations[AnnotationService]; ok {
		if err := router.CheckServiceName(v); err != nil {
			errs = append(errs, field.Invalid(path(AnnotationService), v,
				fmt.Sprintf("%v; must be %s", err, syntaxService)))
		} else {
			d.Service = v
		}
	}
	if v, ok := annotations[AnnotationSteps]; ok {
		steps, err := ParseSteps(v)
		if err != nil {
			errs = append(errs, invalid(path(AnnotationSteps), v, err, syntaxSteps))
		} else {
			d.Steps = steps
		}
	}
	if v, ok := annotations[AnnotationStepInterval]; ok {
		iv, err := parseStepInterval(v)
		if err != nil {
			errs = append(errs, invalid(path(AnnotationStepInterval), v, err, syntaxStepInterval))
		} else {
			d.StepInterval = &metav1.Duration{Duration: iv}
		}
	}
	if v, ok := annotations[AnnotationMaxErrorRate]; ok {
		r, err := ParseRate(v)
		if err != nil {
			errs = append(errs, invalid(path(AnnotationMaxErrorRate), v, err, syntaxRate))
		} else {
			d.MaxErrorRate = &r
		}
	}
	if v, ok := annotations[AnnotationMaxLatencyP99]; ok {
		l, err := parseLatency(v)
		if err != nil {
			errs = append(errs, invalid(path(AnnotationMaxLatencyP99), v, err, syntaxLatency))
		} else {
			d.MaxLatencyP99 = &metav1.Duration{Duration: l}
		}
	}
	if v, ok := annotations[AnnotationCohort]; ok {
		c, err := ParseCohort(v)
		if err != nil {
			errs = append(errs, invalid(path(AnnotationCohort), v, err, syntaxCohort))
		} else {
			d.Cohort = &c
		}
	}
	if v, ok := annotations[AnnotationSticky]; ok {
		s, err := ParseSticky(v)
		if err != nil {
			errs = append(errs, invalid(path(AnnotationSticky), v, err, syntaxSticky))
		} else {
			d.Sticky = &s
		}
	}
	if v, ok := annotations[AnnotationSplit]; ok {
		s, err := ParsePercent(v)
		if err != nil {
			errs = append(errs, invalid(path(AnnotationSplit), v, err, syntaxSplit))
		} else {
			d.Split = &s
		}
	}
	if v, ok := annotations[AnnotationConsumers]; ok {
		if _, err := ParseConsumers(v); err != nil {
			errs = append(errs, invalid(path(AnnotationConsumers), v, err, syntaxConsumers))
		}
	}
	errs = append(errs, requiredForMode(annotations, d.Mode, fld)...)
	errs = append(errs, misspelledAnnotations(annotations, fld)...)
	return d, errs
}

// requiredForMode reports annotations a mode cannot work without. An
// annotation present but malformed is already reported, so only absent ones
// are named here.
func requiredForMode(annotations map[string]string, mode DeliveryMode, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	need := func(key, syntax string) {
		if _, ok := annotations[key]; !ok {
			errs = append(errs, field.Required(fld.Key(key),
				fmt.Sprintf("%s: %s needs it; must be %s", AnnotationRollout, mode, syntax)))
		}
	}
	switch mode {
	case ModeBeta:
		need(AnnotationCohort, syntaxCohort)
	case ModeAB:
		need(AnnotationSplit, syntaxSplit)
		need(AnnotationSticky, syntaxSticky)
	}
	return errs
}

func invalid(p *field.Path, value string, err error, syntax string) *field.Error {
	return field.Invalid(p, value, fmt.Sprintf("%v; must be %s", err, syntax))
}

func parseStepInterval(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	if d < MinStepInterval {
		return 0, fmt.Errorf("%s is shorter than %s", d, MinStepInterval)
	}
	return d, nil
}

func parseLatency(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s is not positive", d)
	}
	return d, nil
}

// ParseCohort reads a cohort in the sluice.dev/cohort syntax:
// "header:<name>=<value>", "header:<name>", "header:<name>~<regex>" or
// "cookie:<name>=<value>".
func ParseCohort(s string) (Cohort, error) {
	source, rest, err := splitSource(s)
	if err != nil {
		return Cohort{}, err
	}
	if source == SourceCookie {
		name, value, ok := strings.Cut(rest, "=")
		if !ok {
			return Cohort{}, fmt.Errorf("cookie cohort %q has no '=<value>'", rest)
		}
		if err := checkCookieName(name); err != nil {
			return Cohort{}, err
		}
		if err := checkCookieValue(value); err != nil {
			return Cohort{}, err
		}
		return Cohort{Source: SourceCookie, Name: name, Match: MatchExact, Value: value}, nil
	}
	i := strings.IndexAny(rest, "=~")
	if i < 0 {
		if err := checkHeaderName(rest); err != nil {
			return Cohort{}, err
		}
		return Cohort{Source: SourceHeader, Name: rest, Match: MatchPresent}, nil
	}
	name, op, value := rest[:i], rest[i], rest[i+1:]
	if err := checkHeaderName(name); err != nil {
		return Cohort{}, err
	}
	if op == '~' {
		if value == "" {
			return Cohort{}, fmt.Errorf("header %q has an empty regex", name)
		}
		if _, err := regexp.Compile(value); err != nil {
			return Cohort{}, fmt.Errorf("header %q regex: %w", name, err)
		}
		return Cohort{Source: SourceHeader, Name: name, Match: MatchRegex, Value: value}, nil
	}
	if err := checkHeaderValue(value); err != nil {
		return Cohort{}, err
	}
	return Cohort{Source: SourceHeader, Name: name, Match: MatchExact, Value: value}, nil
}

// ParseSticky reads a sticky key in the sluice.dev/sticky syntax:
// "header:<name>" or "cookie:<name>".
func ParseSticky(s string) (Sticky, error) {
	source, name, err := splitSource(s)
	if err != nil {
		return Sticky{}, err
	}
	if source == SourceCookie {
		err = checkCookieName(name)
	} else {
		err = checkHeaderName(name)
	}
	if err != nil {
		return Sticky{}, err
	}
	return Sticky{Source: source, Name: name}, nil
}

func splitSource(s string) (MatchSource, string, error) {
	switch {
	case strings.HasPrefix(s, "header:"):
		return SourceHeader, s[len("header:"):], nil
	case strings.HasPrefix(s, "cookie:"):
		return SourceCookie, s[len("cookie:"):], nil
	}
	return "", "", fmt.Errorf("%q starts with neither \"header:\" nor \"cookie:\"", s)
}

// checkHeaderName accepts lower-case header names of letters, digits, '-',
// '_' and '.' that the router can route on (router.CheckHeaderName: no grpc-
// prefix, not the warm-up header); proxies match header names in lower case
// only.
func checkHeaderName(name string) error {
	if err := checkHeaderChars(name); err != nil {
		return err
	}
	return router.CheckHeaderName(name)
}

func checkHeaderChars(name string) error {
	if name == "" {
		return fmt.Errorf("empty header name")
	}
	if len(name) > 256 {
		return fmt.Errorf("header name is longer than 256 characters")
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		case r >= 'A' && r <= 'Z':
			return fmt.Errorf("header name %q must be lower-case (%q)", name, strings.ToLower(name))
		default:
			return fmt.Errorf("header name %q has %q; use lower-case letters, digits, '-', '_' and '.'", name, r)
		}
	}
	return nil
}

// checkHeaderValue accepts visible ASCII and inner spaces.
func checkHeaderValue(v string) error {
	if v == "" {
		return fmt.Errorf("empty header value; write \"header:<name>\" to match presence")
	}
	if strings.TrimSpace(v) != v {
		return fmt.Errorf("header value %q has leading or trailing spaces", v)
	}
	for _, r := range v {
		if r < 0x20 || r > 0x7e {
			return fmt.Errorf("header value %q has %q; use visible ASCII", v, r)
		}
	}
	return nil
}

// checkCookieName accepts RFC 6265 cookie names (HTTP tokens).
func checkCookieName(name string) error {
	if name == "" {
		return fmt.Errorf("empty cookie name")
	}
	for _, r := range name {
		if !isTokenChar(r) {
			return fmt.Errorf("cookie name %q has %q; use letters, digits and !#$%%&'*+-.^_`|~", name, r)
		}
	}
	return nil
}

// checkCookieValue accepts RFC 6265 cookie-octets.
func checkCookieValue(v string) error {
	if v == "" {
		return fmt.Errorf("empty cookie value")
	}
	for _, r := range v {
		if r < 0x21 || r > 0x7e || r == '"' || r == ',' || r == ';' || r == '\\' {
			return fmt.Errorf("cookie value %q has %q, not allowed in cookies", v, r)
		}
	}
	return nil
}

func isTokenChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}
