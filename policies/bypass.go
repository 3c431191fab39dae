package policies

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// Requester is who made an admission request, as kube-apiserver
// authenticated them (the AdmissionRequest's userInfo). Decisions about
// who may do what read it, never what the object says about itself.
type Requester struct {
	// Username is the authenticated user name, e.g.
	// "system:serviceaccount:sluice-system:sluice" or "alice@example.com".
	Username string
	// Groups are the user's groups.
	Groups []string
}

// String names the requester in messages, Events and audit annotations.
func (r *Requester) String() string {
	if r == nil || r.Username == "" {
		return "an unauthenticated requester"
	}
	return fmt.Sprintf("user %q", r.Username)
}

// MaxBypassReason bounds the bypass reason as Sluice repeats it in
// warnings, Events and audit annotations; a longer one is cut (on a rune
// boundary) and marked.
const MaxBypassReason = 256

// bypassGrant is a compiled v1alpha1.EmergencyBypass.
type bypassGrant struct {
	groups      []string
	maxDuration time.Duration
}

// bypassRequest is the emergency bypass a Deployment's annotations ask
// for, read once per request.
type bypassRequest struct {
	asked   bool
	reason  string
	expires time.Time
	// expiresProblem says why the expiry annotation is unusable; empty
	// when it is a time.
	expiresProblem string
}

func readBypass(annotations map[string]string) bypassRequest {
	reason, asked := annotations[v1alpha1.AnnotationEmergencyBypass]
	if !asked {
		return bypassRequest{}
	}
	b := bypassRequest{asked: true, reason: strings.TrimSpace(reason)}
	raw, ok := annotations[v1alpha1.AnnotationEmergencyBypassExpires]
	switch {
	case !ok || strings.TrimSpace(raw) == "":
		b.expiresProblem = fmt.Sprintf(`annotation %s is required with %s: when the bypass ends, as an RFC 3339 time, e.g. "2026-12-03T18:00:00Z"`,
			v1alpha1.AnnotationEmergencyBypassExpires, v1alpha1.AnnotationEmergencyBypass)
	default:
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(raw))
		if err != nil {
			b.expiresProblem = fmt.Sprintf(`%q is not an RFC 3339 time, e.g. "2026-12-03T18:00:00Z"`, Truncate(raw, 64))
		} else {
			b.expires = t
		}
	}
	return b
}

var (
	bypassPath        = annotationsPath.Key(v1alpha1.AnnotationEmergencyBypass)
	bypassExpiresPath = annotationsPath.Key(v1alpha1.AnnotationEmergencyBypassExpires)
)

// refuseBypass returns the finding that explains why the policy does not
// let who bypass it at now, or false when it does.
func (c *Compiled) refuseBypass(b bypassRequest, who *Requester, now time.Time) (finding, bool) {
	refuse := func(path *field.Path, format string, args ...any) (finding, bool) {
		return finding{RuleEmergencyBypass, path, fmt.Sprintf(format, args...)}, true
	}
	g := c.bypass
	switch {
	case g == nil:
		return refuse(bypassPath, "policy %q allows no emergency bypass; remove annotation %s", c.name, v1alpha1.AnnotationEmergencyBypass)
	case who == nil || !slices.ContainsFunc(who.Groups, func(grp string) bool { return slices.Contains(g.groups, grp) }):
		return refuse(bypassPath, "%s may not bypass policy %q: only members of the groups %s may",
			who, c.name, strings.Join(g.groups, ", "))
	case b.reason == "":
		return refuse(bypassPath, `annotation %s needs a reason, e.g. "INC-1234 checkout down"`, v1alpha1.AnnotationEmergencyBypass)
	case b.expiresProblem != "":
		return refuse(bypassExpiresPath, "%s", b.expiresProblem)
	case !now.Before(b.expires):
		return refuse(bypassExpiresPath, "the emergency bypass expired at %s; remove the bypass annotations or, if the emergency lasts, set a new expiry",
			b.expires.UTC().Format(time.RFC3339))
	case b.expires.Sub(now) > g.maxDuration:
		return refuse(bypassExpiresPath, "policy %q allows a bypass of at most %s from now (until %s), not until %s",
			c.name, g.maxDuration, now.Add(g.maxDuration).UTC().Format(time.RFC3339), b.expires.UTC().Format(time.RFC3339))
	}
	return finding{}, false
}

func compileBypass(b *v1alpha1.EmergencyBypass, fp *field.Path) (*bypassGrant, field.ErrorList) {
	if b == nil {
		return nil, nil
	}
	var errs field.ErrorList
	g := &bypassGrant{maxDuration: v1alpha1.DefaultBypassMaxDuration}
	if len(b.Groups) == 0 {
		errs = append(errs, field.Required(fp.Child("groups"), `the groups whose members may bypass the policy, e.g. ["sre-oncall"]`))
	}
	for i, grp := range b.Groups {
		if strings.TrimSpace(grp) == "" {
			errs = append(errs, field.Invalid(fp.Child("groups").Index(i), grp, "must name a group"))
			continue
		}
		g.groups = append(g.groups, grp)
	}
	if b.MaxDuration != nil {
		if b.MaxDuration.Duration <= 0 {
			errs = append(errs, field.Invalid(fp.Child("maxDuration"), b.MaxDuration.Duration.String(), `must be more than 0, e.g. "4h"`))
		}
		g.maxDuration = b.MaxDuration.Duration
	}
	return g, errs
}

// Truncate returns s cut to at most n bytes on a rune boundary, ending in
// "..." when cut; n below 3 is taken as 3.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n = max(n, 3) - 3
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
