package notify

import (
	"strings"
	"unicode/utf8"

	"github.com/lockstep-gitops/lockstep/reconcile"
)

// Bounds of the log excerpt in a Slack message: enough to see why a
// container died, short enough to read on a phone.
const (
	slackLogLines   = 20
	slackLogLineLen = 300
)

// shortLen is the length commits are shown with, the same as
// LOCKSTEP_COMMIT_SHORT.
const shortLen = 12

// SlackText is the one-message summary posted to "slack" targets, e.g.
//
//	:rotating_light: production: release 9fceb02d0ae5 failed (web: unhealthy) — rolled back to 4d2e1aa0c3b2
//
// followed by the last log lines of the failing container in a code block.
// Text from the event is escaped as Slack requires (&, <, >), so a log line
// cannot turn into a link or a mention.
func SlackText(ev Event) string {
	var b strings.Builder
	where := ev.Environment
	if ev.Project != "" && ev.Project != ev.Environment {
		where += " (project " + ev.Project + ")"
	}
	if ev.Host != "" {
		where += " on " + ev.Host
	}
	commit, prev := short(ev.Commit), short(ev.Previous)

	switch ev.Kind {
	case reconcile.EventFailure:
		b.WriteString(":rotating_light: " + where + ": release " + commit + " failed" + detail(ev))
		if prev != "" {
			b.WriteString(" — rolled back to " + prev)
		}
	case reconcile.EventRollback:
		b.WriteString(":rewind: " + where + ": rolled back from release " + commit)
		if prev != "" {
			b.WriteString(" to " + prev)
		}
		b.WriteString(detail(ev))
	case reconcile.EventRecovery:
		b.WriteString(":white_check_mark: " + where + ": recovered, release " + commit + " is healthy")
	case reconcile.EventDeploy:
		b.WriteString(":rocket: " + where + ": deployed release " + commit)
		if prev != "" {
			b.WriteString(" (was " + prev + ")")
		}
	case reconcile.EventHeld:
		b.WriteString(":hourglass: " + where + ": release " + commit + " is held, not applied" + detail(ev))
		if prev != "" {
			b.WriteString("; " + prev + " keeps running")
		}
	case reconcile.EventTeardown:
		b.WriteString(":wastebasket: " + where + ": review environment torn down")
		if ev.Reason != "" {
			b.WriteString(" (" + ev.Reason + ")")
		}
		if prev != "" {
			b.WriteString(", it ran release " + prev)
		}
	default:
		b.WriteString(":information_source: " + where + ": " + string(ev.Kind) + " of release " + commit + detail(ev))
	}

	if logs := lastLines(ev.Logs); len(logs) > 0 {
		b.WriteString("\nLast log lines")
		if ev.Service != "" {
			b.WriteString(" of " + ev.Service)
		}
		b.WriteString(":\n```\n")
		for _, l := range logs {
			b.WriteString(l + "\n")
		}
		b.WriteString("```")
	}
	return escapeSlack(b.String())
}

// detail is " (service: reason)", " (reason)", " (service)" or "".
func detail(ev Event) string {
	switch {
	case ev.Service != "" && ev.Reason != "":
		return " (" + ev.Service + ": " + ev.Reason + ")"
	case ev.Reason != "":
		return " (" + ev.Reason + ")"
	case ev.Service != "":
		return " (" + ev.Service + ")"
	}
	return ""
}

func short(commit string) string {
	if len(commit) > shortLen {
		return commit[:shortLen]
	}
	return commit
}

// lastLines keeps the last slackLogLines lines, each cut to
// slackLogLineLen bytes (on a rune boundary), with anything that would end
// the code block early defused.
func lastLines(logs []string) []string {
	if len(logs) > slackLogLines {
		logs = logs[len(logs)-slackLogLines:]
	}
	out := make([]string, 0, len(logs))
	for _, l := range logs {
		l = strings.TrimRight(l, "\r\n")
		if len(l) > slackLogLineLen {
			cut := slackLogLineLen
			for cut > 0 && !utf8.RuneStart(l[cut]) {
				cut--
			}
			l = l[:cut] + "…"
		}
		out = append(out, strings.ReplaceAll(l, "```", "'''"))
	}
	return out
}

// escapeSlack escapes the three characters Slack's message format treats
// as control characters.
func escapeSlack(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
