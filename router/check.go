package router

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// checkService reports every problem of one service of a State, joined. It
// returns the service's strategy in canonical form (header names
// lower-cased), so Build does not repeat the work.
func checkService(s Service) (Strategy, error) {
	var errs []error
	if err := checkDNSLabel(s.Namespace); err != nil {
		errs = append(errs, fmt.Errorf("namespace: %w", err))
	}
	if err := CheckServiceName(s.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	errs = append(errs, checkPorts(s.Ports)...)
	errs = append(errs, checkEndpoints(s.Endpoints)...)
	st, strategyErrs := checkStrategy(s.Strategy)
	errs = append(errs, strategyErrs...)
	return st, errors.Join(errs...)
}

func checkPorts(ports []Port) []error {
	var errs []error
	if len(ports) == 0 {
		errs = append(errs, errors.New("ports: a service needs at least one port"))
	}
	names := map[string]bool{}
	numbers := map[uint32]bool{}
	for i, p := range ports {
		field := fmt.Sprintf("ports[%d]", i)
		if p.Name == "" {
			errs = append(errs, fmt.Errorf("%s.name: empty; endpoints find the port by name", field))
		} else if names[p.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q used twice", field, p.Name))
		}
		names[p.Name] = true
		if p.Number == 0 || p.Number > 65535 {
			errs = append(errs, fmt.Errorf("%s.number: %d is not in 1..65535", field, p.Number))
		} else if numbers[p.Number] {
			errs = append(errs, fmt.Errorf("%s.number: %d used twice", field, p.Number))
		}
		numbers[p.Number] = true
		if p.Protocol != ProtocolGRPC && p.Protocol != ProtocolHTTP {
			errs = append(errs, fmt.Errorf("%s.protocol: %q is not one of grpc, http", field, p.Protocol))
		}
	}
	return errs
}

func checkEndpoints(endpoints []Endpoint) []error {
	var errs []error
	pods := map[string]bool{}
	for i, e := range endpoints {
		field := fmt.Sprintf("endpoints[%d]", i)
		if e.Pod == "" {
			errs = append(errs, fmt.Errorf("%s.pod: empty", field))
		} else if pods[e.Pod] {
			errs = append(errs, fmt.Errorf("%s.pod: %q listed twice", field, e.Pod))
		}
		pods[e.Pod] = true
		if _, err := netip.ParseAddr(e.IP); err != nil {
			errs = append(errs, fmt.Errorf("%s.ip: %q is not an IP address", field, e.IP))
		}
		if e.Track != TrackStable && e.Track != TrackCanary {
			errs = append(errs, fmt.Errorf("%s.track: %q is not one of stable, canary", field, e.Track))
		}
		for name, n := range e.Ports {
			if n == 0 || n > 65535 {
				errs = append(errs, fmt.Errorf("%s.ports[%s]: %d is not in 1..65535", field, name, n))
			}
		}
	}
	return errs
}

func checkStrategy(st Strategy) (Strategy, []error) {
	var errs []error
	if !st.CanaryWeight.Valid() {
		errs = append(errs, fmt.Errorf("strategy.canaryWeight: %d is above %d (100%%)", st.CanaryWeight, TotalWeight))
	}
	if !st.Mirror.Valid() {
		errs = append(errs, fmt.Errorf("strategy.mirror: %d is above %d (100%%)", st.Mirror, TotalWeight))
	}
	cohorts := make([]Cohort, 0, len(st.Cohorts))
	seen := map[Cohort]bool{}
	for i, c := range st.Cohorts {
		field := fmt.Sprintf("strategy.cohorts[%d]", i)
		name, err := checkKey(c.Source, c.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			continue
		}
		c.Name = name
		switch c.Match {
		case MatchExact:
			if c.Value == "" {
				errs = append(errs, fmt.Errorf("%s.value: empty; use match \"present\" to match any value", field))
				continue
			}
		case MatchRegex:
			if _, err := regexp.Compile(c.Value); err != nil {
				errs = append(errs, fmt.Errorf("%s.value: not an RE2 expression: %w", field, err))
				continue
			}
		case MatchPresent:
			if c.Value != "" {
				errs = append(errs, fmt.Errorf("%s.value: %q given for match \"present\", which takes no value", field, c.Value))
				continue
			}
		default:
			errs = append(errs, fmt.Errorf("%s.match: %q is not one of exact, regex, present", field, c.Match))
			continue
		}
		if seen[c] {
			errs = append(errs, fmt.Errorf("%s: same cohort listed twice", field))
			continue
		}
		seen[c] = true
		cohorts = append(cohorts, c)
	}
	st.Cohorts = cohorts
	if st.Sticky != nil {
		sticky := *st.Sticky
		name, err := checkKey(sticky.Source, sticky.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("strategy.sticky: %w", err))
		}
		sticky.Name = name
		if !sticky.Share.Valid() {
			errs = append(errs, fmt.Errorf("strategy.sticky.share: %d is above %d (100%%)", sticky.Share, TotalWeight))
		}
		st.Sticky = &sticky
	}
	return st, errs
}

// CheckHeaderName reports whether routes can match a header of this name for
// every client (a lower-case token, not grpc-, not Sluice's warm-up header).
// Admission calls it on the annotations, so that what it accepts, traffic
// can publish.
func CheckHeaderName(name string) error {
	if err := checkHeaderName(name); err != nil {
		return err
	}
	if name == WarmupHeader {
		return fmt.Errorf("%q is reserved for Sluice's warm-up routes; choose another header", name)
	}
	return nil
}

// checkKey checks the source and name of a request attribute and returns the
// name in canonical form: header names are case-insensitive in HTTP and gRPC,
// and proxyless gRPC only matches lower-case names, so they are lower-cased;
// cookie names are case-sensitive and kept.
func checkKey(src Source, name string) (string, error) {
	switch src {
	case SourceHeader:
		lower := strings.ToLower(name)
		if err := checkHeaderName(lower); err != nil {
			return "", fmt.Errorf("name: %w", err)
		}
		if lower == WarmupHeader {
			return "", fmt.Errorf("name: %q is reserved for Sluice's warm-up routes; choose another header", name)
		}
		return lower, nil
	case SourceCookie:
		if name == "" || !isToken(name) {
			return "", fmt.Errorf("name: %q is not a cookie name (an RFC 7230 token)", name)
		}
		return name, nil
	default:
		return "", fmt.Errorf("source: %q is not one of header, cookie", src)
	}
}

// checkHeaderName accepts lower-case RFC 7230 tokens that a route can match
// for both client flavours: gRPC reserves "grpc-" headers and pseudo-headers
// (":path") cannot be matched by proxyless clients.
func checkHeaderName(name string) error {
	switch {
	case name == "" || !isToken(name):
		return fmt.Errorf("%q is not a header name (an RFC 7230 token)", name)
	case name != strings.ToLower(name):
		return fmt.Errorf("%q has upper-case letters; proxyless gRPC clients never match them", name)
	case strings.HasPrefix(name, "grpc-"):
		return fmt.Errorf("%q: headers starting with grpc- are reserved by gRPC and cannot be matched", name)
	}
	return nil
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}
