package rollout

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/rollout/analysis"
	"github.com/sluice-dev/sluice/rollout/metrics"
)

// fleetLoad is the load reports of a fleet of callers: per key (track,
// revision and origin) a rate of requests and errors per second, integrated
// into cumulative totals whenever they are read, as the LRS aggregator's
// grow.
type fleetLoad struct {
	mu     sync.Mutex
	last   time.Time
	rates  map[metrics.Key][2]float64 // requests, errors per second
	totals map[metrics.Key][2]float64
}

func (f *fleetLoad) set(k metrics.Key, requests, errors float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advance()
	f.rates[k] = [2]float64{requests, errors}
}

// advance integrates the rates up to now; f.mu is held.
func (f *fleetLoad) advance() {
	now := time.Now()
	dt := now.Sub(f.last).Seconds()
	f.last = now
	for k, r := range f.rates {
		t := f.totals[k]
		f.totals[k] = [2]float64{t[0] + r[0]*dt, t[1] + r[1]*dt}
	}
}

func (f *fleetLoad) read() map[metrics.Key]metrics.Totals {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advance()
	out := make(map[metrics.Key]metrics.Totals, len(f.totals))
	for k, t := range f.totals {
		out[k] = metrics.Totals{Requests: uint64(t[0]), Errors: uint64(t[1])}
	}
	return out
}

// TestLoadProvenanceThroughTheController runs the rollout controller
// against the real API server on load reports that say who reported them.
// A healthy canary reported only through the legacy listener is never
// advanced (its promotion evidence stays empty) and the status says where
// its sample came from; the same legacy caller's errors then roll it back.
// A canary whose one caller is authenticated is promoted, and the status
// says that one identity supplied the whole sample.
func TestLoadProvenanceThroughTheController(t *testing.T) {
	load := &fleetLoad{last: time.Now(), rates: map[metrics.Key][2]float64{}, totals: map[metrics.Key][2]float64{}}
	lr, err := metrics.NewLoadReports(load.read, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if err := lr.Run(ctx, 250*time.Millisecond); err != nil {
			t.Errorf("load reports: %v", err)
		}
	}()
	h := newHarness(t, lr)
	key := func(track, revision, origin string, legacy bool) metrics.Key {
		return metrics.Key{Namespace: h.ns, Service: "checkout", Track: track, Revision: revision, Origin: origin, Legacy: legacy}
	}
	load.set(key(v1alpha1.TrackStable, "r1", "token:web/frontend", false), 200, 0)

	h.deploy(ctx, "checkout", "example.com/checkout:v1", "r1")
	h.waitRollout("checkout", "first deployment stable", time.Minute, func(ro *v1alpha1.Rollout) bool {
		return ro.Status.Phase == v1alpha1.PhaseIdle && ro.Status.StableRevision == "r1"
	})

	// r2 is healthy, but only the legacy listener reports on it.
	load.set(key(v1alpha1.TrackCanary, "r2", "legacy:shop", true), 200, 0)
	h.deploy(ctx, "checkout", "example.com/checkout:v2", "r2")
	ro := h.waitRollout("checkout", "a legacy-only canary analysed on thousands of requests", 2*time.Minute, func(ro *v1alpha1.Rollout) bool {
		s := ro.Status.Sources
		return ro.Status.CanaryRevision == "r2" && s != nil && s.Canary.Requests >= 2000
	})
	if ro.Status.Phase != v1alpha1.PhaseProgressing || ro.Status.CurrentStepIndex != 0 {
		t.Fatalf("a canary with only legacy reports left its first step: phase %s, step %d, message %q",
			ro.Status.Phase, ro.Status.CurrentStepIndex, ro.Status.Message)
	}
	if s := ro.Status.Sources.Canary; s.EvidenceRequests != 0 || s.LegacyPercent != "100%" || s.LegacyRequests != s.Requests {
		t.Fatalf("canary sources %+v, want every request from the legacy listener and no evidence", s)
	}
	if !strings.Contains(ro.Status.Sources.Message, "100% of the canary sample came from the legacy listener and cannot promote") {
		t.Fatalf("sources message %q does not say where the canary's sample came from", ro.Status.Sources.Message)
	}
	if !strings.Contains(ro.Status.Message, "promotion evidence") {
		t.Fatalf("status message %q does not say that promotion evidence is missing", ro.Status.Message)
	}

	// The legacy caller's errors still roll the canary back.
	load.set(key(v1alpha1.TrackCanary, "r2", "legacy:shop", true), 200, 60)
	ro = h.waitRollout("checkout", "rolled back on legacy errors", 2*time.Minute, func(ro *v1alpha1.Rollout) bool {
		return ro.Status.Phase == v1alpha1.PhaseRolledBack
	})
	if f := ro.Status.FailedRevisions; len(f) != 1 || f[0].Revision != "r2" {
		t.Fatalf("failed revisions %+v, want r2", f)
	}

	// r3 has one authenticated caller: it is promoted, on that one's word.
	load.set(key(v1alpha1.TrackCanary, "r2", "legacy:shop", true), 0, 0)
	load.set(key(v1alpha1.TrackCanary, "r3", "token:web/frontend", false), 200, 0)
	h.deploy(ctx, "checkout", "example.com/checkout:v3", "r3")
	ro = h.waitRollout("checkout", "promoted on one authenticated caller's reports", 3*time.Minute, func(ro *v1alpha1.Rollout) bool {
		return ro.Status.Phase == v1alpha1.PhaseSucceeded && ro.Status.StableRevision == "r3"
	})
	if s := ro.Status.Sources; s == nil || s.Canary.TopIdentity != "token:web/frontend" || s.Canary.TopPercent != "100%" ||
		!strings.Contains(s.Message, "one identity (token:web/frontend) supplied 100% of the canary's authenticated sample") {
		t.Fatalf("sources %+v, want the one identity named with its 100%% share", s)
	}
}

