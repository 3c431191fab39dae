package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/notify"
)

// externalServer is a gRPC service outside the cluster: it answers
// UnaryCall with its name, fails every failEvery-th call (0: none) with
// Unavailable, and counts what it served, as its own operators would.
type externalServer struct {
	testgrpc.UnimplementedTestServiceServer
	name              string
	failEvery         int64
	requests, errors_ atomic.Int64
	port              int
}

func startExternalServer(t *testing.T, name string, failEvery int64) *externalServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &externalServer{name: name, failEvery: failEvery, port: l.Addr().(*net.TCPAddr).Port}
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, s)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	return s
}

func (s *externalServer) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	n := s.requests.Add(1)
	if s.failEvery > 0 && n%s.failEvery == 0 {
		s.errors_.Add(1)
		return nil, status.Error(codes.Unavailable, "external service failed this call")
	}
	return &testgrpc.SimpleResponse{ServerId: s.name}, nil
}

// declareExternal creates the Service declaring an external dependency of
// ns: type ExternalName, the host, one port named grpc, the annotation.
func declareExternal(t *testing.T, ns, name, host string, port int) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{v1alpha1.AnnotationExternal: v1alpha1.ExternalGRPC}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: host,
			Ports: []corev1.ServicePort{{Name: "grpc", Port: int32(port), Protocol: corev1.ProtocolTCP}}},
	}
	if _, err := env.Client().CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("declare external dependency %s/%s: %v", ns, name, err)
	}
}

// TestExternalDependencyMeasuredByItsCallers: a team declares a gRPC service
// outside the cluster (a Service of type ExternalName annotated
// sluice.dev/external); its grpc-go xDS client calls xds:///<name>.<ns> and
// reaches it through Sluice's LOGICAL_DNS cluster. Once traffic stops, the
// requests and errors Sluice publishes for it (from the client's own load
// reports) equal the external server's own counters, and the team page in
// a real browser shows them.
//
// Attacks: another namespace declaring the same name for its own server
// captures none of the team's calls; its clients cannot use the team's
// dependency; a declaration named like a service the namespace's pods
// serve does not replace that service's routes.
func TestExternalDependencyMeasuredByItsCallers(t *testing.T) {
	team := fmt.Sprintf("ext-%d", time.Now().UnixNano()%100000)
	ns := newNamespace(t, map[string]string{v1alpha1.LabelTeam: team})
	other := newNamespace(t, map[string]string{v1alpha1.LabelTeam: team + "-other"})
	good := startExternalServer(t, "payments-provider", 7)
	evil := startExternalServer(t, "attacker", 0)
	declareExternal(t, ns, "payments", "localhost", good.port)
	// The other namespace declares the same name for its own server, and a
	// name that its own pods serve (checkout).
	declareExternal(t, other, "payments", "localhost", evil.port)
	checkout := deployment(other, "checkout", "example.com/checkout:v1", 1)
	if _, err := env.Client().AppsV1().Deployments(other).Create(context.Background(), checkout, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	declareExternal(t, other, "checkout", "localhost", evil.port)

	// The team's receiver hears of its dependency failing (one call in
	// seven fails; the default ceiling is 1%).
	rcv := newReceiver(t)
	enableNotifications(t, ns, rcv.URL+"/hooks/", rcv.URL+"/hooks/shop")

	client := newCallerClient(t, ns, "xds:///payments."+ns)
	client.send(t, 140)
	sent, failed := client.counts()
	if got := good.requests.Load(); got != sent || good.errors_.Load() != failed || evil.requests.Load() != 0 {
		t.Fatalf("the external server counted %d calls (%d failed), the attacker's %d; the client sent %d (%d failed)",
			got, good.errors_.Load(), evil.requests.Load(), sent, failed)
	}
	t.Logf("the team's client sent %d calls to its external dependency, %d failed; the external server counted the same", sent, failed)

	// The other namespace's checkout: its pods, not the declaration.
	own := newCallerClient(t, other, "xds:///checkout."+other)
	own.send(t, 20)
	if _, f := own.counts(); f != 0 || evil.requests.Load() != 0 {
		t.Errorf("checkout.%s: %d failed, the external server behind its same-name declaration got %d calls; want its pods to answer all",
			other, f, evil.requests.Load())
	}
	for srv := range own.byServer {
		if srv != "v1" {
			t.Errorf("checkout.%s answered by %q, want its pods (v1)", other, srv)
		}
	}
	// The other namespace's client cannot use the team's dependency.
	stranger := newCallerClient(t, other, "xds:///payments."+ns)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := stranger.c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	cancel()
	if err == nil || good.requests.Load() != sent {
		t.Errorf("a client of %s called %s's external dependency: err %v, the server counted %d (was %d)", other, ns, err, good.requests.Load(), sent)
	}

	var st v1alpha1.CallerStatus
	rolloutPoll(t, 2*time.Minute, "the dependency's load written, equal to the external server's counters", func(ctx context.Context) error {
		cm, err := env.Client().CoreV1().ConfigMaps(ns).Get(ctx, v1alpha1.ExternalLoadConfigMap, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(cm.Data["payments"]), &st); err != nil {
			return fmt.Errorf("ConfigMap data %q: %w", cm.Data["payments"], err)
		}
		if len(st.Callers) != 1 || st.Callers[0].Namespace != ns ||
			st.Callers[0].Requests != good.requests.Load() || st.Callers[0].Errors != good.errors_.Load() {
			return fmt.Errorf("load %+v, want %s with %d requests and %d errors", st.Callers, ns, good.requests.Load(), good.errors_.Load())
		}
		return nil
	})
	t.Logf("Sluice's figures for payments.%s: %d requests, %d errors; the external server's own: %d, %d",
		ns, st.Callers[0].Requests, st.Callers[0].Errors, good.requests.Load(), good.errors_.Load())

	rcv.waitFor(t, notify.DependencyFailing, "")
	msgs, _ := rcv.received()
	for _, m := range msgs {
		if m.Kind == notify.DependencyFailing {
			t.Logf("the team's receiver was told: %s", m.Text())
			if m.Namespace != ns || m.Service != "xds:///payments."+ns {
				t.Errorf("alert %+v, want namespace %s and target xds:///payments.%s", m, ns, ns)
			}
		}
	}

	admin := startDashboard(t, "external", env.Kubeconfig())
	b := newBrowser(t)
	b.open(t, admin+"/team/"+team)
	b.waitText(t, time.Minute, "the team page shows the external dependency with its figures", containsAll(
		"dependency\ttarget\taddress", "payments\txds:///payments."+ns, "localhost:"+strconv.Itoa(good.port),
		"\t"+strconv.FormatInt(good.requests.Load(), 10)+"\t"+strconv.FormatInt(good.errors_.Load(), 10)+"\t"))
	b.screenshot(t, "dashboard-external")
}
