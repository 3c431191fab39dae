package rollout

import (
	"encoding/json"
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
