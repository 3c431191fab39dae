package chaos

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/e2e/testkit"
	"github.com/sluice-dev/sluice/local/fleet"
	"github.com/sluice-dev/sluice/traffic"
	"github.com/sluice-dev/sluice/webhook"
)

// step is one state of a Rollout as a watcher saw it.
type step struct {
	index   int32
	started time.Time
	phase   v1alpha1.RolloutPhase
}

// history records every state the Rollout passes through until stopped.
type history struct {
	mu     sync.Mutex
	steps  []step
	cancel func()
	done   chan struct{}
}

func (s *service) record() *history {
	ctx, cancel := context.WithCancel(context.Background())
	h := &history{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for ctx.Err() == nil {
			if ro, err := s.Rollout(ctx); err == nil {
				st := step{index: ro.Status.CurrentStepIndex, phase: ro.Status.Phase}
				if ro.Status.StepStartedAt != nil {
					st.started = ro.Status.StepStartedAt.Time
				}
				h.mu.Lock()
				if n := len(h.steps); n == 0 || h.steps[n-1] != st {
					h.steps = append(h.steps, st)
				}
				h.mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	s.T.Cleanup(h.stop)
	return h
}

func (h *history) stop() { h.cancel(); <-h.done }

// check fails t if a step of a progressing Rollout went back, started twice
// or was skipped among the first n; it returns when each step started.
func (h *history) check(t testing.TB, n int32) map[int32]time.Time {
	t.Helper()
	h.stop()
	h.mu.Lock()
	defer h.mu.Unlock()
	started := map[int32]time.Time{}
	var last int32
	for _, s := range h.steps {
		if s.phase != v1alpha1.PhaseProgressing {
			continue
		}
		if s.index < last {
			t.Errorf("step went back from %d to %d: %+v", last, s.index, h.steps)
		}
		last = s.index
		if s.started.IsZero() {
			continue
		}
		if prev, ok := started[s.index]; ok && !prev.Equal(s.started) {
			t.Errorf("step %d started twice (%s, then %s): repeated", s.index, prev, s.started)
		}
		started[s.index] = s.started
	}
	for i := range n {
		if _, ok := started[i]; !ok {
			t.Errorf("step %d was never confirmed: skipped (history %+v)", i, h.steps)
		}
	}
	return started
}

func stepConfirmed(i int32) func(*v1alpha1.Rollout) error {
	return func(ro *v1alpha1.Rollout) error {
		if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CurrentStepIndex < i || ro.Status.StepStartedAt == nil {
			return fmt.Errorf("phase %s, step %d, started %v", ro.Status.Phase, ro.Status.CurrentStepIndex, ro.Status.StepStartedAt)
		}
		return nil
	}
}

// leader waits until a running replica leads and returns it.
func leader(t testing.TB) *fleet.Replica {
	t.Helper()
	var r *fleet.Replica
	testkit.Poll(t, time.Minute, "a replica leads", func(ctx context.Context) error {
		var err error
		r, err = sluice.Leader(ctx)
		return err
	})
	return r
}

// killLeader kills the leading replica (SIGKILL; it is started again
// after the test) and waits until another one leads.
func killLeader(t testing.TB) (old, next *fleet.Replica, killed time.Time) {
	t.Helper()
	old = leader(t)
	restartAfter(t, old)
	old.Kill()
	killed = time.Now()
	if next = leader(t); next == old {
		t.Fatalf("%s still leads after it was killed", old.Name)
	}
	return old, next, killed
}

// restartAfter restarts r when the test ends, so the next test has the
// whole fleet again.
func restartAfter(t testing.TB, r *fleet.Replica) {
	t.Cleanup(func() {
		if r.Running() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := r.Start(ctx); err != nil {
			t.Errorf("restart %s: %v", r.Name, err)
		}
	})
}

// TestChaosLeaderKilledMidRollout kills the leader (SIGKILL) while a
// rollout is between steps, under continuous traffic: the other replica
// takes over, the rollout neither repeats nor skips a step, and no RPC fails.
func TestChaosLeaderKilledMidRollout(t *testing.T) {
	s := deploy(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,40,60", v1alpha1.AnnotationStepInterval: "6s"})
	traffic := []*testkit.Load{testkit.StartLoad(t, s.dial(t), 50), testkit.StartLoad(t, s.dial(t), 50)}
	h := s.record()
	s.Update("example.com/checkout:v2")
	s.Wait(2*time.Minute, "second step confirmed", stepConfirmed(1))

	old, next, killed := killLeader(t)
	t.Logf("%s leads %s after %s was killed", next.Name, time.Since(killed).Round(time.Millisecond), old.Name)
	s.Wait(4*time.Minute, "promoted by the new leader", testkit.PhaseIs(v1alpha1.PhaseSucceeded))
	started := h.check(t, 3)
	if at, ok := started[2]; ok && at.After(killed) {
		t.Logf("failover figure: leader killed → next step confirmed in %s (lease 4s, renew 3s, retry 500ms; step interval 6s)", at.Sub(killed).Round(time.Millisecond))
	}
	for _, l := range traffic {
		if answers := l.Check(t); answers["v2"] == 0 {
			t.Errorf("v2 never answered: %v", answers)
		}
	}
}

// TestChaosClientsReplicaKilled kills the replica the client's xDS stream
// goes to: the client reconnects through the front to the survivor and
// receives the next configuration from it (the promoted version's
// endpoints, as the old ones go away) without a failed RPC. The client
// keeps its cached routes meanwhile, so no failed RPC alone proves nothing:
// it must also be answered by the new version only, which needs the
// configuration published after the kill.
func TestChaosClientsReplicaKilled(t *testing.T) {
	s := deploy(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "50", v1alpha1.AnnotationStepInterval: "5s"})
	before := map[string]int{}
	for _, r := range sluice.Replicas {
		before[r.XDSAddr()] = sluice.XDS.Connections(r.XDSAddr())
	}
	traffic := testkit.StartLoad(t, s.dial(t), 50)
	var victim *fleet.Replica
	for _, r := range sluice.Replicas {
		if sluice.XDS.Connections(r.XDSAddr()) > before[r.XDSAddr()] {
			victim = r
		}
	}
	if victim == nil {
		t.Fatal("the client's connection reached no replica through the front")
	}
	s.Update("example.com/checkout:v2")
	s.Wait(2*time.Minute, "canary at 50%", stepConfirmed(0))
	restartAfter(t, victim)
	victim.Kill()
	killed := time.Now()
	s.Wait(4*time.Minute, "promoted", testkit.PhaseIs(v1alpha1.PhaseSucceeded))
	// The old pods go away as the promoted version rolls out: a client
	// still on the configuration it had when its replica died would fail.
	testkit.Poll(t, 2*time.Minute, "only v2 answers", func(context.Context) error {
		if _, last, _ := traffic.Seen("v1"); time.Since(last) < 3*time.Second {
			return fmt.Errorf("v1 answered %s ago", time.Since(last).Round(time.Millisecond))
		}
		if _, last, _ := traffic.Seen("v2"); time.Since(last) > time.Second {
			return fmt.Errorf("v2 last answered %s ago", time.Since(last).Round(time.Millisecond))
		}
		return nil
	})
	t.Logf("%s (the client's replica) killed; only v2 answers %s later", victim.Name, time.Since(killed).Round(time.Millisecond))
	traffic.Check(t)
}

// TestChaosAPIServerPausedLongerThanTheLease stops the API server
// (SIGSTOP) for longer than the lease: no replica can renew, so the leader
// stops its leader-only work, but every replica keeps serving admission and
// xDS; once the API server resumes, a replica leads again and the rollout
// goes on to the end, with no failed RPC throughout.
func TestChaosAPIServerPausedLongerThanTheLease(t *testing.T) {
	s := deploy(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,40", v1alpha1.AnnotationStepInterval: "5s"})
	traffic := testkit.StartLoad(t, s.dial(t), 50)
	// Every replica verifies the clients' token once now: while the API
	// server is paused no token can be reviewed, and a replica serves a
	// new stream only on a verdict it holds (see docs/security.md).
	for _, r := range sluice.Replicas {
		testkit.StartLoad(t, s.dialVia(t, r.XDSAddr()), 1).Check(t)
	}
	s.Update("example.com/checkout:v2")
	s.Wait(2*time.Minute, "first step confirmed", stepConfirmed(0))

	apiserver := env.Component("kube-apiserver")
	if err := apiserver.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := apiserver.Signal(syscall.SIGCONT); err != nil {
				t.Errorf("resume the API server: %v", err)
			}
		}
	}
	defer resume()

	// Lease 4 s, renew deadline 3 s: by 8 s no replica leads.
	testkit.Poll(t, time.Minute, "no replica leads while the API server is paused", func(ctx context.Context) error {
		if r, err := sluice.Leader(ctx); err == nil {
			return fmt.Errorf("%s still leads", r.Name)
		}
		return nil
	})
	t.Logf("leader work stopped %s after the API server was paused", time.Since(paused).Round(time.Millisecond))
	for _, r := range sluice.Replicas {
		if !r.Running() {
			t.Fatalf("%s exited while the API server was paused:\n%s", r.Name, r.Logs(30))
		}
		if err := admit(r); err != nil {
			t.Errorf("%s does not serve admission while the API server is paused: %v", r.Name, err)
		}
	}
	// A client that connects now, with a token the replicas verified
	// before, is configured from their caches.
	fresh := testkit.StartLoad(t, s.dial(t), 10)

	resume()
	leader(t)
	s.Wait(4*time.Minute, "promoted after the API server resumed", testkit.PhaseIs(v1alpha1.PhaseSucceeded))
	traffic.Check(t)
	fresh.Check(t)
}

// admit posts an AdmissionReview of a Deployment straight to r's
// validating webhook and wants any answer for it.
func admit(r *fleet.Replica) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	d := &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "probe"}}
	raw, err := json.Marshal(d)
	if err != nil {
		return err
	}
	review := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "chaos-probe", Operation: admissionv1.Create, Namespace: "default", Name: "probe",
			Kind:     metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
			Resource: metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
			Object:   runtime.RawExtension{Raw: raw}}}
	body, err := json.Marshal(review)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Post(fmt.Sprintf("https://127.0.0.1:%d%s", r.Webhook, webhook.PathValidateDeployment), "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return fmt.Errorf("%s: %w", resp.Status, err)
	}
	if out.Response == nil || out.Response.UID != "chaos-probe" {
		return fmt.Errorf("%s: no answer to the review: %+v", resp.Status, out.Response)
	}
	return nil
}

