// Package analysis turns metric samples of a canary and its stable track into verdicts: continue, hold, or roll
// back. It is pure: no I/O, logger, metrics or clock; the caller passes the samples and the time.
//
// # The guarantee
//
// A canary whose true error rates are within their limits is rolled back with probability at most
// 1 − Config.Confidence over the whole rollout, however long it runs and however often it is evaluated. "Within
// the limits" means: every canary request fails independently (given the past) with a probability at most
// MaxErrorRate, and at most the stable track's rate plus the tolerance max(AbsoluteTolerance, RelativeTolerance ×
// stable rate); with a latency ceiling and a source that counts slow requests, at most 1% of requests are slower
// than the ceiling. Checks on gauges (a p99 without counts, custom metrics) are outside the guarantee and their
// decisions say "not error-controlled".
//
// # Checks
//
// Every error-controlled check is an anytime-valid sequential test on the counts since the canary revision began
// (Input.Cumulative), and the rate checks also on the recent window (Input.Recent):
//
//   - error-rate: the test of "canary error rate ≤ MaxErrorRate". The statistic is a mixture of likelihood
//     ratios over a fixed grid of alternative rates above the ceiling (see sequential.go). For any true rate at
//     or below the ceiling it is a nonnegative supermartingale starting at 1 (the ceiling itself is the worst
//     case of the composite null, since the expected one-request factor increases with the true rate), so by
//     Ville's inequality it ever reaches 1/α with probability at most α.
//   - the same test on the recent window, which starts after the first j canary requests: a fault that begins
//     after a long clean run is caught within seconds instead of waiting for the cumulative rate to climb. Each
//     window start j gets the level α·w(j) with Σ w(j) ≤ 1, w(j) ∝ 1/((j+1) ln²(j+e)), so all windows together
//     keep α (the cost of a late start grows like ln j). A window in which the stable track erred as much (up to
//     the tolerance) is not judged: an outage of both tracks is not the canary's fault, and skipping a test only
//     removes rejections.
//   - critical-error-rate: the same tests evaluated at CriticalErrorRate (never below the ceiling). The mixture is
//     monotone in the rate tested, so a critical failure implies a ceiling failure: it needs no budget of its
//     own and only marks the failure as critical.
//   - error-rate-vs-stable: an absolute difference with an unknown stable rate has no closed-form mixture, so
//     the check combines an anytime-valid upper confidence bound U on the stable rate with the canary's test
//     against U + tolerance(U), each at half the check's share: if the canary is within the tolerance of the
//     stable track, a rejection needs the stable rate above U or a false rejection by the canary's test.
//   - latency-p99: with counts of requests slower than the ceiling, the test of "at most 1% slower"; else the
//     recent p99 gauge against the ceiling, marked as not error-controlled.
//   - custom metrics named in Config.Custom, each against its bounds (gauges: not error-controlled).
//
// The budget 1 − Confidence is split evenly across the rate test, the recent-window test, the comparison and
// the latency test (Config.Budget); by the union bound the whole analysis keeps it.
//
// # Verdicts and actions
//
// A check Fails when its test rejects, whatever the number of requests: the tests are valid from the first
// request, so MinSamples never delays a failure. A check Passes when its test does not reject and the canary has
// at least MinSamples requests since it began, else it is Inconclusive. Proving a healthy rate below its limit
// takes thousands of requests, so passing does not wait for it: a step advances when its interval has elapsed
// and no check failed (and MinSamples requests were seen); each decision's reason says how much evidence there
// was ("error rate 0.8% (8/1000), at most 2.3% with 95% confidence; limit 1%"). Any failure rolls back at once.
// There is no consecutive-failure counting: a rejection is already significant at its share of the budget
// whenever it happens, and counting would only delay detection.
//
// # What the caller must provide
//
// Cumulative holds each track's counts since the current canary revision began, never a previous revision's,
// non-decreasing between evaluations; Recent the last ~10 s of the same counts. The tests need no other state:
// a restarted controller that passes the same counts decides the same, and spends no budget again. Counts that
// restart from zero (lost per-revision counts) would start the tests over and spend the budget a second time.
// Load reports whose requests are not independent of each other (retries of failed requests, one client
// hammering one bad replica) or traffic whose error rate varies far beyond the limit for a while (outages on both
// tracks) are outside the model: the benchmark measures the effect of such bursts.
//
// The simulations (guarantee_test.go, the benchmark in bench_test.go, docs/analysis.md) measure the false
// rollbacks and the time to roll back against the previous fixed-sample checks, a Flagger-style rule and an
// oracle SPRT.
package analysis
