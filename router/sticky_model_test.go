package router

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"testing"

	"github.com/cespare/xxhash/v2"
	"pgregory.net/rapid"
)

// This file checks the sticky split's monotonicity on a model of the data
// plane. The model follows grpc-go v1.85 line by line where it matters:
//   - internal/xds/balancer/cdsbalancer/configbuilder.go: endpoint weight =
//     fixed-point(locality weight / sum) × fixed-point(endpoint weight / sum
//     in locality), 31 fractional bits, at least 1;
//   - balancer/ringhash/ring.go: weights normalised, endpoints sorted by hash
//     key (the address "ip:port"), scale = min(ceil(minW·minRing)/minW,
//     maxRing) (= StickyRingSize, as min = max), and endpoint i gets ring
//     entries xxhash("<key>_0"), xxhash("<key>_1"), ... while the running
//     count is below the running target; a request picks the first entry at
//     or after its hash, wrapping around.

type modelEntry struct {
	hash  uint64
	key   string
	track Track
}

type modelRing []modelEntry

// newModelRing builds the ring a grpc-go client would build for the sticky
// cluster c.
func newModelRing(c Cluster) modelRing {
	type ep struct {
		key    string
		track  Track
		weight uint32
	}
	var locSum uint64
	for _, l := range c.Localities {
		locSum += uint64(l.Weight)
	}
	var eps []ep
	var sum uint64
	for _, l := range c.Localities {
		lw := uint32(uint64(l.Weight) << 31 / locSum)
		ew := uint32(uint64(1) << 31 / uint64(len(l.Endpoints)))
		w := uint32(uint64(lw) * uint64(ew) >> 31)
		w = max(w, 1)
		for _, a := range l.Endpoints {
			eps = append(eps, ep{key: a.IP + ":" + strconv.FormatUint(uint64(a.Port), 10), track: l.Track, weight: w})
			sum += uint64(w)
		}
	}
	slices.SortFunc(eps, func(a, b ep) int {
		if a.key < b.key {
			return -1
		}
		return 1
	})
	minW := 1.0
	for _, e := range eps {
		minW = math.Min(minW, float64(e.weight)/float64(sum))
	}
	const n = float64(StickyRingSize)
	scale := math.Min(math.Ceil(minW*n)/minW, n)
	var ring modelRing
	var current, target float64
	for _, e := range eps {
		target += scale * float64(e.weight) / float64(sum)
		for idx := 0; current < target; idx++ {
			ring = append(ring, modelEntry{hash: xxhash.Sum64String(e.key + "_" + strconv.Itoa(idx)), key: e.key + "_" + strconv.Itoa(idx), track: e.track})
			current++
		}
	}
	slices.SortFunc(ring, func(a, b modelEntry) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return 0
	})
	return ring
}

func (r modelRing) pick(h uint64) modelEntry {
	i, _ := slices.BinarySearchFunc(r, h, func(e modelEntry, h uint64) int {
		switch {
		case e.hash < h:
			return -1
		case e.hash > h:
			return 1
		}
		return 0
	})
	if i == len(r) {
		i = 0
	}
	return r[i]
}

// entries returns the ring entries by key.
func (r modelRing) entries() map[string]Track {
	m := make(map[string]Track, len(r))
	for _, e := range r {
		m[e.key] = e.track
	}
	return m
}

// stickyCluster builds the plan's sticky cluster for the given pods and share.
func stickyCluster(t *rapid.T, stable, canary int, share Weight) Cluster {
	s := Service{Namespace: "shop", Name: "ab", Ports: []Port{{Name: "grpc", Number: 9090, Protocol: ProtocolGRPC}},
		Strategy: Strategy{Sticky: &Sticky{Source: SourceHeader, Name: "x-user", Share: share}}}
	// Interleave the tracks in address order, the worst case for rounding.
	for i, n := 0, stable+canary; i < n; i++ {
		tr := TrackStable
		if i%2 == 1 && canary > 0 || stable == 0 {
			tr = TrackCanary
		}
		if tr == TrackCanary {
			canary--
		} else {
			stable--
		}
		s.Endpoints = append(s.Endpoints, Endpoint{Pod: fmt.Sprintf("pod-%02d", i), IP: fmt.Sprintf("10.0.0.%d", 10+i),
			Ports: map[string]uint32{"grpc": 9090}, Ready: true, Track: tr})
	}
	p, err := Build(State{Services: []Service{s}})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	c, ok := p.Cluster(ClusterName("shop", "ab", 9090, TrackSticky))
	if !ok {
		t.Fatalf("no sticky cluster for share %d", share)
	}
	return c
}

