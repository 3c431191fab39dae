package policies

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// dateLayout is how one-off freeze windows are written, in the window's zone.
const dateLayout = "2006-01-02T15:04"

const (
	secondsPerDay  = 24 * 60 * 60
	secondsPerWeek = 7 * secondsPerDay
)

// weekdays maps the API's day names to their offset from Monday.
var weekdays = map[v1alpha1.Weekday]int{
	"Monday": 0, "Tuesday": 1, "Wednesday": 2, "Thursday": 3, "Friday": 4, "Saturday": 5, "Sunday": 6,
}

// freezeWindow is a compiled freeze window. Weekly windows compare wall-clock
// positions in the week in the window's zone, so they keep their local times
// across daylight saving changes; one-off windows are absolute instants.
type freezeWindow struct {
	name   string
	reason string
	loc    *time.Location
	// weekly: seconds since Monday 00:00 local; from > to wraps the week.
	weekly   bool
	from, to int
	toDay    int
	toHour   int
	toMinute int
	// one-off.
	start, end time.Time
}

func compileFreezeWindows(ws []v1alpha1.FreezeWindow, fld *field.Path) ([]freezeWindow, field.ErrorList) {
	var out []freezeWindow
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, w := range ws {
		p := fld.Index(i)
		fw, werrs := compileFreezeWindow(w, p)
		if w.Name != "" && seen[w.Name] {
			werrs = append(werrs, field.Duplicate(p.Child("name"), w.Name))
		}
		seen[w.Name] = true
		errs = append(errs, werrs...)
		if len(werrs) == 0 {
			out = append(out, fw)
		}
	}
	return out, errs
}

func compileFreezeWindow(w v1alpha1.FreezeWindow, p *field.Path) (freezeWindow, field.ErrorList) {
	var errs field.ErrorList
	fw := freezeWindow{name: w.Name, reason: w.Reason}
	if w.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), `a window name, e.g. "weekend"`))
	}
	switch {
	case w.TimeZone == "":
		errs = append(errs, field.Required(p.Child("timeZone"), `an IANA time zone name, e.g. "Europe/Berlin" or "UTC"`))
	case w.TimeZone == "Local":
		errs = append(errs, field.Invalid(p.Child("timeZone"), w.TimeZone,
			`"Local" depends on the server; use an IANA time zone name, e.g. "Europe/Berlin" or "UTC"`))
	default:
		loc, err := time.LoadLocation(w.TimeZone)
		if err != nil {
			errs = append(errs, field.Invalid(p.Child("timeZone"), w.TimeZone,
				`is not an IANA time zone name; use e.g. "Europe/Berlin", "America/New_York" or "UTC"`))
		}
		fw.loc = loc
	}
	switch {
	case w.Weekly != nil && w.Dates != nil:
		errs = append(errs, field.Forbidden(p.Child("dates"), "set either weekly or dates, not both"))
	case w.Weekly != nil:
		fw.weekly = true
		var ferr, terr *field.Error
		fw.from, _, _, ferr = weekSeconds(w.Weekly.From, p.Child("weekly", "from"))
		fw.to, fw.toHour, fw.toMinute, terr = weekSeconds(w.Weekly.To, p.Child("weekly", "to"))
		for _, e := range []*field.Error{ferr, terr} {
			if e != nil {
				errs = append(errs, e)
			}
		}
		if ferr == nil && terr == nil && fw.from == fw.to {
			errs = append(errs, field.Invalid(p.Child("weekly", "to"), w.Weekly.To,
				"must differ from weekly.from; a window opening and closing at the same time is empty"))
		}
		fw.toDay = weekdays[w.Weekly.To.Day]
	case w.Dates != nil:
		if fw.loc == nil {
			break
		}
		start, serr := time.ParseInLocation(dateLayout, w.Dates.From, fw.loc)
		if serr != nil {
			errs = append(errs, field.Invalid(p.Child("dates", "from"), w.Dates.From,
				`must be a local date and time "YYYY-MM-DDTHH:MM", e.g. "2026-12-23T18:00"`))
		}
		end, eerr := time.ParseInLocation(dateLayout, w.Dates.To, fw.loc)
		if eerr != nil {
			errs = append(errs, field.Invalid(p.Child("dates", "to"), w.Dates.To,
				`must be a local date and time "YYYY-MM-DDTHH:MM", e.g. "2027-01-04T08:00"`))
		}
		if serr == nil && eerr == nil && !end.After(start) {
			errs = append(errs, field.Invalid(p.Child("dates", "to"), w.Dates.To, "must be after dates.from"))
		}
		fw.start, fw.end = start, end
	default:
		errs = append(errs, field.Required(p, "set weekly (e.g. Friday 16:00 to Monday 08:00) or dates"))
	}
	return fw, errs
}

