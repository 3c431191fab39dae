package main

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
)

// defaultGCPercent is the controller's GOGC unless the environment sets one.
// The webhooks allocate tens of KB per admission request against a live heap
// of a few tens of MB; at Go's default of 100 the collector runs many times
// a second under load and its mark phase takes a quarter of the CPU from the
// handlers. 400 trades memory for fewer cycles; the memory limit below keeps
// that trade inside the container.
const defaultGCPercent = 400

// memoryLimitShare is the part of the container's memory limit given to the
// Go runtime as its soft limit (GOMEMLIMIT), leaving room for what the
// runtime does not count (stacks of threads in syscalls, fragmentation).
const memoryLimitShare = 0.9

// cgroupMemoryFiles hold the container's memory limit: cgroup v2, then v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// tuneGC sets the collector for a latency-sensitive server. GOGC and
// GOMEMLIMIT, when set, win.
func tuneGC(log logr.Logger) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		if limit, file, ok := containerMemoryLimit(cgroupMemoryFiles); ok {
			soft := int64(float64(limit) * memoryLimitShare)
			debug.SetMemoryLimit(soft)
			log.Info("memory limit from the container", "file", file, "limitBytes", limit, "goMemLimitBytes", soft)
		}
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
		log.V(1).Info("garbage collector target", "gcPercent", defaultGCPercent)
	}
}

// containerMemoryLimit reads the first cgroup memory limit file that holds a
// finite limit.
func containerMemoryLimit(files []string) (limit int64, file string, ok bool) {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if v, ok := parseMemoryLimit(string(b)); ok {
			return v, f, true
		}
	}
	return 0, "", false
}

// parseMemoryLimit parses a cgroup limit: "max" (v2) and the huge values v1
// uses for "no limit" are not limits.
func parseMemoryLimit(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || v >= math.MaxInt64/2 {
		return 0, false
	}
	return v, true
}
