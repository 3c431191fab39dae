// Package text bounds strings that come from outside (a proxy's NACK detail,
// a client's error) before Sluice stores or repeats them: on an object's
// status, in an Event, in a log line.
package text

import (
	"strconv"
	"unicode/utf8"
)

// MaxMessage is the bound on one stored message: a proxy's NACK detail, a
// problem, a reason. Long enough for any real error, short enough that many
// of them fit in one object.
const MaxMessage = 512

// Truncate returns s cut to at most max bytes on a rune boundary, ending in
// "…(N bytes cut)" when it was cut; the marker counts towards max. Invalid
// UTF-8 is replaced, so the result is always valid UTF-8 (the API server
// refuses anything else). max below 32 is raised to 32.
func Truncate(s string, max int) string {
	max = maxOf(max, 32)
	if !utf8.ValidString(s) {
		s = toValid(s)
	}
	if len(s) <= max {
		return s
	}
	// The marker's length depends on the count; reserve for the largest.
	marker := func(n int) string { return "…(" + strconv.Itoa(n) + " bytes cut)" }
	keep := max - len(marker(len(s)))
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:keep] + marker(len(s)-keep)
}

func toValid(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		out = append(out, r) // invalid bytes decode to utf8.RuneError
	}
	return string(out)
}

func maxOf(a, b int) int {
	if a > b {
		return a
	}
	return b
}
