package notify

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

func TestSlackText(t *testing.T) {
	base := Event{
		Environment: "production",
		Commit:      "9fceb02d0ae598e95dc970b74767f19372d61af8",
		Host:        "web-1",
		Time:        time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC),
	}
	with := func(f func(*Event)) Event {
		ev := base
		f(&ev)
		return ev
	}
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{
			name: "failure rolled back",
			ev: with(func(e *Event) {
				e.Kind, e.Service, e.Reason, e.Previous = reconcile.EventFailure, "web", "unhealthy", "4d2e1aa0c3b2b8a1c2f5e6d7a8b9c0d1e2f3a4b5"
			}),
			want: ":rotating_light: production on web-1: release 9fceb02d0ae5 failed (web: unhealthy) — rolled back to 4d2e1aa0c3b2",
		},
		{
			name: "first deploy failure, project differs",
			ev: with(func(e *Event) {
				e.Kind, e.Project, e.Reason = reconcile.EventFailure, "shop", "pull 127.0.0.1:5000/web:9fceb02: not found"
			}),
			want: ":rotating_light: production (project shop) on web-1: release 9fceb02d0ae5 failed (pull 127.0.0.1:5000/web:9fceb02: not found)",
		},
		{
			name: "rollback",
			ev: with(func(e *Event) {
				e.Kind, e.Service, e.Previous = reconcile.EventRollback, "worker", "4d2e1aa0c3b2b8a1c2f5e6d7a8b9c0d1e2f3a4b5"
			}),
			want: ":rewind: production on web-1: rolled back from release 9fceb02d0ae5 to 4d2e1aa0c3b2 (worker)",
		},
		{
			name: "recovery",
			ev:   with(func(e *Event) { e.Kind = reconcile.EventRecovery }),
			want: ":white_check_mark: production on web-1: recovered, release 9fceb02d0ae5 is healthy",
		},
		{
			name: "deploy",
			ev:   with(func(e *Event) { e.Kind, e.Previous, e.Host = reconcile.EventDeploy, "4d2e1aa", "" }),
			want: ":rocket: production: deployed release 9fceb02d0ae5 (was 4d2e1aa)",
		},
		{
			name: "held",
			ev: with(func(e *Event) {
				e.Kind, e.Previous, e.Reason = reconcile.EventHeld, "4d2e1aa0c3b2b8a1c2f5e6d7a8b9c0d1e2f3a4b5", "waiting for the deploy window (opens Mon 09:00 CET)"
			}),
			want: ":hourglass: production on web-1: release 9fceb02d0ae5 is held, not applied (waiting for the deploy window (opens Mon 09:00 CET)); 4d2e1aa0c3b2 keeps running",
		},
		{
			name: "teardown",
			ev: with(func(e *Event) {
				e.Kind, e.Environment, e.Commit, e.Previous, e.Reason, e.Host = reconcile.EventTeardown, "review-pr-142", "", "4d2e1aa", "pin file deleted", ""
			}),
			want: ":wastebasket: review-pr-142: review environment torn down (pin file deleted), it ran release 4d2e1aa",
		},
		{
			name: "reason is escaped",
			ev:   with(func(e *Event) { e.Kind, e.Reason = reconcile.EventFailure, "<!channel> a & b" }),
			want: ":rotating_light: production on web-1: release 9fceb02d0ae5 failed (&lt;!channel&gt; a &amp; b)",
		},
		{
			name: "logs in a code block",
			ev: with(func(e *Event) {
				e.Kind, e.Service, e.Logs = reconcile.EventFailure, "web", []string{"starting\n", "x ``` y", "<@U123>"}
			}),
			want: ":rotating_light: production on web-1: release 9fceb02d0ae5 failed (web)\n" +
				"Last log lines of web:\n```\nstarting\nx ''' y\n&lt;@U123&gt;\n```",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SlackText(tt.ev); got != tt.want {
				t.Errorf("SlackText:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// A crash loop can print thousands of long lines; the message keeps the
// last few, each cut short.
func TestSlackTextBoundsLogs(t *testing.T) {
	var logs []string
	for i := range 500 {
		logs = append(logs, fmt.Sprintf("line %d %s", i, strings.Repeat("é", 400)))
	}
	text := SlackText(Event{Kind: reconcile.EventFailure, Environment: "staging", Commit: "abc", Logs: logs})
	if strings.Contains(text, "line 479 ") || !strings.Contains(text, "line 480 ") || !strings.Contains(text, "line 499 ") {
		t.Errorf("want exactly the last %d lines (480..499)", slackLogLines)
	}
	block := text[strings.Index(text, "```"):]
	for _, l := range strings.Split(block, "\n") {
		if len(l) > slackLogLineLen+len("…") {
			t.Errorf("line of %d bytes is longer than %d", len(l), slackLogLineLen)
		}
		if !strings.HasPrefix(l, "line") && !strings.HasPrefix(l, "```") {
			t.Errorf("unexpected line in the block: %q", l)
		}
		if !strings.ContainsRune(l, '…') && strings.HasPrefix(l, "line") {
			t.Errorf("long line %q was not cut", l)
		}
	}
	if !strings.HasSuffix(text, "```") {
		t.Error("code block is not closed")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"5", 5 * time.Second},
		{"30", 30 * time.Second},
		{"31", 0},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second},
		{now.Add(time.Hour).Format(http.TimeFormat), 0},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.in, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := backoff(40); got != maxDelay {
		t.Errorf("backoff(40) = %v, want the cap %v", got, maxDelay)
	}
}
