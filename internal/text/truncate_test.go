package text

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	cases := map[string]struct {
		in   string
		max  int
		want string
	}{
		"short stays":            {"no route", 512, "no route"},
		"exactly max stays":      {strings.Repeat("a", 40), 40, strings.Repeat("a", 40)},
		"cut with marker":        {strings.Repeat("a", 100), 40, strings.Repeat("a", 22) + "…(78 bytes cut)"},
		"never splits a rune":    {strings.Repeat("é", 50), 40, strings.Repeat("é", 11) + "…(78 bytes cut)"},
		"invalid utf-8 replaced": {"bad\xffbyte", 512, "bad\uFFFDbyte"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := Truncate(tc.in, tc.max)
			if got != tc.want {
				t.Fatalf("Truncate(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
		})
	}
}

func FuzzTruncate(f *testing.F) {
	f.Add("héllo wörld", 33)
	f.Add(strings.Repeat("\xff", 100), 40)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max > 1<<20 || max < -1<<20 {
			return
		}
		got := Truncate(s, max)
		if !utf8.ValidString(got) {
			t.Fatalf("Truncate(%q, %d) = %q: not valid UTF-8", s, max, got)
		}
		if limit := maxOf(max, 32); len(got) > limit {
			t.Fatalf("Truncate(%q, %d) is %d bytes, above %d", s, max, len(got), limit)
		}
	})
}