// TestChaosHungProxiesAreNamedAndSkipped connects, on each replica, a proxy
// that stops answering after its first route configuration: the rollout
// goes on once they are stale (--proxy-stale-after, 5 s here), and the
// Rollout names them.
func TestChaosHungProxiesAreNamedAndSkipped(t *testing.T) {
	s := deploy(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,40", v1alpha1.AnnotationStepInterval: "5s"})
	traffic := testkit.StartLoad(t, s.dial(t), 50)
	want := map[string]bool{}
	for _, r := range sluice.Replicas {
		node := proxyNode("hung", r.Name)
		s.rawProxy(t, r.XDSAddr(), node, proxyHangs)
		want[node] = true
	}
	s.Update("example.com/checkout:v2")
	named := map[string]bool{}
	s.Wait(4*time.Minute, "promoted past the hung proxies", func(ro *v1alpha1.Rollout) error {
		for _, n := range ro.Status.Proxies.StaleNodes {
			for node := range want {
				if strings.Contains(n, node) {
					named[node] = true
				}
			}
		}
		return testkit.PhaseIs(v1alpha1.PhaseSucceeded)(ro)
	})
	for node := range want {
		if !named[node] {
			t.Errorf("hung proxy %s was never named stale on the Rollout", node)
		}
	}
	traffic.Check(t)
}

// TestChaosNackingProxiesHoldTheStep connects, on each replica, a proxy of
// the service's own namespace that rejects every route configuration after
// its first: the step holds with the rejection on the Rollout; once those
// proxies are gone, the rollout goes on to the end.
func TestChaosNackingProxiesHoldTheStep(t *testing.T) {
	s := deploy(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,40", v1alpha1.AnnotationStepInterval: "5s"})
	traffic := testkit.StartLoad(t, s.dial(t), 50)
	var stops []func()
	for _, r := range sluice.Replicas {
		stops = append(stops, s.rawProxy(t, r.XDSAddr(), proxyNode("nack", r.Name), proxyNacks))
	}
	s.Update("example.com/checkout:v2")
	ro := s.Wait(2*time.Minute, "the step held by the NACKs, with the reason", func(ro *v1alpha1.Rollout) error {
		if !strings.Contains(ro.Status.Message, "rejects every route configuration") {
			return fmt.Errorf("phase %s, step %d: the rejection is not on the status", ro.Status.Phase, ro.Status.CurrentStepIndex)
		}
		// The leader's own rejections show on the TrafficReady condition
		// as soon as they happen; the step's confirmation, which asks every
		// replica, counts them all.
		if ro.Status.Proxies.Nacked < int32(len(sluice.Replicas)) {
			return fmt.Errorf("phase %s, step %d: %d proxies counted as rejecting", ro.Status.Phase, ro.Status.CurrentStepIndex, ro.Status.Proxies.Nacked)
		}
		return nil
	})
	if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.StepStartedAt != nil {
		t.Errorf("a NACKed step counted: phase %s, step %d started %v", ro.Status.Phase, ro.Status.CurrentStepIndex, ro.Status.StepStartedAt)
	}
	for _, r := range sluice.Replicas {
		if !strings.Contains(ro.Status.Message, proxyNode("nack", r.Name)) && ro.Status.Proxies.Nacked < int32(len(sluice.Replicas)) {
			t.Errorf("the NACK of %s's proxy is not counted: %q, proxies %+v", r.Name, ro.Status.Message, ro.Status.Proxies)
		}
	}
	for _, stop := range stops {
		stop()
	}
	s.Wait(4*time.Minute, "promoted once the rejecting proxies left", testkit.PhaseIs(v1alpha1.PhaseSucceeded))
	traffic.Check(t)
}

// TestChaosSlowProxyOnTheFollowerDelaysTheStep connects a proxy that takes
// slowAck to acknowledge to the replica that does not lead: the leader's
// step waits for it (the fleet's proxies, not the leader's alone, carry a
// step), so the step starts only after that proxy's acknowledgement.
func TestChaosSlowProxyOnTheFollowerDelaysTheStep(t *testing.T) {
	s := deploy(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,40", v1alpha1.AnnotationStepInterval: "5s"})
	lead, follower := leaderAndFollower(t)
	slowProxyHoldsTheStep(t, s, lead, follower)
}

// TestChaosRestartedFollowerIsWaitedFor kills the follower for longer than
// the peer grace while the leader goes on without it, starts it again and
// at once connects a proxy slow to acknowledge to it: the next step waits
// for that proxy. The leader's connection to the dead process is then still
// in its backoff and fails at once with the old error; the new process
// must not be judged by how long the old one has been gone.
func TestChaosRestartedFollowerIsWaitedFor(t *testing.T) {
	s := deploy(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,40", v1alpha1.AnnotationStepInterval: "5s"})
	away := deploy(t, "example.com/checkout:v1", map[string]string{
		v1alpha1.AnnotationSteps: "20,40", v1alpha1.AnnotationStepInterval: "5s"})
	lead, follower := leaderAndFollower(t)
	restartAfter(t, follower)
	follower.Kill()
	killed := time.Now()
	// A rollout while the follower is away: the leader asks for it at every
	// step and finds it gone.
	awayLoad := testkit.StartLoad(t, away.dial(t), 20)
	away.Update("example.com/checkout:v2")
	away.Wait(4*time.Minute, "promoted without the follower", testkit.PhaseIs(v1alpha1.PhaseSucceeded))
	awayLoad.Check(t)
	if grace := traffic.DefaultPeerGrace; time.Since(killed) < grace+time.Second {
		time.Sleep(grace + time.Second - time.Since(killed))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := follower.Start(ctx); err != nil {
		t.Fatalf("restart %s: %v", follower.Name, err)
	}
	t.Logf("%s started again %s after it was killed", follower.Name, time.Since(killed).Round(time.Millisecond))
	if next := leader(t); next != lead {
		t.Fatalf("%s leads, want %s still", next.Name, lead.Name)
	}
	slowProxyHoldsTheStep(t, s, lead, follower)
}

// leaderAndFollower returns the replica that leads and another one.
func leaderAndFollower(t testing.TB) (lead, follower *fleet.Replica) {
	t.Helper()
	lead = leader(t)
	for _, r := range sluice.Replicas {
		if r != lead {
			follower = r
		}
	}
	return lead, follower
}

// slowProxyHoldsTheStep connects a proxy that takes slowAck to acknowledge
// to follower, applies v2 to s under traffic and checks that the first step
// started only once that proxy acknowledged it and that the step's count
// names both replicas; then the rollout goes on to its promotion.
func slowProxyHoldsTheStep(t *testing.T, s *service, lead, follower *fleet.Replica) {
	t.Helper()
	_, acks := s.rawProxyAcks(t, follower.XDSAddr(), proxyNode("slow", follower.Name), proxySlow)
	traffic := testkit.StartLoad(t, s.dial(t), 50)
	updated := time.Now()
	s.Update("example.com/checkout:v2")
	ro := s.Wait(2*time.Minute, "first step confirmed", stepConfirmed(0))
	var after []time.Time
	for _, a := range acks() {
		if a.After(updated) {
			after = append(after, a)
		}
	}
	if len(after) == 0 {
		t.Fatalf("the slow proxy acknowledged nothing after the update")
	}
	// StepStartedAt has a resolution of a second.
	started := ro.Status.StepStartedAt.Time
	if started.Add(time.Second).Before(after[0]) {
		t.Errorf("the step started at %s, before the follower's slow proxy acknowledged at %s", started.Format(time.RFC3339Nano), after[0].Format(time.RFC3339Nano))
	}
	per := map[string]v1alpha1.ReplicaProxies{}
	for _, r := range ro.Status.Proxies.Replicas {
		per[r.Replica] = r
	}
	if _, ok := per[lead.Name]; !ok || per[follower.Name].Acked < 1 {
		t.Errorf("status.proxies.replicas %+v, want both replicas, %s with the slow proxy acknowledged", ro.Status.Proxies.Replicas, follower.Name)
	}
	t.Logf("step confirmed %s after the update; the follower's slow proxy acknowledged %s after it (it waits %s)",
		started.Sub(updated).Round(time.Second), after[0].Sub(updated).Round(time.Millisecond), slowAck)
	s.Wait(4*time.Minute, "promoted", testkit.PhaseIs(v1alpha1.PhaseSucceeded))
	traffic.Check(t)
}
