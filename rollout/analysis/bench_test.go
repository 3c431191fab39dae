package analysis

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	reportPath = flag.String("analysis.report", "", "write the simulation benchmark's tables (Markdown) to this file")
	plotPath   = flag.String("analysis.plot", "", "write the simulation benchmark's plot (SVG) to this file")
	rolloutsN  = flag.Int("analysis.rollouts", 1000, "healthy rollouts per scenario in the simulation benchmark")
	runsN      = flag.Int("analysis.runs", 200, "runs per detection and promotion scenario in the simulation benchmark")
)

// BenchmarkAnalysisSimulation compares, on the same seeded traffic, the sequential analysis with the defaults a
// rollout gets, the checks this package had before (same defaults), a Flagger-style rule (the canary's error rate
// over each 10 s interval above the 1% ceiling in N consecutive intervals) calibrated by a search over N to the
// sequential analysis' false-rollback rate, and Wald's SPRT knowing the true rates (the floor). It reports:
//
//   - false rollbacks of healthy canaries at and just inside every limit, 1,000 rollouts of 30 minutes per
//     scenario at 5, 20 and 200 canary req/s (stable 9× the canary), read off at 2, 10 and 30 minutes, with
//     independent failures and with outages that hit both tracks at once;
//   - time to roll back canaries failing 100%, 20%, 5% and 2% of requests from the start, at 5, 10, 20 and 100
//     canary req/s with stable at 0.5% (200 runs each), and after ten clean minutes;
//   - time to promote a healthy canary through the default steps (1, 5, 25, 50% for 30 s each).
//
// One iteration runs everything (minutes of CPU); run it with -benchtime 1x (make bench-analysis).
func BenchmarkAnalysisSimulation(b *testing.B) {
	for range b.N {
		var rep strings.Builder
		fmt.Fprintf(&rep, "Measured by BenchmarkAnalysisSimulation (rollout/analysis/bench_test.go), seeded, on %s.\n\n",
			time.Now().UTC().Format("2006-01-02"))
		healthy := healthyTable(&rep)
		n, _ := calibrate(&rep, healthy)
		det := detectionTable(&rep, n)
		promotionTable(&rep)
		b.ReportMetric(healthy.worst(ruleSequential, 1800)*100, "seq-worst-false-rollback-%")
		b.ReportMetric(healthy.worst(ruleLegacy, 1800)*100, "legacy-worst-false-rollback-%")
		b.ReportMetric(float64(n), "flagger-N")
		if *reportPath != "" {
			if err := os.WriteFile(*reportPath, []byte(rep.String()), 0o644); err != nil {
				b.Fatal(err)
			}
		} else {
			b.Log("\n" + rep.String())
		}
		if *plotPath != "" {
			if err := os.WriteFile(*plotPath, []byte(plot(healthy, det, n)), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
}

const (
	ruleSequential = "sequential"
	ruleLegacy     = "previous checks"
	ruleOracle     = "oracle SPRT"
	maxFlaggerN    = 40
)

func flaggerName(n int) string { return fmt.Sprintf("Flagger-style N=%d", n) }

var benchRPS = []int{5, 20, 200}

// healthyScenario is a pair of true error rates within the limits (1% ceiling, 0.5-point tolerance).
type healthyScenario struct {
	label                string
	canaryErr, stableErr float64
	// bursts, when set, are outages on both tracks at burstErr for burstLen seconds, about every 10 minutes.
	bursts   bool
	burstErr float64
	burstLen int
}

var healthyScenarios = []healthyScenario{
	{label: "every limit at once: canary 1% at the ceiling, 0.5 points above stable 0.5%", canaryErr: 0.01, stableErr: 0.005},
	{label: "canary 0.9% vs stable 0.9%", canaryErr: 0.009, stableErr: 0.009},
	{label: "canary 0.9% vs stable 0.5%", canaryErr: 0.009, stableErr: 0.005},
	{label: "canary 0.5% vs stable 0.5%", canaryErr: 0.005, stableErr: 0.005},
	{label: "canary 1% vs stable 1%", canaryErr: 0.01, stableErr: 0.01},
	{label: "canary 0.5% vs stable 0%", canaryErr: 0.005},
	{"bursts: 0.5% vs 0.5% on average, 10 s at 5% on both tracks about every 10 min", 0.005, 0.005, true, 0.05, 10},
	{"bursts: 0.5% vs 0.5% on average, 5 s outages at 50% on both tracks about every 10 min", 0.005, 0.005, true, 0.5, 5},
}

// healthyResults holds, per scenario, canary req/s and rule, the rollback seconds of each rollout (0: none).
type healthyResults struct {
	at map[string]map[int]map[string][]int
}

// rate is the share of rollouts rolled back within the first limit seconds.
func (h healthyResults) rate(scenario string, rps int, rule string, limit int) float64 {
	ats := h.at[scenario][rps][rule]
	n := 0
	for _, a := range ats {
		if a > 0 && a <= limit {
			n++
		}
	}
	return float64(n) / float64(len(ats))
}

// worst is the highest false-rollback rate of a rule over the scenarios with independent failures.
func (h healthyResults) worst(rule string, limit int) float64 {
	w := 0.0
	for _, s := range healthyScenarios {
		if s.bursts {
			continue
		}
		for _, rps := range benchRPS {
			w = max(w, h.rate(s.label, rps, rule, limit))
		}
	}
	return w
}

// parallel runs f(i) for i in [0, n) on all CPUs.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

func healthyRules() ([]string, func() []rule) {
	names := []string{ruleSequential, ruleLegacy}
	for n := 1; n <= maxFlaggerN; n++ {
		names = append(names, flaggerName(n))
	}
	return names, func() []rule {
		rs := []rule{sequentialRule{cfg: defaultConfig()}, newLegacyRule()}
		for n := 1; n <= maxFlaggerN; n++ {
			rs = append(rs, newFlaggerRule(n))
		}
		return rs
	}
}

func healthyTable(rep *strings.Builder) healthyResults {
	rollouts := *rolloutsN
	names, rules := healthyRules()
	res := healthyResults{at: map[string]map[int]map[string][]int{}}
	type job struct {
		s   healthyScenario
		rps int
	}
	var jobs []job
	for _, s := range healthyScenarios {
		res.at[s.label] = map[int]map[string][]int{}
		for _, rps := range benchRPS {
			res.at[s.label][rps] = map[string][]int{}
			for _, n := range names {
				res.at[s.label][rps][n] = make([]int, rollouts)
			}
			jobs = append(jobs, job{s, rps})
		}
	}
	var mu sync.Mutex
	parallel(len(jobs)*rollouts, func(i int) {
		j, r := jobs[i/rollouts], i%rollouts
		w := world{canaryRPS: j.rps, stableRPS: 9 * j.rps, canaryErr: j.s.canaryErr, stableErr: j.s.stableErr,
			length: 30 * time.Minute, seed: uint64(100_000 + r)}
		if j.s.bursts {
			w.bursts, w.burstStart, w.burstLen, w.burstErr = true, 1.0/600, j.s.burstLen, j.s.burstErr
		}
		ats := run(w, rules())
		mu.Lock()
		for k, n := range names {
			res.at[j.s.label][j.rps][n][r] = ats[k]
		}
		mu.Unlock()
	})
	fmt.Fprintf(rep, "### False rollbacks of healthy canaries\n\n")
	fmt.Fprintf(rep, "%d rollouts per row, stable traffic 9× the canary's, one evaluation a second; the share rolled back "+
		"within 2 / 10 / 30 minutes. Defaults: 1%% ceiling, 95%% confidence, 0.5-point tolerance.\n\n", rollouts)
	fmt.Fprintf(rep, "| scenario | canary req/s | sequential | previous checks |\n|---|---|---|---|\n")
	for _, s := range healthyScenarios {
		for _, rps := range benchRPS {
			cell := func(rule string) string {
				return fmt.Sprintf("%s / %s / %s", pctCell(res.rate(s.label, rps, rule, 120)),
					pctCell(res.rate(s.label, rps, rule, 600)), pctCell(res.rate(s.label, rps, rule, 1800)))
			}
			fmt.Fprintf(rep, "| %s | %d | %s | %s |\n", s.label, rps, cell(ruleSequential), cell(ruleLegacy))
		}
	}
	fmt.Fprintf(rep, "\nWorst over the scenarios with independent failures, 30 minutes: sequential %s, previous checks %s.\n\n",
		pctCell(res.worst(ruleSequential, 1800)), pctCell(res.worst(ruleLegacy, 1800)))
	return res
}

func pctCell(r float64) string { return fmt.Sprintf("%.1f%%", r*100) }

// calibrate searches the Flagger-style rule's N: the smallest N whose worst false-rollback rate over the
// healthy scenarios with independent failures (30 minutes) is at most the sequential analysis' (and, for
// reference, at most 5%).
func calibrate(rep *strings.Builder, h healthyResults) (matched, at5 int) {
	target := h.worst(ruleSequential, 1800)
	fmt.Fprintf(rep, "### Calibrating the Flagger-style rule\n\n")
	fmt.Fprintf(rep, "Every 10 s the rule compares the canary's error rate over those 10 s with the 1%% ceiling and rolls "+
		"back after N failing intervals in a row. Search: N = 1…%d on the healthy scenarios above (independent failures, "+
		"30 minutes); the worst false-rollback rate for each N:\n\n", maxFlaggerN)
	fmt.Fprintf(rep, "| N | worst false rollbacks |\n|---|---|\n")
	for n := 1; n <= maxFlaggerN; n++ {
		w := h.worst(flaggerName(n), 1800)
		fmt.Fprintf(rep, "| %d | %s |\n", n, pctCell(w))
		if matched == 0 && w <= target {
			matched = n
		}
		if at5 == 0 && w <= 0.05 {
			at5 = n
		}
	}
	if matched == 0 {
		matched = maxFlaggerN
	}
	if at5 == 0 {
		at5 = maxFlaggerN
	}
	fmt.Fprintf(rep, "\nChosen: N = %d, the smallest at or below the sequential analysis' %s (N = %d would do for 5%%).\n\n",
		matched, pctCell(target), at5)
	return matched, at5
}

// detection holds p50 and p95 times to roll back, in seconds, per scenario key and rule.
type detection map[string]map[string][2]float64

func detectKey(errRate float64, rps int) string { return fmt.Sprintf("%g%%@%d", errRate*100, rps) }

func detectionTable(rep *strings.Builder, flaggerN int) detection {
	runs := *runsN
	errs := []float64{1, 0.2, 0.05, 0.02}
	rpss := []int{5, 10, 20, 100}
	type job struct {
		err     float64
		rps     int
		faultAt time.Duration
	}
	var jobs []job
	for _, e := range errs {
		for _, r := range rpss {
			jobs = append(jobs, job{e, r, 0})
		}
	}
	jobs = append(jobs, job{1, 20, 10 * time.Minute}, job{0.2, 20, 10 * time.Minute})
	names := []string{ruleSequential, ruleLegacy, flaggerName(flaggerN), ruleOracle}
	times := make([][][]float64, len(jobs))
	for i := range times {
		times[i] = make([][]float64, len(names))
		for k := range names {
			times[i][k] = make([]float64, runs)
		}
	}
	parallel(len(jobs)*runs, func(i int) {
		j, r := jobs[i/runs], i%runs
		w := world{canaryRPS: j.rps, stableRPS: 9 * j.rps, canaryErr: 0.005, stableErr: 0.005,
			faultAt: j.faultAt, faultErr: j.err, length: j.faultAt + 30*time.Minute, seed: uint64(200_000 + r)}
		if j.faultAt == 0 {
			w.canaryErr = j.err
		}
		from := int(j.faultAt/time.Second) + 1
		alt := min(j.err, 1-1e-9)
		ats := run(w, []rule{sequentialRule{cfg: defaultConfig()}, newLegacyRule(), newFlaggerRule(flaggerN),
			oracleRule{from: from, alt: alt, null: 0.01, alpha: 0.05, st: &second{}}})
		for k, at := range ats {
			t := math.Inf(1)
			if at > 0 {
				t = float64(at - from + 1)
			}
			times[i/runs][k][r] = t
		}
	})
	det := detection{}
	fmt.Fprintf(rep, "### Time to roll back a bad canary\n\n")
	fmt.Fprintf(rep, "Seconds from fault onset to the rollback decision, p50 / p95 over %d runs; stable at 0.5%% with 9× the "+
		"canary's traffic; ∞: not within 30 minutes. The oracle is Wald's SPRT of the true rate against the 1%% ceiling at "+
		"α = 5%%, knowing the rate and the onset.\n\n", runs)
	fmt.Fprintf(rep, "| canary errors | canary req/s | onset |")
	for _, n := range names {
		fmt.Fprintf(rep, " %s |", n)
	}
	fmt.Fprintf(rep, "\n|---|---|---|%s\n", strings.Repeat("---|", len(names)))
	for i, j := range jobs {
		onset := "at start"
		if j.faultAt > 0 {
			onset = fmt.Sprintf("after %v clean", j.faultAt)
		}
		fmt.Fprintf(rep, "| %g%% | %d | %s |", j.err*100, j.rps, onset)
		for k, n := range names {
			ts := times[i][k]
			slices.Sort(ts)
			p50, p95 := ts[len(ts)/2], ts[len(ts)*95/100]
			fmt.Fprintf(rep, " %s / %s |", secs(p50), secs(p95))
			if j.faultAt == 0 {
				key := detectKey(j.err, j.rps)
				if det[key] == nil {
					det[key] = map[string][2]float64{}
				}
				label := n
				if strings.HasPrefix(n, "Flagger") {
					label = "Flagger-style"
				}
				det[key][label] = [2]float64{p50, p95}
			}
		}
		fmt.Fprintf(rep, "\n")
	}
	fmt.Fprintf(rep, "\n")
	return det
}

func secs(s float64) string {
	if math.IsInf(s, 1) {
		return "∞"
	}
	return fmt.Sprintf("%.0f", s)
}

// promotionTable simulates healthy canaries (0.5% on both tracks) through the default steps, 1, 5, 25 and 50% of
// the service's traffic for 30 s each, advancing when the interval has elapsed and the analysis says Continue.
// The sequential analysis counts since the canary began; the previous checks, as their shell did, counted since
// the step began.
func promotionTable(rep *strings.Builder) {
	runs := *runsN
	steps := []float64{0.01, 0.05, 0.25, 0.5}
	fmt.Fprintf(rep, "### Time to promote a healthy canary\n\n")
	fmt.Fprintf(rep, "Default steps 1, 5, 25, 50%% held 30 s each (2 minutes at the least), both tracks at 0.5%% errors; "+
		"p50 / p95 seconds to promotion over %d runs, and how many were rolled back instead.\n\n", runs)
	fmt.Fprintf(rep, "| service req/s | sequential | rolled back | previous checks | rolled back |\n|---|---|---|---|---|\n")
	for _, total := range []int{100, 1000} {
		var cells []string
		for _, legacy := range []bool{false, true} {
			var ts []float64
			back := 0
			for r := range runs {
				t, rolledBack := promote(total, steps, legacy, uint64(300_000+r))
				if rolledBack {
					back++
					continue
				}
				ts = append(ts, t)
			}
			slices.Sort(ts)
			cell := "–"
			if len(ts) > 0 {
				cell = fmt.Sprintf("%s / %s", secs(ts[len(ts)/2]), secs(ts[len(ts)*95/100]))
			}
			cells = append(cells, cell, fmt.Sprintf("%d", back))
		}
		fmt.Fprintf(rep, "| %d | %s |\n", total, strings.Join(cells, " | "))
	}
	fmt.Fprintf(rep, "\n")
}

func promote(total int, steps []float64, legacy bool, seed uint64) (float64, bool) {
	w := world{canaryErr: 0.005, stableErr: 0.005, seed: seed}
	rng := newRNG(w.seed)
	var cum, stepCum second
	var ring [10]second
	state := legacyState{}
	step, stepStart := 0, 0
	for s := 1; s <= 3600; s++ {
		c := max(1, int(math.Round(steps[step]*float64(total))))
		sec := second{cReq: uint64(c), sReq: uint64(total - c)}
		sec.cErr = binomial(rng, c, w.canaryErr)
		sec.sErr = binomial(rng, total-c, w.stableErr)
		ring[s%10] = sec
		for _, acc := range []*second{&cum, &stepCum} {
			acc.cReq += sec.cReq
			acc.cErr += sec.cErr
			acc.sReq += sec.sReq
			acc.sErr += sec.sErr
		}
		var recent second
		for _, r := range ring {
			recent.cReq += r.cReq
			recent.cErr += r.cErr
			recent.sReq += r.sReq
			recent.sErr += r.sErr
		}
		sample := func(x second) Tracks {
			return Tracks{Stable: TrackSample{Requests: x.sReq, Errors: x.sErr, Present: true},
				Canary: TrackSample{Requests: x.cReq, Errors: x.cErr, Present: true}}
		}
		var action Action
		if legacy {
			out, next, err := legacyEvaluate(state, Input{Recent: sample(recent), Cumulative: sample(stepCum)}, legacyConfig(),
				simStart.Add(time.Duration(s)*time.Second))
			if err != nil {
				panic(err)
			}
			state, action = next, out.Action
		} else {
			action = evaluate(Input{Recent: sample(recent), Cumulative: sample(cum)}, defaultConfig(), false).Action
		}
		switch {
		case action == Rollback:
			return 0, true
		case action == Continue && s-stepStart >= 30:
			step++
			stepStart = s
			stepCum = second{}
			if step == len(steps) {
				return float64(s), false
			}
		}
	}
	return math.Inf(1), false
}
