package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/e2e/testkit"
	"github.com/sluice-dev/sluice/notify"
)

// receiver is a team's notification webhook on loopback: it keeps every
// message in the order it arrived.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	msgs []notify.Message
	bad  []string
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		var m notify.Message
		if err == nil {
			err = json.Unmarshal(body, &m)
		}
		if err != nil || req.Method != http.MethodPost || req.URL.Path != "/hooks/shop" {
			r.bad = append(r.bad, fmt.Sprintf("%s %s: %s (%v)", req.Method, req.URL.Path, body, err))
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		r.msgs = append(r.msgs, m)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) received() ([]notify.Message, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notify.Message(nil), r.msgs...), append([]string(nil), r.bad...)
}

// waitFor polls until a message of kind about revision arrived.
func (r *receiver) waitFor(t *testing.T, kind notify.Kind, revision string) {
	t.Helper()
	rolloutPoll(t, time.Minute, fmt.Sprintf("%s of %s received", kind, revision), func(context.Context) error {
		msgs, _ := r.received()
		for _, m := range msgs {
			if m.Kind == kind && m.Revision == revision {
				return nil
			}
		}
		return fmt.Errorf("received %v", kinds(msgs))
	})
}

func kinds(msgs []notify.Message) []string {
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, fmt.Sprintf("%s(%s step %d)", m.Kind, m.Revision, m.Step))
	}
	return out
}

// enableNotifications lets namespace send to prefix (a DeploymentPolicy
// selecting only it) and names its receiver in its Secret.
func enableNotifications(t *testing.T, namespace, prefix, url string) {
	t.Helper()
	ctx := context.Background()
	kube := rolloutKube(t)
	p := &v1alpha1.DeploymentPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "notify-" + namespace},
		Spec: v1alpha1.DeploymentPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: namespace}},
			Mode:              v1alpha1.ModeAudit,
			Notifications:     &v1alpha1.Notifications{AllowedURLPrefixes: []string{prefix}},
		},
	}
	if err := kube.Create(ctx, p); err != nil {
		t.Fatalf("create policy: %v", err)
	}
	t.Cleanup(func() {
		if err := kube.Delete(context.Background(), p); err != nil {
			t.Errorf("delete policy: %v", err)
		}
	})
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: v1alpha1.NotificationSecretDefault},
		StringData: map[string]string{notify.SecretKeyURL: url, notify.SecretKeyFormat: "json"},
	}
	if err := kube.Create(ctx, s); err != nil {
		t.Fatalf("create secret: %v", err)
	}
}

// TestNotificationsReachTheTeamsReceiverInOrder follows two deliveries: v2
// healthy (started, both steps, promoted) and v3 failing half its requests
// (started, rolled back with its reason). The team's receiver gets each of
// these once, in the order they happened.
func TestNotificationsReachTheTeamsReceiverInOrder(t *testing.T) {
	recv := newReceiver(t)
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,50", v1alpha1.AnnotationStepInterval: "5s"})
	enableNotifications(t, f.Namespace, recv.URL+"/", recv.URL+"/hooks/shop")
	startLoad(t, f.Namespace, "checkout", 50)

	f.Update("example.com/checkout:v2")
	good := f.Wait(4*time.Minute, "v2 promoted", testkit.PhaseIs(v1alpha1.PhaseSucceeded)).Status.StableRevision
	recv.waitFor(t, notify.Promoted, good)
	f.Update("example.com/checkout:v3", errorRate("0.5"))
	ro := f.Wait(3*time.Minute, "v3 rolled back", testkit.PhaseIs(v1alpha1.PhaseRolledBack))
	failed := ro.Status.FailedRevisions[len(ro.Status.FailedRevisions)-1]
	recv.waitFor(t, notify.RolledBack, failed.Revision)

	msgs, bad := recv.received()
	if len(bad) > 0 {
		t.Errorf("the receiver got requests it could not read: %v", bad)
	}
	// Holds may come between (a step's interval can end before enough
	// samples); everything else is exactly this, in this order.
	want := []string{
		fmt.Sprintf("%s(%s step 0)", notify.Started, good),
		fmt.Sprintf("%s(%s step 1)", notify.StepReached, good),
		fmt.Sprintf("%s(%s step 2)", notify.StepReached, good),
		fmt.Sprintf("%s(%s step 0)", notify.Promoted, good),
		fmt.Sprintf("%s(%s step 0)", notify.Started, failed.Revision),
		fmt.Sprintf("%s(%s step 1)", notify.StepReached, failed.Revision),
		fmt.Sprintf("%s(%s step 0)", notify.RolledBack, failed.Revision),
	}
	var got []string
	for _, m := range msgs {
		if m.Namespace != f.Namespace || m.Rollout != "checkout" {
			t.Errorf("message about %s/%s, want %s/checkout", m.Namespace, m.Rollout, f.Namespace)
		}
		if m.Kind == notify.Held {
			if m.Reason == "" {
				t.Errorf("hold without a reason: %+v", m)
			}
			continue
		}
		got = append(got, kinds([]notify.Message{m})...)
		if m.Kind == notify.RolledBack && m.Reason != failed.Reason {
			t.Errorf("rollback message says %q, want the Rollout's reason %q", m.Reason, failed.Reason)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("received, in order:\n  %v\nwant:\n  %v", got, want)
	}
	t.Logf("received %v", kinds(msgs))
}
