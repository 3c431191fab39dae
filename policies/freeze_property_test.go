package policies

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

var dayNames = []string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}

// TestWeeklyWindowProperties checks, for random weekly windows in zones with
// daylight saving (including Lord Howe's 30-minute shift) and random
// instants, often close to a zone change with window edges in the small
// hours: a frozen instant reports an end in the future and at most two weeks
// away (a spring-forward can skip the whole unfrozen stretch); changes are
// frozen a second before that end, not at it, and at a random instant between.
func TestWeeklyWindowProperties(t *testing.T) {
	zones := []string{"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata"}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rapid.Check(t, func(rt *rapid.T) {
		zone := rapid.SampledFrom(zones).Draw(rt, "zone")
		loc, err := time.LoadLocation(zone)
		if err != nil {
			rt.Fatal(err)
		}
		nearChange := rapid.Bool().Draw(rt, "nearZoneChange")
		days, maxHour := dayNames, 23
		if nearChange {
			// Zone changes happen at night, mostly at weekends.
			days, maxHour = []string{"Friday", "Saturday", "Sunday", "Monday"}, 4
		}
		at := func(label string) v1alpha1.WeekTime {
			return v1alpha1.WeekTime{
				Day: v1alpha1.Weekday(rapid.SampledFrom(days).Draw(rt, label+"Day")),
				Time: fmt.Sprintf("%02d:%02d", rapid.IntRange(0, maxHour).Draw(rt, label+"Hour"),
					rapid.SampledFrom([]int{0, 0, 15, 30, 59}).Draw(rt, label+"Minute")),
			}
		}
		fw := v1alpha1.FreezeWindow{Name: "w", TimeZone: zone, Weekly: &v1alpha1.WeeklyWindow{From: at("from"), To: at("to")}}
		fws, errs := compileFreezeWindows([]v1alpha1.FreezeWindow{fw}, nil)
		if len(errs) > 0 {
			rt.Skip("same from and to")
		}
		w := fws[0]

		now := base.Add(time.Duration(rapid.Int64Range(0, 2*365*secondsPerDay).Draw(rt, "seconds")) * time.Second)
		if nearChange {
			start, end := time.Date(2026, 7, 1, 0, 0, 0, 0, loc).ZoneBounds()
			change := rapid.SampledFrom([]time.Time{start, end}).Draw(rt, "change")
			if change.IsZero() {
				rt.Skip("zone without daylight saving")
			}
			now = change.Add(time.Duration(rapid.Int64Range(-2*secondsPerDay, 2*secondsPerDay).Draw(rt, "offset")) * time.Second)
		}

		end, in := w.activeUntil(now)
		if in != w.weeklyIn(now) {
			rt.Fatalf("activeUntil and weeklyIn disagree at %s", now)
		}
		if !in {
			return
		}
		if !end.After(now) || end.Sub(now) > 14*24*time.Hour {
			rt.Fatalf("at %s the window ends %s", now.In(w.loc), end.In(w.loc))
		}
		if w.weeklyIn(end) {
			rt.Fatalf("still frozen at the reported end %s (now %s)", end.In(w.loc), now.In(w.loc))
		}
		if !w.weeklyIn(end.Add(-time.Second)) {
			rt.Fatalf("open a second before the reported end %s (now %s)", end.In(w.loc), now.In(w.loc))
		}
		between := now.Add(time.Duration(rapid.Int64Range(0, int64(end.Sub(now)-time.Nanosecond)).Draw(rt, "between")))
		if !w.weeklyIn(between) {
			rt.Fatalf("open at %s, between %s and the reported end %s", between.In(w.loc), now.In(w.loc), end.In(w.loc))
		}
	})
}
