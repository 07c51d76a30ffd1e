package engine

import (
	"slices"
	"testing"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

func TestSplitLogLines(t *testing.T) {
	long := make([]byte, maxLogLine+10)
	for i := range long {
		long[i] = 'x'
	}
	tests := []struct {
		name string
		in   string
		tail int
		want []string
	}{
		{"last lines only", "a\nb\nc\n", 2, []string{"b", "c"}},
		{"no trailing newline", "a\nb", 5, []string{"a", "b"}},
		{"tty carriage returns", "a\r\nb\r\n", 5, []string{"a", "b"}},
		{"empty", "", 5, nil},
		{"overlong line is cut", string(long) + "\n", 5, []string{string(long[:maxLogLine]) + " ..."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := splitLogLines([]byte(tt.in), tt.tail); !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLogs reads the output of real containers, with and without a TTY
// (the engine multiplexes stdout and stderr only without one).
func TestLogs(t *testing.T) {
	f := newFixture(t, "logs")
	ctx := testContext(t)
	ref := harness.PushTestApp(t, f.reg, "app", "v1", harness.ImageOptions{})
	for _, tty := range []bool{false, true} {
		svc := f.service("boom", ref, []string{"no-such-subcommand"}, nil, "bridge")
		svc.Config.Tty = tty
		p := &compose.Project{Name: f.project, Services: []compose.Service{svc}}
		name := f.project + "-boom-1"
		if tty {
			name = f.project + "-boom-tty-1"
		}
		if _, err := f.eng.Pull(ctx, ref); err != nil {
			t.Fatal(err)
		}
		id, err := f.eng.CreateContainer(ctx, p, &p.Services[0], 1, name, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := f.eng.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		f.waitState(t, ctx, id, "exited", "")
		lines, err := f.eng.Logs(ctx, name, 20)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{`unknown subcommand "no-such-subcommand"`, "usage: app serve | healthcheck | once | get URL | loop URL INTERVAL"}
		if !slices.Equal(lines, want) {
			t.Fatalf("tty=%v: logs %q, want %q", tty, lines, want)
		}
		if last, err := f.eng.Logs(ctx, id, 1); err != nil || !slices.Equal(last, want[1:]) {
			t.Fatalf("tty=%v: tail 1: %q %v", tty, last, err)
		}
	}
	if _, err := f.eng.Logs(ctx, f.project+"-missing-1", 20); err == nil {
		t.Fatal("logs of a missing container: no error")
	}
}
