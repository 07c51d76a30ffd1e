package window

import (
	"testing"
	"time"
)

// FuzzParse: Parse never panics, and what it accepts prints as it was
// written (trimmed), parses again, and answers Open and NextOpen without
// panicking, NextOpen only with an instant at which the window is open.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"Mon-Fri 09:00-16:00 Europe/Berlin", "Sat,Sun 10:00-12:00 UTC", "Mon 22:00-02:00 UTC",
		"daily 00:00-06:00 America/New_York", "Fri-Mon 00:00-24:00 Asia/Kolkata", "mon 9-10 UTC", "",
	} {
		f.Add(s)
	}
	at := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC) // Berlin springs forward
	f.Fuzz(func(t *testing.T, s string) {
		w, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(w.String())
		if err != nil || again.String() != w.String() {
			t.Fatalf("Parse(%q) = %q, which parses as %q, %v", s, w, again, err)
		}
		ws := []Window{w}
		Open(ws, at)
		if next, ok := NextOpen(ws, at); ok && !Open(ws, next) {
			t.Fatalf("%q: NextOpen(%v) = %v, not open then", s, at, next)
		}
	})
}
