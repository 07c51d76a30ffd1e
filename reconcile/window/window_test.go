package window

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, s string) Window {
	t.Helper()
	w, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return w
}

func at(t *testing.T, zone, s string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "is empty"},
		{"Mon-Fri 09:00-16:00", "has 2 of its 3 fields"},
		{"Mon, Tue 09:00-16:00 UTC", "has 4 fields"},
		{"Mo-Fr 09:00-16:00 UTC", `"Mo" is not a day`},
		{"Mon-Fry 09:00-16:00 UTC", `"Fry" is not a day`},
		{"Mon 9-16 UTC", `"9" is not a time`},
		{"Mon 0900 UTC", `"0900" is not a time range`},
		{"Mon 9:00-16:00 UTC", `"9:00" is not a time`},
		{"Mon 09:00-25:00 UTC", `"25:00" is not a time of day`},
		{"Mon 24:00-02:00 UTC", `"24:00" is not a time of day`},
		{"Mon 09:60-10:00 UTC", `"09:60" is not a time of day`},
		{"Mon 09:00-09:00 UTC", "opens and closes at the same time"},
		{"Mon 09:00-16:00 Europe/Berlln", `"Europe/Berlln" is not a known time zone`},
		{"Mon 09:00-16:00 Local", `"Local" depends on the host`},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		var we *Error
		if !errors.As(err, &we) {
			t.Errorf("Parse(%q) = %v, want an *Error", tt.in, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), Example) {
			t.Errorf("Parse(%q) = %q, want it to say %q and show %q", tt.in, err, tt.want, Example)
		}
	}
}

func TestParseAllReportsEach(t *testing.T) {
	_, err := ParseAll([]string{"Mon 09:00-10:00 UTC", "Tue 9-10 UTC", "Funday 09:00-10:00 UTC"})
	if err == nil || strings.Count(err.Error(), "\n") != 1 {
		t.Fatalf("ParseAll = %v, want two problems", err)
	}
	var we *Error
	if !errors.As(err, &we) || we.Window != "Tue 9-10 UTC" {
		t.Errorf("errors.As found %+v, want the first bad window", we)
	}
	ws, err := ParseAll([]string{"daily 00:00-06:00 America/New_York", "sat,SUN 10:00-12:00 utc"})
	if err != nil || len(ws) != 2 || ws[1].String() != "sat,SUN 10:00-12:00 utc" {
		t.Fatalf("ParseAll = %v, %v", ws, err)
	}
}

func TestOpen(t *testing.T) {
	tests := []struct {
		window, zone, at string
		open             bool
	}{
		// 2026-11-30 is a Monday.
		{"Mon-Fri 09:00-16:00 Europe/Berlin", "Europe/Berlin", "2026-11-30 09:00", true},
		{"Mon-Fri 09:00-16:00 Europe/Berlin", "Europe/Berlin", "2026-11-30 08:59", false},
		{"Mon-Fri 09:00-16:00 Europe/Berlin", "Europe/Berlin", "2026-11-30 16:00", false}, // end excluded
		{"Mon-Fri 09:00-16:00 Europe/Berlin", "UTC", "2026-11-30 08:30", true},            // 09:30 CET
		{"Mon-Fri 09:00-16:00 Europe/Berlin", "Europe/Berlin", "2026-12-05 10:00", false}, // Saturday
		{"Sat,Sun 10:00-12:00 UTC", "UTC", "2026-12-06 11:00", true},
		{"Sat,Sun 10:00-12:00 UTC", "UTC", "2026-12-07 11:00", false},
		// Ranges wrap around the week.
		{"Fri-Mon 10:00-12:00 UTC", "UTC", "2026-11-30 11:00", true},  // Mon
		{"Fri-Mon 10:00-12:00 UTC", "UTC", "2026-12-01 11:00", false}, // Tue
		{"Fri-Mon 10:00-12:00 UTC", "UTC", "2026-12-06 11:00", true},  // Sun
		// Crossing midnight belongs to the start day.
		{"Mon 22:00-02:00 UTC", "UTC", "2026-11-30 23:00", true},
		{"Mon 22:00-02:00 UTC", "UTC", "2026-12-01 01:59", true}, // Tue night, Monday's window
		{"Mon 22:00-02:00 UTC", "UTC", "2026-12-01 02:00", false},
		{"Mon 22:00-02:00 UTC", "UTC", "2026-11-30 01:00", false}, // Monday early: Sunday's, not on
		{"Mon 22:00-02:00 UTC", "UTC", "2026-12-01 23:00", false}, // Tuesday evening
		{"daily 00:00-24:00 UTC", "UTC", "2026-12-01 23:59", true},
		{"daily 22:00-24:00 UTC", "UTC", "2026-12-02 00:00", false},
		{"daily 00:00-06:00 America/New_York", "UTC", "2026-12-01 10:00", true},  // 05:00 EST
		{"daily 00:00-06:00 America/New_York", "UTC", "2026-12-01 11:00", false}, // 06:00 EST
	}
	for _, tt := range tests {
		w := mustParse(t, tt.window)
		if got := Open([]Window{w}, at(t, tt.zone, tt.at)); got != tt.open {
			t.Errorf("Open(%q, %s %s) = %v, want %v", tt.window, tt.at, tt.zone, got, tt.open)
		}
	}
	if !Open(nil, time.Now()) {
		t.Error("no windows must mean always open")
	}
	if (Window{}).open(time.Now()) {
		t.Error("the zero Window must never be open")
	}
}