// weekSeconds is the position of t in the week, in seconds since Monday 00:00.
func weekSeconds(t v1alpha1.WeekTime, p *field.Path) (secs, hour, minute int, err *field.Error) {
	day, ok := weekdays[t.Day]
	if !ok {
		return 0, 0, 0, field.NotSupported(p.Child("day"), t.Day,
			[]string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"})
	}
	hm, perr := time.Parse("15:04", t.Time)
	if perr != nil || len(t.Time) != 5 {
		return 0, 0, 0, field.Invalid(p.Child("time"), t.Time, `must be HH:MM on a 24-hour clock, e.g. "16:00"`)
	}
	return day*secondsPerDay + hm.Hour()*3600 + hm.Minute()*60, hm.Hour(), hm.Minute(), nil
}

// activeUntil reports whether now falls inside the window and, if so, when
// the window closes.
func (w freezeWindow) activeUntil(now time.Time) (time.Time, bool) {
	if !w.weekly {
		if !now.Before(w.start) && now.Before(w.end) {
			return w.end, true
		}
		return time.Time{}, false
	}
	if !w.weeklyIn(now) {
		return time.Time{}, false
	}
	return w.weeklyEnd(now), true
}

// weeklyEnd finds when a weekly window that is open at now closes. Within one
// zone period (between daylight saving changes) the wall clock runs evenly,
// so the window closes when the wall clock reaches "to" — unless a change
// comes first and its jump leaves the window (spring forward over "to"),
// or a fall-back change repeats an earlier stretch of the window.
func (w freezeWindow) weeklyEnd(now time.Time) time.Time {
	t := now.Truncate(time.Second)
	for i := 0; ; i++ {
		ahead := (w.to - w.weekPosition(t.In(w.loc)) + secondsPerWeek) % secondsPerWeek
		candidate := t.Add(time.Duration(ahead) * time.Second)
		_, zoneEnd := t.In(w.loc).ZoneBounds()
		if zoneEnd.IsZero() || zoneEnd.After(candidate) || i >= maxZoneChanges {
			return candidate
		}
		t = zoneEnd
		if !w.weeklyIn(t) {
			return t
		}
	}
}

// maxZoneChanges bounds the zone periods weeklyEnd walks through; a week
// holds at most a couple of changes in any real zone.
const maxZoneChanges = 8

// weekPosition is t's wall-clock position in the week, in seconds since
// Monday 00:00; t must be in the window's zone.
func (w freezeWindow) weekPosition(local time.Time) int {
	day := (int(local.Weekday()) + 6) % 7 // Monday = 0
	return day*secondsPerDay + local.Hour()*3600 + local.Minute()*60 + local.Second()
}

// weeklyIn reports whether t's wall clock in the window's zone lies in the
// weekly window.
func (w freezeWindow) weeklyIn(t time.Time) bool {
	pos := w.weekPosition(t.In(w.loc))
	if w.from < w.to {
		return w.from <= pos && pos < w.to
	}
	return pos >= w.from || pos < w.to
}

// describe says which window froze changes and until when, in its own zone.
func (w freezeWindow) describe(end time.Time) string {
	what := fmt.Sprintf("freeze window %q", w.name)
	if w.reason != "" {
		what += " (" + w.reason + ")"
	}
	return fmt.Sprintf("%s is in force: changes are refused until %s (%s)",
		what, end.In(w.loc).Format("Mon 2006-01-02 15:04 MST"), w.loc)
}