// TestPropertyStickyMonotonic raises the share of a sticky split and checks,
// on the model ring, the guarantee documented on Build:
//   - the ring has exactly StickyRingSize entries and each track holds its
//     share of them, up to one entry per endpoint;
//   - against the direction of the change, each endpoint gains (stable) or
//     loses (canary) at most one entry;
//   - every user who moves back from canary to stable does so because of
//     such an entry: their new entry is a stable entry the old ring lacked,
//     or their old entry is a canary entry the new ring lacks;
//   - with one pod per track, and in most other draws, nobody moves back.
func TestPropertyStickyMonotonic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nStable := rapid.IntRange(1, 8).Draw(t, "stable pods")
		nCanary := rapid.IntRange(1, 4).Draw(t, "canary pods")
		lo := Weight(rapid.Uint32Range(1, uint32(TotalWeight)-2).Draw(t, "share"))
		hi := Weight(rapid.Uint32Range(uint32(lo)+1, uint32(TotalWeight)-1).Draw(t, "raised share"))
		r1 := newModelRing(stickyCluster(t, nStable, nCanary, lo))
		r2 := newModelRing(stickyCluster(t, nStable, nCanary, hi))
		endpoints := nStable + nCanary

		for _, c := range []struct {
			r     modelRing
			share Weight
		}{{r1, lo}, {r2, hi}} {
			if len(c.r) < StickyRingSize || len(c.r) > StickyRingSize+1 {
				t.Fatalf("ring has %d entries, want %d", len(c.r), StickyRingSize)
			}
			var onCanary int
			for _, e := range c.r {
				if e.track == TrackCanary {
					onCanary++
				}
			}
			want := float64(StickyRingSize) * float64(c.share) / float64(TotalWeight)
			if math.Abs(float64(onCanary)-want) > float64(endpoints)+1 {
				t.Fatalf("share %d: %d canary entries, want %.1f ± %d", c.share, onCanary, want, endpoints+1)
			}
		}

		e1, e2 := r1.entries(), r2.entries()
		wrongWay := map[string]int{} // per endpoint key
		for k, tr := range e2 {
			if _, had := e1[k]; !had && tr == TrackStable {
				wrongWay[endpointOf(k)]++
			}
		}
		for k, tr := range e1 {
			if _, kept := e2[k]; !kept && tr == TrackCanary {
				wrongWay[endpointOf(k)]++
			}
		}
		for ep, n := range wrongWay {
			if n > 1 {
				t.Fatalf("endpoint %s moved %d entries against the share change, want at most 1", ep, n)
			}
		}

		for i := 0; i < 2000; i++ {
			h := xxhash.Sum64String("user-" + strconv.Itoa(i))
			p1, p2 := r1.pick(h), r2.pick(h)
			if p1.track != TrackCanary || p2.track != TrackStable {
				continue
			}
			_, newHad := e1[p2.key]
			_, oldKept := e2[p1.key]
			if newHad && oldKept {
				t.Fatalf("user %d moved from canary (%s) to stable (%s) although both entries exist in both rings", i, p1.key, p2.key)
			}
		}
		if nStable == 1 && nCanary == 1 && len(wrongWay) > 0 {
			t.Fatalf("one pod per track: %d entries moved against the change, want none", len(wrongWay))
		}
	})
}

func endpointOf(entryKey string) string {
	for i := len(entryKey) - 1; i >= 0; i-- {
		if entryKey[i] == '_' {
			return entryKey[:i]
		}
	}
	return entryKey
}
