package translate

import (
	"fmt"
	"strconv"
	"strings"
)

// Client is who an xDS client says it is, from its Node: user_agent_name,
// and user_agent_version or, for Envoy, user_agent_build_version's
// semantic version ("1.28.0").
type Client struct {
	Name    string
	Version string
}

// String renders the client as "<name> <version>".
func (c Client) String() string {
	if c.Version == "" {
		return c.Name
	}
	return c.Name + " " + c.Version
}

// FormFor returns the form a client gets and why. It follows the
// compatibility matrix of docs/traffic.md: a client gets FormLegacy when
// its source shows that it reads weighted clusters against a total_weight
// defaulting to 100 or does not know HeaderMatcher.string_match, and
// FormCurrent otherwise. Clients it does not know (no user agent, another
// implementation) get FormCurrent, and the reason says so.
func FormFor(c Client) (Form, string) {
	v, verOK := parseVersion(c.Version)
	below := func(major, minor int) bool { return verOK && (v[0] < major || (v[0] == major && v[1] < minor)) }
	switch {
	case strings.HasPrefix(c.Name, "gRPC C-core"):
		// Every C-core release read (1.51 tested here, and the parser of
		// later releases) defaults total_weight to 100; 1.51 NACKs
		// string_match.
		return FormLegacyNoRing, fmt.Sprintf("%s: C-core reads weighted clusters against total_weight (default 100), 1.51 not string_match, and 1.51 crashed on ring hash", c)
	case c.Name == "gRPC Node Pure JS":
		// grpc-js-xds picks a cluster with random() × (total_weight ?? 100)
		// up to 1.14 at least, and reads string_match from 1.9.0 on. Its
		// ring hash (1.14.1) left one RPC of 300 sticky users waiting for a
		// pick until its deadline, so it gets no sticky splits.
		return FormLegacyNoRing, fmt.Sprintf("%s: grpc-js-xds draws weighted clusters against total_weight (default 100); 1.14.1 left an RPC waiting for a ring-hash pick until its deadline", c)
	case c.Name == "gRPC Go" && (!verOK || below(1, 56)):
		// v1.55.0 (tested here) kept routing sticky users by its first
		// ring after the locality weights changed, so a share never
		// moved; 1.56 to 1.84 were not tested for it.
		if !verOK {
			return FormLegacyNoRing, fmt.Sprintf("%s: unparsable version, grpc-go before 1.56 NACKs string_match", c)
		}
		return FormLegacyNoRing, fmt.Sprintf("%s: grpc-go before 1.56 NACKs string_match header matchers; 1.55.0 kept its ring when the sticky share changed", c)
	case c.Name == "gRPC Java" && (!verOK || below(1, 53)):
		if !verOK {
			return FormLegacy, fmt.Sprintf("%s: unparsable version, grpc-java before 1.53 does not read string_match", c)
		}
		return FormLegacy, fmt.Sprintf("%s: grpc-java before 1.53 does not read string_match header matchers", c)
	case strings.EqualFold(c.Name, "envoy") && (!verOK || below(1, 24)):
		// Envoy sums the weights from 1.24.0 (its release notes); before,
		// it checks them against total_weight, which defaults to 100.
		if !verOK {
			return FormLegacy, fmt.Sprintf("%s: unparsable version, Envoy before 1.24 checks weights against total_weight (default 100)", c)
		}
		return FormLegacy, fmt.Sprintf("%s: Envoy before 1.24 checks weights against total_weight (default 100)", c)
	case c.Name == "gRPC Go", c.Name == "gRPC Java", strings.EqualFold(c.Name, "envoy"):
		return FormCurrent, fmt.Sprintf("%s: reads string_match and sums weighted clusters", c)
	case c.Name == "":
		return FormCurrent, "client did not name itself (no user_agent_name): current form"
	default:
		return FormCurrent, fmt.Sprintf("%s: unknown client: current form", c)
	}
}

// parseVersion reads "major.minor[.patch][-suffix]" (a leading "v" is
// allowed); it returns major and minor.
func parseVersion(s string) ([2]int, bool) {
	s = strings.TrimPrefix(s, "v")
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return [2]int{}, false
	}
	minor := parts[1]
	if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = minor[:i]
	}
	major, err1 := strconv.Atoi(parts[0])
	mn, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return [2]int{}, false
	}
	return [2]int{major, mn}, true
}
