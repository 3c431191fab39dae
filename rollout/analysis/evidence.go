package analysis

import (
	"math/bits"
	"sort"
)

// OriginSample is what one reporting identity contributed to a track's sample.
type OriginSample struct {
	// Identity names the reporter, e.g. "token:shop/frontend" or "legacy:shop"; "other" for identities folded
	// together beyond the source's bound; empty for load reported without any identity (a server that does not
	// authenticate), which counts like one identity.
	Identity string
	// Legacy is true for load that came through the plaintext legacy listener: it counts for holding and
	// rolling back, never as promotion evidence.
	Legacy bool
	// Requests and Errors are the counts over the span asked for; Errors ≤ Requests.
	Requests, Errors uint64
}

// Provenance says where one track's sample came from and how much of it is promotion evidence.
type Provenance struct {
	// Requests is the track's whole sample, every origin included.
	Requests uint64
	// LegacyRequests is the part of Requests reported through the legacy listener.
	LegacyRequests uint64
	// Identities is the number of non-legacy identities that reported requests.
	Identities int
	// Top is the non-legacy identity that reported the most requests (the smallest name on a tie), and
	// TopRequests its count.
	Top         string
	TopRequests uint64
	// Evidence is the promotion evidence: the non-legacy load, with each identity counted for at most as many
	// requests as all other non-legacy identities together (see PromotionEvidence).
	Evidence TrackSample
}

// Dominated reports whether one identity supplied more than half of the non-legacy sample: then the share
// bound limited what its load proves, or (alone) could not apply.
func (p Provenance) Dominated() bool {
	return p.TopRequests > 0 && p.TopRequests > (p.Requests-p.LegacyRequests)/2
}

// PromotionEvidence splits a track's sample by origin into what may promote a canary and what may only hold or
// roll it back.
//
// The rule: legacy load is never evidence. Of the rest, with two or more identities each counts for at most as
// many requests as all the others together, so no identity supplies more than half of the evidence; an
// identity above that bound keeps its error rate (its errors are scaled down with its requests, rounded up). A
// single identity cannot be bounded against anyone: its load counts whole, and Provenance names it, so a
// service with one caller can still be promoted and its status says on whose word. The bound applies to
// promotion only: every origin's errors count in full for holding and rolling back.
func PromotionEvidence(origins []OriginSample) Provenance {
	var p Provenance
	var trusted []OriginSample
	for _, o := range origins {
		p.Requests = addSat(p.Requests, o.Requests)
		if o.Legacy {
			p.LegacyRequests = addSat(p.LegacyRequests, o.Requests)
			continue
		}
		if o.Requests == 0 {
			continue
		}
		trusted = append(trusted, o)
	}
	sort.Slice(trusted, func(i, j int) bool {
		if trusted[i].Requests != trusted[j].Requests {
			return trusted[i].Requests > trusted[j].Requests
		}
		return trusted[i].Identity < trusted[j].Identity
	})
	p.Identities = len(trusted)
	p.Evidence.Present = true
	if len(trusted) == 0 {
		return p
	}
	p.Top, p.TopRequests = trusted[0].Identity, trusted[0].Requests
	for i, o := range trusted {
		n, e := o.Requests, min(o.Errors, o.Requests)
		var others uint64
		for j, q := range trusted {
			if j != i {
				others = addSat(others, q.Requests)
			}
		}
		if len(trusted) > 1 && n > others {
			e = scaleUp(e, others, n)
			n = others
		}
		p.Evidence.Requests = addSat(p.Evidence.Requests, n)
		p.Evidence.Errors = addSat(p.Evidence.Errors, e)
	}
	return p
}

// scaleUp returns ⌈e × num / den⌉ for e ≤ den and num ≤ den, without overflow.
func scaleUp(e, num, den uint64) uint64 {
	hi, lo := bits.Mul64(e, num)
	q, r := bits.Div64(hi, lo, den) // hi < den since e·num < den²
	if r > 0 {
		q++
	}
	return q
}

// addSat adds without wrapping: a sum that would overflow stays at the largest value.
func addSat(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return ^uint64(0)
}
