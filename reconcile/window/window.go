// Package window owns deploy windows: when a new release may be applied to
// an environment. It parses the window strings of the agent config and of
// pin files, and answers whether a list of windows is open at an instant
// and when it next opens. It is pure: it reads no clock (every answer is
// about the instant it is given) and no files beyond the time zone data
// of the Go runtime.
//
// A window is three fields separated by spaces:
//
//	DAYS START-END ZONE
//
//	DAYS   "daily", or a comma-separated list of days and day ranges:
//	       Mon, Tue, Wed, Thu, Fri, Sat, Sun (any case); a range wraps
//	       around the week ("Fri-Mon" is Fri, Sat, Sun, Mon).
//	START  HH:MM, 00:00 to 23:59, the wall-clock time the window opens.
//	END    HH:MM, 00:00 to 24:00, the wall-clock time it closes (not
//	       included). An END before START crosses midnight: the window
//	       belongs to the day it starts on ("Mon 22:00-02:00" is Monday
//	       22:00 to Tuesday 02:00).
//	ZONE   an IANA time zone name (Europe/Berlin, America/New_York) or UTC;
//	       required, so a window means the same on every host.
//
// Examples: "Mon-Fri 09:00-16:00 Europe/Berlin", "Sat,Sun 10:00-12:00 UTC",
// "Mon 22:00-02:00 UTC", "daily 00:00-06:00 America/New_York".
//
// Times are wall-clock times in the zone: across a daylight saving change
// a window still opens at 09:00 local time (an opening in the skipped hour
// of a spring-forward day opens at the first instant after it).
//
// A list of windows is open when any of its windows is; an empty list is
// always open.
package window

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Example is a valid window, shown in every parse error.
const Example = "Mon-Fri 09:00-16:00 Europe/Berlin"

// Window is one parsed deploy window. The zero value is never open.
type Window struct {
	days       [7]bool // by time.Weekday
	start, end int     // minutes after midnight; end may be 1440 (24:00)
	loc        *time.Location
	text       string // as written, trimmed
}

// String is the window as written.
func (w Window) String() string { return w.text }

// Location is the window's time zone.
func (w Window) Location() *time.Location { return w.loc }

