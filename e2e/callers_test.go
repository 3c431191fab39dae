package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// callerClient is a grpc-go xDS client of one namespace's ServiceAccount,
// counting what it sent and what failed, as the caller itself sees it.
type callerClient struct {
	c                testgrpc.TestServiceClient
	mu               sync.Mutex
	sent, failed     int64
	byServer, failBy map[string]int64
}

func newCallerClient(t *testing.T, callerNS, target string) *callerClient {
	t.Helper()
	node := fmt.Sprintf("e2e-callers-%s-%d", callerNS, xdsNode.Add(1))
	conn := dialXDS(t, target, authBootstrap(t, sluice.XDSAddr, sluice.CAFile, callerNS, node))
	return &callerClient{c: testgrpc.NewTestServiceClient(conn), byServer: map[string]int64{}, failBy: map[string]int64{}}
}

// send makes n calls, one after another, each waiting for the route.
func (cc *callerClient) send(t *testing.T, n int) {
	t.Helper()
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := cc.c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		cancel()
		cc.mu.Lock()
		cc.sent++
		if err != nil {
			cc.failed++
			cc.failBy[err.Error()]++
		} else {
			cc.byServer[resp.GetServerId()]++
		}
		cc.mu.Unlock()
	}
}

func (cc *callerClient) counts() (sent, failed int64) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.sent, cc.failed
}

// TestDashboardShowsWhoCallsAService: a service of team shop is called by
// its own namespace and by a namespace of another team, each through
// grpc-go's xDS client with its own ServiceAccount, before and during a
// canary. The Rollout's status.callers (written by the leader from the
// callers' own load reports) and the dashboard in a real browser show each
// caller with exactly the requests and errors the caller counted, their sum
// equals the pod runtime's own counts over every pod of the service, and
// the canary's part equals what the canary's pods served. The calling
// team's page lists the service among those it depends on.
func TestDashboardShowsWhoCallsAService(t *testing.T) {
	webTeam := fmt.Sprintf("web-%d", time.Now().UnixNano()%100000)
	webNS := newNamespace(t, map[string]string{v1alpha1.LabelTeam: webTeam})
	// The stable version fails a tenth of its calls, so errors are counted
	// too; the canary is healthy and holds its first step.
	f := newDelivery(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "50", v1alpha1.AnnotationStepInterval: "10m", v1alpha1.AnnotationConsumers: webNS},
		errorRate("0.1"))
	target := "xds:///checkout." + f.Namespace
	web := newCallerClient(t, webNS, target)
	own := newCallerClient(t, f.Namespace, target)
	web.send(t, 150)
	own.send(t, 60)

	f.Update("example.com/checkout:v2")
	started := f.Wait(2*time.Minute, "canary carries 50%", func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CurrentWeight != 5000 || ro.Status.StepStartedAt == nil {
			return fmt.Errorf("phase %s at %s: %s", ro.Status.Phase, ro.Status.CurrentWeight, ro.Status.Message)
		}
		return nil
	})
	// During the canary only the other team calls.
	web.send(t, 200)
	webSent, webFailed := web.counts()
	ownSent, ownFailed := own.counts()
	t.Logf("web (%s) sent %d, %d failed; own namespace sent %d, %d failed", webNS, webSent, webFailed, ownSent, ownFailed)

	// What every pod of the service served, by track, as the pod runtime
	// counts it (canary pods carry the canary revision).
	served := func(ctx context.Context) (all, allErr, canary, canaryErr int64, err error) {
		// Every pod of the service, whatever its state: none was deleted.
		pods, err := env.Client().CoreV1().Pods(f.Namespace).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelService + "=checkout"})
		if err != nil {
			return 0, 0, 0, 0, err
		}
		for _, p := range pods.Items {
			c := env.PodRuntime().Counts(f.Namespace, p.Name)
			all, allErr = all+c.Requests, allErr+c.Errors
			if p.Labels[v1alpha1.LabelRevision] == started.Status.CanaryRevision {
				canary, canaryErr = canary+c.Requests, canaryErr+c.Errors
			}
		}
		return all, allErr, canary, canaryErr, nil
	}
	var ro *v1alpha1.Rollout
	rolloutPoll(t, 2*time.Minute, "status.callers equal to what the callers and the pods counted", func(ctx context.Context) error {
		ro = f.get(ctx)
		if ro == nil || ro.Status.Callers == nil {
			return fmt.Errorf("no status.callers yet")
		}
		got := map[string]v1alpha1.CallerLoad{}
		for _, c := range ro.Status.Callers.Callers {
			got[c.Namespace] = c
		}
		w, o := got[webNS], got[f.Namespace]
		if w.Requests != webSent || w.Errors != webFailed || o.Requests != ownSent || o.Errors != ownFailed || len(got) != 2 {
			return fmt.Errorf("status.callers %+v, want %s %d/%d and %s %d/%d", ro.Status.Callers.Callers, webNS, webSent, webFailed, f.Namespace, ownSent, ownFailed)
		}
		all, allErr, canary, canaryErr, err := served(ctx)
		if err != nil {
			return err
		}
		if all != w.Requests+o.Requests || allErr != w.Errors+o.Errors {
			return fmt.Errorf("pods served %d (%d errors), callers reported %d (%d errors)", all, allErr, w.Requests+o.Requests, w.Errors+o.Errors)
		}
		if canary == 0 || w.CanaryRequests != canary || w.CanaryErrors != canaryErr || o.CanaryRequests != 0 {
			return fmt.Errorf("canary pods served %d (%d errors); web's canary part %d (%d), own namespace's %d", canary, canaryErr, w.CanaryRequests, w.CanaryErrors, o.CanaryRequests)
		}
		return nil
	})
	w := ro.Status.Callers.Callers[0]
	t.Logf("status.callers: %s %d requests (%d errors), %d of them on the canary (%d errors); pods agree", w.Namespace, w.Requests, w.Errors, w.CanaryRequests, w.CanaryErrors)

	admin := startDashboard(t, "callers", env.Kubeconfig())
	b := newBrowser(t)
	b.open(t, admin+"/rollout/"+f.Namespace+"/checkout")
	row := func(c v1alpha1.CallerLoad) string {
		return fmt.Sprintf("%s\t%s\t%d\t%d\t", c.Namespace, webTeam, c.Requests, c.Errors)
	}
	b.waitText(t, time.Minute, "the rollout page lists the callers with their figures", containsAll(
		"caller namespace\tteam", row(w), strconv.FormatInt(w.CanaryRequests, 10), f.Namespace+"\tshop\t"+strconv.FormatInt(ownSent, 10)+"\t"+strconv.FormatInt(ownFailed, 10)))
	b.screenshot(t, "dashboard-callers")

	b.open(t, admin+"/team/"+webTeam)
	b.waitText(t, time.Minute, "the calling team's page lists the service it depends on", containsAll(
		"all callers' error rate", "checkout."+f.Namespace, "Progressing", strconv.FormatInt(webSent, 10)))
	b.screenshot(t, "dashboard-depends-on")
}

// get reads the Rollout, nil when it cannot.
func (f *deliveryFixture) get(ctx context.Context) *v1alpha1.Rollout {
	var ro v1alpha1.Rollout
	if err := f.Kube.Get(ctx, types.NamespacedName{Namespace: f.Namespace, Name: f.Name}, &ro); err != nil {
		return nil
	}
	return &ro
}
