package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sluice-dev/sluice/dashboard"
)

// TestDashboardForManyAuthenticatesEachCaller serves the dashboard as a
// controller would, reading with its own (admin) rights for many people: a
// request without a valid bearer token is refused (401), and a
// ServiceAccount with rights in one namespace, authenticated by a
// TokenReview and authorized by SubjectAccessReviews, sees that namespace
// and nothing of another namespace of the same team.
func TestDashboardForManyAuthenticatesEachCaller(t *testing.T) {
	f := newDelivery(t, "example.com/checkout:v1", nil)
	hiddenNS, hiddenName := hiddenDelivery(t)
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: f.Namespace, Name: "viewer"}}
	if _, err := env.Client().CoreV1().ServiceAccounts(f.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	grantRolloutReader(t, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: f.Namespace, Name: sa.Name}, f.Namespace)
	tr, err := env.Client().CoreV1().ServiceAccounts(f.Namespace).CreateToken(ctx, sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for the viewer: %v", err)
	}
	kube := rolloutKube(t)
	srv, err := dashboard.New(dashboard.Options{Client: kube, Authenticator: dashboard.NewTokenAuth(kube, nil)})
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(srv)
	defer web.Close()

	call := func(path, token string) (int, string) {
		t.Helper()
		code, body, err := httpGetAs(ctx, web.URL+path, token)
		if err != nil {
			t.Fatal(err)
		}
		return code, body
	}
	for _, token := range []string{"", "not-a-token"} {
		if code, body := call("/api/teams", token); code != http.StatusUnauthorized {
			t.Errorf("token %q: %d %s, want 401", token, code, body)
		}
	}
	viewer := tr.Status.Token
	rolloutPoll(t, time.Minute, "the viewer sees their namespace", func(context.Context) error {
		code, body := call("/api/teams/shop", viewer)
		if code != http.StatusOK {
			return fmt.Errorf("status %d: %s", code, body)
		}
		return containsAll(f.Namespace, `"name":"checkout"`)(body)
	})
	cases := map[string]int{
		"/api/teams":      http.StatusOK,
		"/api/teams/shop": http.StatusOK,
		"/api/rollouts/" + f.Namespace + "/checkout":   http.StatusOK,
		"/api/rollouts/" + hiddenNS + "/" + hiddenName: http.StatusForbidden,
		"/api/rollouts/" + hiddenNS + "/nothing":       http.StatusForbidden,
	}
	for path, want := range cases {
		code, body := call(path, viewer)
		if code != want {
			t.Errorf("GET %s as the viewer: %d, want %d: %s", path, code, want, body)
		}
		if strings.Contains(body, hiddenNS) || strings.Contains(body, hiddenName) {
			t.Errorf("GET %s as the viewer names the hidden namespace: %s", path, body)
		}
	}
}
