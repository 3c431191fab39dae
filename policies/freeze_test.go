package policies

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func weekly(zone, fromDay, fromTime, toDay, toTime string) v1alpha1.FreezeWindow {
	return v1alpha1.FreezeWindow{Name: "w", TimeZone: zone, Reason: "weekend freeze",
		Weekly: &v1alpha1.WeeklyWindow{
			From: v1alpha1.WeekTime{Day: v1alpha1.Weekday(fromDay), Time: fromTime},
			To:   v1alpha1.WeekTime{Day: v1alpha1.Weekday(toDay), Time: toTime},
		}}
}

func at(t *testing.T, zone, local string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := time.ParseInLocation("2006-01-02 15:04:05", local, loc)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func utc(s string) time.Time {
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return ts
}

func TestFreezeWindows(t *testing.T) {
	berlinWeekend := weekly("Europe/Berlin", "Friday", "16:00", "Monday", "08:00")
	cases := map[string]struct {
		window v1alpha1.FreezeWindow
		now    time.Time
		// until is the expected end in the message, "" when not frozen.
		until string
	}{
		// 2026-11-27 is a Friday.
		"weekend: a second before the start": {window: berlinWeekend, now: at(t, "Europe/Berlin", "2026-11-27 15:59:59")},
		"weekend: at the start": {window: berlinWeekend, now: at(t, "Europe/Berlin", "2026-11-27 16:00:00"),
			until: "Mon 2026-11-30 08:00 CET (Europe/Berlin)"},
		"weekend: Sunday, wrapping the week": {window: berlinWeekend, now: at(t, "Europe/Berlin", "2026-11-29 23:00:00"),
			until: "Mon 2026-11-30 08:00 CET"},
		"weekend: a second before the end": {window: berlinWeekend, now: at(t, "Europe/Berlin", "2026-11-30 07:59:59"),
			until: "Mon 2026-11-30 08:00 CET"},
		"weekend: at the end": {window: berlinWeekend, now: at(t, "Europe/Berlin", "2026-11-30 08:00:00")},
		"weekend: mid-week":   {window: berlinWeekend, now: at(t, "Europe/Berlin", "2026-11-25 12:00:00")},
		"weekend: Friday 15:30 UTC is 16:30 in Berlin": {window: berlinWeekend, now: utc("2026-11-27T15:30:00Z"),
			until: "Mon 2026-11-30 08:00 CET"},
		"weekend: Friday 15:30 in Berlin is not frozen": {window: berlinWeekend, now: utc("2026-11-27T14:30:00Z")},
		// Europe/Berlin springs forward on 2026-03-29 at 02:00 to 03:00.
		"spring forward: inside, just after the gap": {
			window: weekly("Europe/Berlin", "Saturday", "22:00", "Sunday", "04:00"),
			now:    utc("2026-03-29T01:30:00Z"), // 03:30 CEST
			until:  "Sun 2026-03-29 04:00 CEST",
		},
		"spring forward: the window closes at local 04:00, after 5 real hours": {
			window: weekly("Europe/Berlin", "Saturday", "22:00", "Sunday", "04:00"),
			now:    utc("2026-03-29T02:00:00Z"), // 04:00 CEST
		},
		"spring forward: before the change the end is still local 04:00": {
			window: weekly("Europe/Berlin", "Saturday", "22:00", "Sunday", "04:00"),
			now:    utc("2026-03-28T21:00:00Z"), // 22:00 CET Saturday
			until:  "Sun 2026-03-29 04:00 CEST",
		},
		"spring forward: the end time is skipped, so it ends when the clock jumps": {
			window: weekly("Europe/Berlin", "Saturday", "22:00", "Sunday", "02:30"),
			now:    utc("2026-03-29T00:30:00Z"), // 01:30 CET
			until:  "Sun 2026-03-29 03:00 CEST",
		},
		"fall back: the end time happens twice, the second pass ends at the second": {
			window: weekly("Europe/Berlin", "Saturday", "22:00", "Sunday", "02:30"),
			now:    utc("2026-10-25T01:15:00Z"), // 02:15 CET, after 02:xx CEST
			until:  "Sun 2026-10-25 02:30 CET",
		},
		"fall back: the first pass ends at the first": {
			window: weekly("Europe/Berlin", "Saturday", "22:00", "Sunday", "02:30"),
			now:    utc("2026-10-25T00:15:00Z"), // 02:15 CEST
			until:  "Sun 2026-10-25 02:30 CEST",
		},
		// Europe/Berlin falls back on 2026-10-25 at 03:00 to 02:00: 02:xx happens twice.
		"fall back: first 02:30": {
			window: weekly("Europe/Berlin", "Sunday", "02:00", "Sunday", "03:00"),
			now:    utc("2026-10-25T00:30:00Z"), // 02:30 CEST
			until:  "Sun 2026-10-25 03:00 CET",
		},
		"fall back: second 02:30": {
			window: weekly("Europe/Berlin", "Sunday", "02:00", "Sunday", "03:00"),
			now:    utc("2026-10-25T01:30:00Z"), // 02:30 CET
			until:  "Sun 2026-10-25 03:00 CET",
		},
		"fall back: 03:00 CET closes it": {
			window: weekly("Europe/Berlin", "Sunday", "02:00", "Sunday", "03:00"),
			now:    utc("2026-10-25T02:00:00Z"),
		},
		"same day window, end next week when it wraps": {
			window: weekly("UTC", "Wednesday", "18:00", "Wednesday", "09:00"),
			now:    utc("2026-11-25T19:00:00Z"), // Wednesday
			until:  "Wed 2026-12-02 09:00 UTC",
		},
		"same day window, before its start on that day": {
			window: weekly("UTC", "Wednesday", "09:00", "Wednesday", "18:00"),
			now:    utc("2026-11-25T08:59:59Z"),
		},
		"one-off: a minute before": {
			window: v1alpha1.FreezeWindow{Name: "xmas", TimeZone: "America/New_York",
				Dates: &v1alpha1.DateRange{From: "2026-12-23T18:00", To: "2027-01-04T08:00"}},
			now: at(t, "America/New_York", "2026-12-23 17:59:00"),
		},
		"one-off: at the start": {
			window: v1alpha1.FreezeWindow{Name: "xmas", TimeZone: "America/New_York",
				Dates: &v1alpha1.DateRange{From: "2026-12-23T18:00", To: "2027-01-04T08:00"}},
			now:   at(t, "America/New_York", "2026-12-23 18:00:00"),
			until: "Mon 2027-01-04 08:00 EST (America/New_York)",
		},
		"one-off: a second before the end": {
			window: v1alpha1.FreezeWindow{Name: "xmas", TimeZone: "America/New_York",
				Dates: &v1alpha1.DateRange{From: "2026-12-23T18:00", To: "2027-01-04T08:00"}},
			now:   at(t, "America/New_York", "2027-01-04 07:59:59"),
			until: "Mon 2027-01-04 08:00 EST",
		},
		"one-off: at the end": {
			window: v1alpha1.FreezeWindow{Name: "xmas", TimeZone: "America/New_York",
				Dates: &v1alpha1.DateRange{From: "2026-12-23T18:00", To: "2027-01-04T08:00"}},
			now: at(t, "America/New_York", "2027-01-04 08:00:00"),
		},
		"one-off across a DST change": {
			window: v1alpha1.FreezeWindow{Name: "dst", TimeZone: "Europe/Berlin",
				Dates: &v1alpha1.DateRange{From: "2026-10-24T12:00", To: "2026-10-25T12:00"}},
			now:   utc("2026-10-25T10:59:59Z"), // 11:59:59 CET
			until: "Sun 2026-10-25 12:00 CET",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := strictPolicy("freeze", v1alpha1.ModeEnforce)
			p.Spec.Rules = v1alpha1.PolicyRules{FreezeWindows: []v1alpha1.FreezeWindow{tc.window}}
			r := Evaluate([]*Compiled{mustCompile(t, p)}, createInput(goodDeployment()), tc.now)
			if tc.until == "" {
				if len(r.Violations) != 0 {
					t.Fatalf("frozen at %s: %v", tc.now, r.Violations)
				}
				return
			}
			if len(r.Violations) != 1 || r.Violations[0].Rule != RuleFreezeWindow {
				t.Fatalf("want one freeze violation at %s, got %v", tc.now, r.Violations)
			}
			msg := r.Violations[0].Message
			if !strings.Contains(msg, "until "+tc.until) {
				t.Errorf("message %q does not say the window ends %q", msg, tc.until)
			}
			if !strings.Contains(msg, "freeze window "+`"`+tc.window.Name+`"`) {
				t.Errorf("message %q does not name the window", msg)
			}
		})
	}
}