func TestSourcesStatusMessage(t *testing.T) {
	cases := map[string]struct {
		p    Provenance
		want string
	}{
		"nothing to say": {
			p: Provenance{Canary: analysis.PromotionEvidence([]analysis.OriginSample{
				{Identity: "token:web/a", Requests: 50}, {Identity: "token:web/b", Requests: 50}})},
			want: "",
		},
		"one of two identities dominates": {
			p: Provenance{Canary: analysis.PromotionEvidence([]analysis.OriginSample{
				{Identity: "token:web/a", Requests: 90}, {Identity: "token:web/b", Requests: 10}})},
			want: "token:web/a supplied 90% of the canary's authenticated sample and counts for at most as much as the other identity",
		},
		"a dominating identity": {
			p: Provenance{Canary: analysis.PromotionEvidence([]analysis.OriginSample{
				{Identity: "token:web/a", Requests: 900}, {Identity: "token:web/b", Requests: 50}, {Identity: "token:web/c", Requests: 50}})},
			want: "token:web/a supplied 90% of the canary's authenticated sample and counts for at most as much as the other 2 identities together",
		},
		"no authentication": {
			p:    Provenance{Stable: analysis.PromotionEvidence([]analysis.OriginSample{{Requests: 10}})},
			want: "the stable's reports carry no identity (xDS authentication is off): all of them count as evidence",
		},
		"legacy share on both tracks": {
			p: Provenance{
				Canary: analysis.PromotionEvidence([]analysis.OriginSample{{Identity: "legacy:shop", Legacy: true, Requests: 10}}),
				Stable: analysis.PromotionEvidence([]analysis.OriginSample{
					{Identity: "legacy:shop", Legacy: true, Requests: 2}, {Identity: "token:web/a", Requests: 4}, {Identity: "token:web/b", Requests: 4}}),
			},
			want: "100% of the canary sample came from the legacy listener and cannot promote; 20% of the stable sample came from the legacy listener and cannot promote",
		},
		"a huge identity name stays bounded": {
			p:    Provenance{Canary: analysis.PromotionEvidence([]analysis.OriginSample{{Identity: "token:" + strings.Repeat("ü", 4000), Requests: 1}})},
			want: "one identity (token:",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := sourcesStatus(tc.p)
			if !strings.HasPrefix(got.Message, tc.want) || (tc.want == "" && got.Message != "") {
				t.Fatalf("message %q, want it to start with %q", got.Message, tc.want)
			}
			if len(got.Message) > v1alpha1.MaxSourcesMessage || !utf8.ValidString(got.Message) ||
				len(got.Canary.TopIdentity) > maxIdentityShown || !utf8.ValidString(got.Canary.TopIdentity) {
				t.Fatalf("unbounded or invalid text: message %d bytes, top identity %d bytes", len(got.Message), len(got.Canary.TopIdentity))
			}
		})
	}
}
