package metrics

import "time"

// keyIndex numbers every key ever recorded, so that a snapshot keeps its totals in a dense slice (16 bytes a key)
// instead of a map keyed by the whole Key. Keys carry their origin, which multiplies them by the reporters of
// each track: as maps, ten minutes of one-second snapshots of 200 tracks with 5 reporters each took 138 MB.
// Keys are never forgotten, as the load-report totals never drop one.
type keyIndex struct {
	keys []Key
	of   map[Key]int
}

// id returns k's number, giving it the next one when k is new.
func (x *keyIndex) id(k Key) int {
	if i, ok := x.of[k]; ok {
		return i
	}
	if x.of == nil {
		x.of = map[Key]int{}
	}
	x.of[k] = len(x.keys)
	x.keys = append(x.keys, k)
	return len(x.keys) - 1
}

// snapshot is the totals of every key at one instant.
type snapshot struct {
	at time.Time
	// totals holds each key's totals by its number; keys numbered at or after its length were not yet seen.
	totals []Totals
	// present has bit i set when key i was among the totals at this instant.
	present []uint64
}

// newSnapshot records current at at, numbering new keys in x.
func newSnapshot(at time.Time, current map[Key]Totals, x *keyIndex) snapshot {
	for k := range current {
		x.id(k)
	}
	s := snapshot{at: at, totals: make([]Totals, len(x.keys)), present: make([]uint64, (len(x.keys)+63)/64)}
	for k, t := range current {
		id := x.of[k]
		s.totals[id] = t
		s.present[id/64] |= 1 << (id % 64)
	}
	return s
}

// get returns key id's totals at this instant, and whether the key was among them.
func (s snapshot) get(id int) (Totals, bool) {
	if id >= len(s.totals) || s.present[id/64]&(1<<(id%64)) == 0 {
		return Totals{}, false
	}
	return s.totals[id], true
}