// TestWeeklyWindowEndIsAfterNow walks a wrapping window through a year of
// Berlin time, across both DST changes, checking every frozen instant reports
// an end that is in the future, at most a week away, and at local 08:00.
func TestWeeklyWindowEndIsAfterNow(t *testing.T) {
	fws, errs := compileFreezeWindows([]v1alpha1.FreezeWindow{weekly("Europe/Berlin", "Friday", "16:00", "Monday", "08:00")}, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	w := fws[0]
	frozen := 0
	for now := utc("2026-01-01T00:00:00Z"); now.Before(utc("2027-01-01T00:00:00Z")); now = now.Add(37 * time.Minute) {
		end, in := w.activeUntil(now)
		if !in {
			continue
		}
		frozen++
		local := end.In(w.loc)
		if !end.After(now) || end.Sub(now) > 7*24*time.Hour || local.Weekday() != time.Monday || local.Hour() != 8 || local.Minute() != 0 {
			t.Fatalf("at %s the window ends %s", now.In(w.loc), local)
		}
		if _, stillIn := w.activeUntil(end); stillIn {
			t.Fatalf("still frozen at the reported end %s", local)
		}
		if _, in := w.activeUntil(end.Add(-time.Second)); !in {
			t.Fatalf("not frozen a second before the reported end %s", local)
		}
	}
	if frozen == 0 {
		t.Fatal("never frozen")
	}
}
