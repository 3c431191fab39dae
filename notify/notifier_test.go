package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// newTestNotifier is a Notifier without a manager: namespace "shop" may
// send to url's prefix and names url in its Secret.
func newTestNotifier(t *testing.T, url string) *Notifier {
	t.Helper()
	sch := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(sch).WithObjects(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{v1alpha1.LabelTeam: "shop"}}},
		&v1alpha1.DeploymentPolicy{ObjectMeta: metav1.ObjectMeta{Name: "shop"}, Spec: v1alpha1.DeploymentPolicySpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelTeam: "shop"}},
			Notifications:     &v1alpha1.Notifications{AllowedURLPrefixes: []string{url + "/"}},
		}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: v1alpha1.NotificationSecretDefault},
			Data: map[string][]byte{SecretKeyURL: []byte(url + "/hook")}},
	).Build()
	return &Notifier{
		receivers: receivers{cached: c, secrets: c},
		client:    newHTTPClient(),
		backoff:   fastBackoff,
		log:       logr.Discard(),
		events:    events.NewFakeRecorder(100),
		lanes:     map[string]chan item{},
	}
}

// TestEnqueueNeverBlocks holds the receiver while more messages than a
// queue holds arrive: enqueueing returns at once, the surplus is dropped
// and counted, and what was queued arrives in order once the receiver
// answers.
func TestEnqueueNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var got []int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		var m Message
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Error(err)
		}
		mu.Lock()
		got = append(got, m.Step)
		mu.Unlock()
	}))
	defer srv.Close()
	nt := newTestNotifier(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ro := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout"}}
	const sent = QueueSize + 10
	done := make(chan struct{})
	go func() {
		for i := range sent {
			nt.enqueue(ctx, item{msg: Message{Kind: StepReached, Namespace: "shop", Rollout: "checkout", Step: int32(i)}, ro: ro})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("enqueue blocked behind a receiver that does not answer")
	}
	// One message is being delivered, QueueSize wait, the rest are dropped.
	if d := nt.Dropped(); d < sent-QueueSize-1 || d > sent-QueueSize {
		t.Errorf("dropped %d of %d, want %d or %d", d, sent, sent-QueueSize-1, sent-QueueSize)
	}
	close(release)
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if int64(n)+nt.Dropped() == sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("delivered out of order: %v", got)
		}
	}
	if int64(len(got))+nt.Dropped() != sent {
		t.Errorf("delivered %d + dropped %d, want %d in all", len(got), nt.Dropped(), sent)
	}
}
