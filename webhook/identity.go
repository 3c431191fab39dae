package webhook

import (
	"context"
	"errors"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
)

// Identity asks kube-apiserver who the client's credentials authenticate
// as (a SelfSubjectReview, which every authenticated user may create) and
// returns the user name, for Options.Self: in a cluster
// system:serviceaccount:<namespace>:<name> of Sluice's ServiceAccount; with
// a kubeconfig, whatever user it holds. Requests that kube-apiserver sends
// the webhooks on Sluice's behalf carry exactly this name.
func Identity(ctx context.Context, c authenticationv1client.SelfSubjectReviewsGetter) (string, error) {
	r, err := c.SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("ask the API server who Sluice is (SelfSubjectReview): %w", err)
	}
	if r.Status.UserInfo.Username == "" {
		return "", errors.New("the API server's SelfSubjectReview names no user for Sluice's credentials")
	}
	return r.Status.UserInfo.Username, nil
}
