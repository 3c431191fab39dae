package dashboard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// reviewer plays the API server's authenticator and authorizer: tokens
// name users, and grants says where each user may get Rollouts ("" for
// every namespace). It counts the access reviews by user.
type reviewer struct {
	grants map[string][]string // user → namespaces
	mu     sync.Mutex
	asked  map[string][]string // user → namespaces asked about
}

func (r *reviewer) funcs() interceptor.Funcs {
	return interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		switch o := obj.(type) {
		case *authenticationv1.TokenReview:
			user, ok := strings.CutSuffix(o.Spec.Token, "-token")
			o.Status = authenticationv1.TokenReviewStatus{Authenticated: ok, User: authenticationv1.UserInfo{Username: user}}
			return nil
		case *authorizationv1.SubjectAccessReview:
			at := o.Spec.ResourceAttributes
			r.mu.Lock()
			r.asked[o.Spec.User] = append(r.asked[o.Spec.User], at.Namespace)
			r.mu.Unlock()
			for _, ns := range r.grants[o.Spec.User] {
				if at.Verb == "get" && at.Resource == "rollouts" && at.Group == v1alpha1.GroupName && (ns == "" || ns == at.Namespace) {
					o.Status.Allowed = true
				}
			}
			return nil
		}
		return c.Create(ctx, obj, opts...)
	}}
}

func (r *reviewer) questions(user string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.asked[user]...)
}

// TestOneReviewForAViewerOfEveryNamespace: the dashboard served for many
// people asks once whether a person may get Rollouts everywhere; one who may
// is not asked about each namespace in turn, one who may not is, and sees
// only the namespaces granted (the other team's services are not among
// what the team depends on, though they are called).
func TestOneReviewForAViewerOfEveryNamespace(t *testing.T) {
	ns := func(name, team string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.LabelTeam: team}}}
	}
	ledger := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "pay", Name: "ledger"},
		Status: v1alpha1.RolloutStatus{Callers: &v1alpha1.CallerStatus{Callers: []v1alpha1.CallerLoad{{Namespace: "web", Requests: 10}}}}}
	r := &reviewer{asked: map[string][]string{}, grants: map[string][]string{"admin": {""}, "alice": {"web"}}}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(
		ns("web", "shop"), ns("cart", "shop"), ns("pay", "payments"), ns("search", "search"),
		&v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "checkout"}}, ledger,
	).WithInterceptorFuncs(r.funcs()).Build()
	s, err := New(Options{Client: c, Authenticator: NewTokenAuth(c, nil)})
	if err != nil {
		t.Fatal(err)
	}
	as := func(user string) (int, string) {
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:3100/api/teams/shop", nil)
		req.Header.Set("Authorization", "Bearer "+user+"-token")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}

	code, body := as("admin")
	if code != http.StatusOK || !strings.Contains(body, `"name":"ledger"`) || !strings.Contains(body, `"namespaces":["cart","web"]`) {
		t.Errorf("admin: %d %s", code, body)
	}
	if got := strings.Join(r.questions("admin"), ","); got != "" || len(r.questions("admin")) != 1 {
		t.Errorf("admin was asked about %q, want once about every namespace", r.questions("admin"))
	}

	code, body = as("alice")
	if code != http.StatusOK || !strings.Contains(body, `"namespaces":["web"]`) {
		t.Errorf("alice: %d %s", code, body)
	}
	if strings.Contains(body, "ledger") || strings.Contains(body, "pay") || strings.Contains(body, "cart") {
		t.Errorf("alice sees a namespace she may not: %s", body)
	}
	if got := len(r.questions("alice")); got != 1+4 {
		t.Errorf("alice was asked about %q, want every namespace then each of the 4", r.questions("alice"))
	}
}