// TestDST: windows are wall-clock times in their zone, on both sides of
// a daylight saving change.
func TestDST(t *testing.T) {
	w := mustParse(t, "daily 09:00-10:00 Europe/Berlin")
	// Berlin: CET (UTC+1) until 2026-03-29 02:00, CEST (UTC+2) after.
	for _, tt := range []struct {
		utc  string
		open bool
	}{
		{"2026-03-28 08:30", true},  // 09:30 CET
		{"2026-03-29 07:30", true},  // 09:30 CEST
		{"2026-03-29 08:30", false}, // 10:30 CEST
		{"2026-10-25 08:30", true},  // 09:30 CET again
	} {
		if got := Open([]Window{w}, at(t, "UTC", tt.utc)); got != tt.open {
			t.Errorf("Open at %s UTC = %v, want %v", tt.utc, got, tt.open)
		}
	}
	next, ok := NextOpen([]Window{w}, at(t, "UTC", "2026-03-28 12:00"))
	if !ok || !next.Equal(at(t, "UTC", "2026-03-29 07:00")) || Opens(next) != "opens Sun 09:00 CEST" {
		t.Errorf("NextOpen over spring forward = %v %v (%s)", next, ok, Opens(next))
	}
	// A window opening in the hour that spring forward skips opens at
	// the first instant after it, never a day late.
	gap := mustParse(t, "Sun 02:30-04:00 Europe/Berlin")
	next, ok = NextOpen([]Window{gap}, at(t, "UTC", "2026-03-28 12:00"))
	if !ok || next.After(at(t, "UTC", "2026-03-29 02:00")) || !Open([]Window{gap}, next) {
		t.Errorf("NextOpen into the skipped hour = %v %v", next, ok)
	}
}

func TestNextOpen(t *testing.T) {
	weekdays := mustParse(t, "Mon-Fri 09:00-16:00 Europe/Berlin")
	tests := []struct {
		name  string
		lists [][]Window
		from  string // UTC
		want  string // UTC; "" = none
		opens string
	}{
		{"friday evening to monday", [][]Window{{weekdays}}, "2026-12-04 17:00", "2026-12-07 08:00", "opens Mon 09:00 CET"},
		{"open now is now", [][]Window{{weekdays}}, "2026-12-01 10:00", "2026-12-01 10:00", ""},
		{"earliest of a list", [][]Window{{weekdays, mustParse(t, "Sat 06:00-07:00 UTC")}}, "2026-12-04 17:00", "2026-12-05 06:00", "opens Sat 06:00 UTC"},
		{"midnight crossing", [][]Window{{mustParse(t, "Mon 22:00-02:00 UTC")}}, "2026-12-01 03:00", "2026-12-07 22:00", "opens Mon 22:00 UTC"},
		// Both lists must be open: the host's weekdays, the pin's mornings.
		{"both must agree", [][]Window{{weekdays}, {mustParse(t, "daily 06:00-10:00 UTC")}}, "2026-12-01 11:00", "2026-12-02 08:00", "opens Wed 09:00 CET"},
		{"never together", [][]Window{{mustParse(t, "Mon 09:00-10:00 UTC")}, {mustParse(t, "Tue 09:00-10:00 UTC")}}, "2026-12-01 11:00", "", ""},
	}
	for _, tt := range tests {
		got, ok := NextOpenAll(at(t, "UTC", tt.from), tt.lists...)
		if tt.want == "" {
			if ok {
				t.Errorf("%s: NextOpenAll = %v, want none", tt.name, got)
			}
			continue
		}
		if !ok || !got.Equal(at(t, "UTC", tt.want)) {
			t.Errorf("%s: NextOpenAll = %v %v, want %s UTC", tt.name, got, ok, tt.want)
		}
		if tt.opens != "" && Opens(got) != tt.opens {
			t.Errorf("%s: Opens = %q, want %q", tt.name, Opens(got), tt.opens)
		}
	}
}
