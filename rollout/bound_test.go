package rollout

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// TestNackFloodKeepsStatusSmall gives Step what a thousand NACKing proxies
// with megabyte details would produce: the status and its Events stay a few
// kilobytes of valid UTF-8, so the status write cannot be refused for size
// and the Rollout never freezes.
func TestNackFloodKeepsStatusSmall(t *testing.T) {
	var msgs []string
	for i := range 1000 {
		msgs = append(msgs, "node-"+strings.Repeat("x", i%7)+": "+strings.Repeat("ü", 1<<19))
	}
	o := Observed{Deployment: pausedFor("b"), Spec: testSpec(v1alpha1.ModeCanary), Canary: readyCanary("b", 1),
		Status: progressingAt(0, 100, nil), Now: t0,
		Confirmed: &Confirmed{Weight: 100, Confirmation: Confirmation{Acked: 1, Nacked: 1000, NackMessages: msgs}}}
	r := Step(o)
	b, err := json.Marshal(r.Status)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 16<<10 {
		t.Fatalf("status is %d bytes after a NACK flood, want at most 16 KiB", len(b))
	}
	if !utf8.Valid(b) {
		t.Fatal("status is not valid UTF-8")
	}
	if !strings.Contains(r.Status.Message, "1000 proxies rejected") || !strings.Contains(r.Status.Proxies.LastNack, "node-") {
		t.Fatalf("the bounded status lost what matters: message %.200q, lastNack %.200q", r.Status.Message, r.Status.Proxies.LastNack)
	}
	for _, e := range r.Events {
		if len(e.Message) > maxStatusMessage || !utf8.ValidString(e.Message) {
			t.Fatalf("event %s is %d bytes (valid UTF-8 %v)", e.Reason, len(e.Message), utf8.ValidString(e.Message))
		}
	}
	// Bounding is idempotent: stepping the bounded status again changes nothing.
	o.Status = r.Status
	if again := Step(o); again.Status.Message != r.Status.Message || again.Status.Proxies.LastNack != r.Status.Proxies.LastNack {
		t.Fatalf("a second step changed the bounded text")
	}
}

// TestStaleProxiesAreNamedNotWaitedFor: a confirmation that skipped stale
// proxies starts the step, and the status counts them and names at most
// MaxStaleNodes of them.
func TestStaleProxiesAreNamedNotWaitedFor(t *testing.T) {
	var stale []string
	for i := range 25 {
		stale = append(stale, "hung-"+string(rune('a'+i)))
	}
	o := Observed{Deployment: pausedFor("b"), Spec: testSpec(v1alpha1.ModeCanary), Canary: readyCanary("b", 1),
		Status: progressingAt(0, 100, nil), Now: t0,
		Confirmed: &Confirmed{Weight: 100, Confirmation: Confirmation{Acked: 3, Stale: stale}}}
	r := Step(o)
	if r.Status.StepStartedAt == nil {
		t.Fatalf("stale proxies held the step: %q", r.Status.Message)
	}
	if r.Status.Proxies.Stale != 25 || len(r.Status.Proxies.StaleNodes) != v1alpha1.MaxStaleNodes || r.Status.Proxies.StaleNodes[0] != "hung-a" {
		t.Fatalf("proxies %+v, want 25 stale with the first %d named", r.Status.Proxies, v1alpha1.MaxStaleNodes)
	}
	if len(r.Events) == 0 || r.Events[len(r.Events)-1].Reason != "StaleProxies" {
		t.Fatalf("events %+v, want a StaleProxies warning", r.Events)
	}
}

// TestProxiesPerReplicaAreBounded: the per-replica counts reach the status,
// at most MaxReplicaProxies of them, names cut to 253 bytes.
func TestProxiesPerReplicaAreBounded(t *testing.T) {
	var replicas []v1alpha1.ReplicaProxies
	for i := range v1alpha1.MaxReplicaProxies + 4 {
		replicas = append(replicas, v1alpha1.ReplicaProxies{Replica: strings.Repeat("r", 300) + string(rune('a'+i)), Acked: 1})
	}
	o := Observed{Deployment: pausedFor("b"), Spec: testSpec(v1alpha1.ModeCanary), Canary: readyCanary("b", 1),
		Status: progressingAt(0, 100, nil), Now: t0,
		Confirmed: &Confirmed{Weight: 100, Confirmation: Confirmation{Acked: len(replicas), Replicas: replicas,
			Limits: slices.Repeat([]string{strings.Repeat("x", 600)}, v1alpha1.MaxProxyLimits+2)}}}
	status := Step(o).Status
	if n := len(status.Proxies.Limits); n != v1alpha1.MaxProxyLimits || len(status.Proxies.Limits[0]) > 512 {
		t.Fatalf("%d limit lines on the status, the first %d bytes", n, len(status.Proxies.Limits[0]))
	}
	got := status.Proxies.Replicas
	if len(got) != v1alpha1.MaxReplicaProxies {
		t.Fatalf("%d replicas on the status, want %d", len(got), v1alpha1.MaxReplicaProxies)
	}
	for _, r := range got {
		if len(r.Replica) > 253 || r.Acked != 1 {
			t.Fatalf("replica %q (%d bytes) acked %d", r.Replica, len(r.Replica), r.Acked)
		}
	}
}
