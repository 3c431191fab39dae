// Package analysis turns metric samples of a canary and its stable track into verdicts: continue, hold, or roll
// back. It is pure: no I/O, logger, metrics or clock; the caller passes the samples and the time and persists the
// returned State.
//
// # Checks
//
// Each evaluation runs these checks and records one Decision per check (metric, value, threshold, samples, verdict):
//
//   - critical-error-rate, on the Recent window: the one-sided Wilson score lower bound of the canary's error
//     rate exceeds Config.CriticalErrorRate (default 50%). A failure rolls back at once, skipping consecutive
//     counting and MinSamples: the Wilson bound already refuses to judge a handful of requests (1 error out of 1
//     request gives a 99% lower bound of 16%), while 6 failures out of 6 requests already bound the rate above 50%,
//     so a version that fails everything is rolled back within the first second or two of traffic.
//   - error-rate, on the Recent window: the canary's error rate against Config.MaxErrorRate. Fail when the Wilson
//     lower bound (at RecentConfidence, 99.9% by default; see Repeated looks) is above the ceiling. Otherwise
//     pass when the observed rate is within the ceiling, and stay inconclusive (hold, do not advance) when it is
//     above the ceiling without confidence yet. Neither pass nor fail is given before the window holds
//     MinSamples canary requests. Passing on the observed rate rather than on the upper bound is deliberate:
//     confirming a rate below a 1% ceiling at 99% takes over 500 clean requests, so a low-traffic canary would
//     otherwise never advance; failing, which rolls back, is what needs confidence.
//   - error-rate-vs-stable, on the Cumulative window: whether the canary's error rate exceeds the stable track's
//     by more than a practical margin, max(AbsoluteTolerance, RelativeTolerance × stable rate): fail when the
//     interval's lower bound is above the margin, pass when the observed difference is within it, else
//     inconclusive. See below.
//   - latency-p99, on the Recent window, when MaxLatencyP99 is set: the canary's p99 against the ceiling, judged
//     only once the window holds MinSamples canary requests (a p99 of a dozen requests is one slow request).
//   - custom metrics named in Config.Custom, each against its own bounds.
//
// # Why a Newcombe interval for canary versus stable
//
// The comparison uses Newcombe's hybrid score interval for the difference of two proportions (Newcombe 1998,
// method 10), built from the two tracks' Wilson intervals. Unlike the Wald (normal) interval it keeps its coverage
// at small counts and rare events (0 errors out of 200, 4 out of 300), which is the normal situation at the first
// canary steps; unlike Fisher's or Boschloo's exact tests it needs no enumeration, so it is cheap enough to run
// every second and stays monotone in the counts. It is evaluated on the Cumulative window (everything since the
// analysis origin, e.g. the step start), so its power grows with traffic: a canary failing 2% of requests against
// a stable track at 0.1% is caught after a few hundred canary requests.
//
// # Repeated looks
//
// The analysis runs about once a second, so a test run at 99% confidence gets hundreds of chances to fire by
// accident. Four things keep false rollbacks rare, and the simulation tests measure the result: with a 1% ceiling
// and 0.5% errors on both tracks, 1 of 200 clean 5-minute rollouts was rolled back at 10 canary req/s and 0 of 200
// at 20 req/s, while 20% errors at 10 req/s were rolled back within 8 s of onset and 100% errors within 3 s:
//
//  1. The comparison tests against a practical margin, not against equality. Under no real difference the
//     interval for the difference shrinks towards 0 as samples accumulate, so it moves away from the margin:
//     the chance of a false alarm is concentrated in the first looks and decays, instead of accumulating like
//     repeated tests of equality do (which reach any alpha eventually).
//  2. The ceiling on the Recent window is judged at RecentConfidence, a Bonferroni correction for the ~10
//     evaluations that look at the same requests of a 10 s window. Consecutive counting cannot help there: a
//     burst of errors stays in the window, so overlapping looks fail together. (Measured at 99% instead, a 1%
//     ceiling rolled back 10 of 200 clean rollouts at 0.5% noise and 10 req/s.)
//  3. MinSamples: no verdict on the first handful of requests, where the looks are most numerous per request.
//  4. Consecutive-failure counting: an ordinary failure rolls back only after ConsecutiveFailures evaluations in a
//     row failed; one that passes or is inconclusive resets the count. The state carries the count and the time of
//     the last counted evaluation, so a restarted controller neither forgets it nor counts the same instant twice.
//
// Alpha spending would bound the error exactly but needs a planned number of looks, which an open-ended step does
// not have; an SPRT, CUSUM or mixture SPRT needs non-overlapping increments and a running statistic in the state.
// The margin, the corrected ceiling and consecutive counting keep the state to two fields on a Rollout's status
// and, as measured, suffice.
package analysis