// Error says what is wrong with a window string.
type Error struct {
	Window string // as given
	Msg    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("window %q: %s; write DAYS HH:MM-HH:MM ZONE, e.g. %q", e.Window, e.Msg, Example)
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// Parse parses one window (see the package comment for the grammar).
func Parse(s string) (Window, error) {
	fields := strings.Fields(s)
	fail := func(format string, args ...any) (Window, error) {
		return Window{}, &Error{Window: s, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case len(fields) == 0:
		return fail("is empty")
	case len(fields) < 3:
		return fail("has %d of its 3 fields (days, hours, time zone)", len(fields))
	case len(fields) > 3:
		return fail("has %d fields, want 3 (days, hours, time zone); list days with commas and no spaces, e.g. \"Sat,Sun\"", len(fields))
	}
	w := Window{text: strings.Join(fields, " ")}
	if msg := parseDays(fields[0], &w.days); msg != "" {
		return fail("%s", msg)
	}
	var msg string
	if w.start, w.end, msg = parseHours(fields[1]); msg != "" {
		return fail("%s", msg)
	}
	if w.loc, msg = parseZone(fields[2]); msg != "" {
		return fail("%s", msg)
	}
	return w, nil
}

// ParseAll parses every window of a list, reporting each bad one (the
// errors joined, each an *Error, in the list's order).
func ParseAll(list []string) ([]Window, error) {
	var out []Window
	var errs []error
	for _, s := range list {
		w, err := Parse(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, w)
	}
	if len(errs) > 0 {
		return nil, joined(errs)
	}
	return out, nil
}

// ParseValidated parses a list that config has validated already. Were
// one not to parse, the list holds a window that never opens: a release is
// then held, never applied outside the hours an operator set. nil stays
// nil (any time).
func ParseValidated(list []string) []Window {
	if list == nil {
		return nil
	}
	ws, err := ParseAll(list)
	if err != nil {
		return []Window{{}}
	}
	return ws
}

// joined is errors.Join with one line per error; errors.As finds the first.
type joined []error

func (j joined) Error() string {
	msgs := make([]string, len(j))
	for i, e := range j {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

func (j joined) Unwrap() []error { return j }

func parseDays(s string, days *[7]bool) string {
	if strings.EqualFold(s, "daily") {
		for i := range days {
			days[i] = true
		}
		return ""
	}
	for _, item := range strings.Split(s, ",") {
		from, to, isRange := strings.Cut(item, "-")
		a, ok := dayNames[strings.ToLower(from)]
		if !ok {
			return fmt.Sprintf("%q is not a day; use Mon, Tue, Wed, Thu, Fri, Sat, Sun, ranges like Mon-Fri, or daily", from)
		}
		b := a
		if isRange {
			if b, ok = dayNames[strings.ToLower(to)]; !ok {
				return fmt.Sprintf("%q is not a day; use Mon, Tue, Wed, Thu, Fri, Sat, Sun, ranges like Mon-Fri, or daily", to)
			}
		}
		for d := a; ; d = (d + 1) % 7 {
			days[d] = true
			if d == b {
				break
			}
		}
	}
	return ""
}

func parseHours(s string) (start, end int, msg string) {
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Sprintf("%q is not a time range; write HH:MM-HH:MM", s)
	}
	start, msg = parseClock(from, false)
	if msg != "" {
		return 0, 0, msg
	}
	end, msg = parseClock(to, true)
	if msg != "" {
		return 0, 0, msg
	}
	if start == end {
		return 0, 0, fmt.Sprintf("%q opens and closes at the same time; for a whole day write 00:00-24:00", s)
	}
	return start, end, ""
}

func parseClock(s string, isEnd bool) (int, string) {
	hh, mm, ok := strings.Cut(s, ":")
	if !ok || len(hh) != 2 || len(mm) != 2 {
		return 0, fmt.Sprintf("%q is not a time; write HH:MM, 24-hour, e.g. 09:00", s)
	}
	h, herr := strconv.Atoi(hh)
	m, merr := strconv.Atoi(mm)
	switch {
	case herr != nil || merr != nil || h < 0 || m < 0:
		return 0, fmt.Sprintf("%q is not a time; write HH:MM, 24-hour, e.g. 09:00", s)
	case isEnd && h == 24 && m == 0:
		return 24 * 60, ""
	case h > 23 || m > 59:
		return 0, fmt.Sprintf("%q is not a time of day (00:00 to 23:59, or 24:00 as an end)", s)
	}
	return h*60 + m, ""
}

func parseZone(s string) (*time.Location, string) {
	if s == "Local" || strings.EqualFold(s, "local") {
		return nil, "\"Local\" depends on the host's settings; name the time zone, e.g. Europe/Berlin or UTC"
	}
	if strings.EqualFold(s, "UTC") {
		return time.UTC, ""
	}
	loc, err := time.LoadLocation(s)
	if err != nil {
		return nil, fmt.Sprintf("%q is not a known time zone; use an IANA name such as Europe/Berlin or America/New_York, or UTC", s)
	}
	return loc, ""
}

// occurrence is the window's opening on the day of date (in its zone) and
// its closing, or ok false when the window is not on that day.
func (w Window) occurrence(y int, m time.Month, d int) (start, end time.Time, ok bool) {
	day := time.Date(y, m, d, 12, 0, 0, 0, w.loc)
	if !w.days[day.Weekday()] {
		return time.Time{}, time.Time{}, false
	}
	start = time.Date(y, m, d, 0, w.start, 0, 0, w.loc)
	endDay := d
	if w.end <= w.start {
		endDay++ // crosses midnight: it closes on the next day
	}
	end = time.Date(y, m, endDay, 0, w.end, 0, 0, w.loc)
	return start, end, true
}

// open says whether w is open at t.
func (w Window) open(t time.Time) bool {
	if w.loc == nil {
		return false
	}
	lt := t.In(w.loc)
	y, m, d := lt.Date()
	// Today's opening, or yesterday's when it crosses midnight.
	for _, off := range []int{0, -1} {
		if s, e, ok := w.occurrence(y, m, d+off); ok && !t.Before(s) && t.Before(e) {
			return true
		}
	}
	return false
}

// Open says whether ws is open at t: any of its windows is. An empty list
// is always open.
func Open(ws []Window, t time.Time) bool {
	if len(ws) == 0 {
		return true
	}
	for _, w := range ws {
		if w.open(t) {
			return true
		}
	}
	return false
}

// Horizon is how far NextOpen looks ahead: a week and a day, so every
// weekly window is found.
const Horizon = 8 * 24 * time.Hour

// NextOpen is the first instant at or after t at which ws is open, in the
// time zone of the window that opens then (so that it prints as that
// window's wall-clock time). ok is false when none opens within Horizon.
func NextOpen(ws []Window, t time.Time) (time.Time, bool) {
	return NextOpenAll(t, ws)
}

// OpenAll says whether every list is open at t: the rule when the host's
// config and the pin file both set windows.
func OpenAll(t time.Time, lists ...[]Window) bool {
	for _, ws := range lists {
		if !Open(ws, t) {
			return false
		}
	}
	return true
}

// NextOpenAll is the first instant at or after t at which every list is
// open (see NextOpen). Such an instant is an opening of one of the
// windows, so those are the candidates.
func NextOpenAll(t time.Time, lists ...[]Window) (time.Time, bool) {
	if OpenAll(t, lists...) {
		return t, true
	}
	limit := t.Add(Horizon)
	var best time.Time
	found := false
	for _, ws := range lists {
		for _, w := range ws {
			if w.loc == nil {
				continue
			}
			lt := t.In(w.loc)
			y, m, d := lt.Date()
			for off := 0; off <= 9; off++ {
				s, _, ok := w.occurrence(y, m, d+off)
				if !ok || !s.After(t) || s.After(limit) || (found && !s.Before(best)) {
					continue
				}
				if OpenAll(s, lists...) {
					best, found = s, true
				}
			}
		}
	}
	return best, found
}

// Opens says when t, an answer of NextOpen, is, for a message: "opens Mon
// 09:00 CET", in the zone of the window.
func Opens(t time.Time) string {
	return "opens " + t.Format("Mon 15:04 MST")
}
