package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/dashboard"
)

// checkSecretAccessUnderChart asks the API server's authorizer what the
// chart's ServiceAccount may do with Secrets of a team namespace: get the
// notification Secret by its name, and nothing else — no other Secret, no
// list or watch (which would reveal every Secret of the namespace).
func checkSecretAccessUnderChart(ctx context.Context, t *testing.T, releaseNS, sa, teamNS string) {
	t.Helper()
	user := "system:serviceaccount:" + releaseNS + ":" + sa
	cases := []struct {
		verb, name string
		want       bool
	}{
		{"get", v1alpha1.NotificationSecretDefault, true},
		{"get", "team-database-password", false},
		{"list", "", false},
		{"watch", "", false},
		{"update", v1alpha1.NotificationSecretDefault, false},
	}
	for _, c := range cases {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   user,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNS, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: teamNS, Verb: c.verb, Resource: "secrets", Name: c.name,
			},
		}}
		got, err := env.Client().AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SubjectAccessReview: %v", err)
		}
		if got.Status.Allowed != c.want {
			t.Errorf("%s may %s Secret %q in %s: %v, want %v (%s)", user, c.verb, c.name, teamNS, got.Status.Allowed, c.want, got.Status.Reason)
		}
	}
}

// checkNotificationsUnderChart: the team's receiver heard of the promotion
// of revision from the controller running under the chart's RBAC, which read
// the receiver's URL from the team's Secret.
func checkNotificationsUnderChart(t *testing.T, r *receiver, revision string) {
	t.Helper()
	r.waitFor(t, "Promoted", revision)
	msgs, bad := r.received()
	if len(bad) > 0 {
		t.Errorf("the receiver got malformed messages: %v", bad)
	}
	t.Logf("notifications under the chart's RBAC: %v", kinds(msgs))
}

// checkDashboardUnderChart calls the controller's dashboard (--dashboard-addr,
// rendered by dashboard.enabled) at base: without a token it is refused; a
// viewer allowed rollouts in teamNS only sees teamNS's service with no
// unreadable parts (the chart grants the controller the ReplicaSets and
// Events the pages read), and is refused another namespace of the same team.
func checkDashboardUnderChart(ctx context.Context, t *testing.T, base, teamNS, team string, ca []byte) {
	t.Helper()
	hidden := newNamespace(t, map[string]string{v1alpha1.LabelTeam: team})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no CA certificate to verify the dashboard with")
	}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(path, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
	if code, _ := get("/api/teams", ""); code != http.StatusUnauthorized {
		t.Errorf("dashboard without a token: %d, want 401", code)
	}
	const viewer = "dashboard-viewer"
	if _, err := env.Client().CoreV1().ServiceAccounts(teamNS).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: viewer}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	grantRolloutReader(t, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: teamNS, Name: viewer}, teamNS)
	tr, err := env.Client().CoreV1().ServiceAccounts(teamNS).CreateToken(ctx, viewer,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := tr.Status.Token
	var page dashboard.Team
	eventually(t, time.Minute, "the viewer sees the service on the chart controller's dashboard", func(context.Context) error {
		code, body := get("/api/teams/"+team, token)
		if code != http.StatusOK {
			return fmt.Errorf("GET /api/teams/%s: %d %.300s", team, code, body)
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			return err
		}
		for _, s := range page.Services {
			if s.Namespace == teamNS && s.Name == "checkout" {
				return nil
			}
		}
		return fmt.Errorf("no checkout in %s on the team page: %.300s", teamNS, body)
	})
	if len(page.Problems) > 0 {
		t.Errorf("the controller's dashboard could not read parts of %s under the chart's RBAC: %v", teamNS, page.Problems)
	}
	if code, body := get("/api/rollouts/"+hidden+"/checkout", token); code != http.StatusForbidden || strings.Contains(body, hidden) {
		t.Errorf("the viewer asked for %s: %d %.200s, want 403 without its name", hidden, code, body)
	}
	if code, body := get("/api/teams/"+team, token); code != http.StatusOK || strings.Contains(body, hidden) {
		t.Errorf("the team page names the namespace the viewer may not see: %d %.200s", code, body)
	}
	t.Logf("dashboard under the chart's RBAC: 401 without a token, %s served to its viewer, %s refused", teamNS, hidden)
}
