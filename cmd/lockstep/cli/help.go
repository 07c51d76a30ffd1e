package cli

const exitCodesHelp = `Exit codes:
  0   success
  1   failure: a pass failed, or git or the engine could not be reached
  2   plan --exit-code only: changes are pending
  64  usage error: unknown command, flag or environment
  78  config error: the config file is missing or invalid
`

const globalFlagsHelp = `Global flags (before or after the command):
  --config FILE        config file; default $LOCKSTEP_CONFIG, else /etc/lockstep/lockstep.toml
  --log-level LEVEL    debug, info, warn or error; overrides [log].level
  --log-format FORMAT  json or console; overrides [log].format
`

const mainUsage = `lockstep keeps Docker Compose hosts in lockstep with git.

Usage:
  lockstep [global flags] COMMAND [flags] [ENV...]

Commands:
  plan [ENV...]       show what apply would change (--json, --exit-code)
  apply [ENV...]      run one pass now: make the host match the pinned commit (--json)
  validate [ENV...]   check config, pins and compose files at the branch head
                      (or --commit SHA), touching nothing
  agent               the daemon: follow the branch, apply every environment,
                      serve the local API (run it under systemd)
  status              what the running agent knows of each environment (--json)
  history ENV         the agent's recent passes of ENV (--json, --limit N)
  sync [ENV]          ask the running agent for a pass now (--json)
  retry ENV           clear ENV's quarantined commits and try the pinned one again (--json)
  rollback ENV        apply ENV's last healthy revision again now and hold the pinned
                      commit until the pin changes; works while git is down (--json)
  demo                the whole story offline: deploy, release, roll back, clean up
                      (--keep leaves it running)
  version             print the version
  help [COMMAND]      show help

With no ENV, a command acts on every environment in the config.
Logs go to stderr; plans and results to stdout.

` + globalFlagsHelp + `
` + exitCodesHelp

// commandHelp returns the help text of one command. The texts are constants
// and this switch is their table: nothing can change a help text at run
// time, and each reads as it prints.
func commandHelp(name string) (string, bool) {
	switch name {
	case "plan":
		return planHelp, true
	case "apply":
		return applyHelp, true
	case "validate":
		return validateHelp, true
	case "agent":
		return agentHelp, true
	case "status":
		return statusHelp, true
	case "history":
		return historyHelp, true
	case "sync":
		return syncHelp, true
	case "retry":
		return retryHelp, true
	case "rollback":
		return rollbackHelp, true
	case "demo":
		return demoHelp, true
	case "version":
		return versionHelp, true
	case "help":
		return helpHelp, true
	}
	return "", false
}

// commandFooter ends the help of every command that takes the global flags
// (all but demo, version and help).
const commandFooter = globalFlagsHelp + "\n" + exitCodesHelp

const planHelp = `Usage: lockstep plan [--json] [--exit-code] [ENV...]

Shows what apply would do for each environment: the actions that would make
the host match the pinned commit, each with its reason. Changes nothing.

  --json        print one JSON array, one object per environment
  --exit-code   exit 2 when any environment has changes pending

` + commandFooter

const applyHelp = `Usage: lockstep apply [--json] [--no-rollback] [--force-window] [ENV...]

Runs one pass for each environment now, the same pass as the agent's:
prints the plan, carries it out, runs the health gate, and prints what was
done. A release that fails its gate is rolled back to the last healthy
revision and quarantined, and the pass is recorded in the environment's
history, as the agent does. A quarantined pinned commit is not applied
(exit 1): pin another commit, or run 'lockstep retry ENV'. Outside its
deploy windows a new release is held: what runs is checked and repaired,
nothing new is applied.

  --json          print one JSON array, one object per environment
  --no-rollback   leave a release that fails its gate running, to inspect it;
                  it is still recorded as failed and quarantined
  --force-window  apply a new release although its deploy window is closed
                  (an emergency); recorded in the history, logged at warn

` + commandFooter

const validateHelp = `Usage: lockstep validate [--commit SHA] [--json] [ENV...]

Checks the config, then for each environment its pin file and compose files
at the branch head (or at SHA), touching no container.

  --commit SHA   validate the tree at SHA instead of the pinned revision
  --json         print one JSON array, one object per environment

` + commandFooter

const agentHelp = `Usage: lockstep agent [--config FILE]

The daemon. One pass at a time per environment, driven by the poll timer (the
cheap "did the branch move?" check first), webhooks, 'lockstep sync' and a
periodic drift check against the engine. Serves the local API ([api].socket):
status, history, sync, /healthz (503 until the first pass) and /metrics.

Under systemd (systemd/lockstep.service, Type=notify): READY once the config is
valid and the API listens; watchdog pings from the loop itself; STATUS= shows
the last result per environment. SIGTERM starts nothing new and lets the step
in flight finish (within [agent].shutdown_grace), then exits 0. SIGHUP reloads
the config only if the new one validates; otherwise the agent keeps running
on the old one and logs why.

` + commandFooter

const statusHelp = `Usage: lockstep status [--json]

Asks the running agent, over its local API, for each environment: the pinned
commit, what runs, the last healthy commit, the last pass and its result, the
commits held in quarantine, and the last error (with the next retry) or what
it is waiting for; then the last health gate failure of each environment.

  --json   print {"environments": [...]}

` + commandFooter

const historyHelp = `Usage: lockstep history [--json] [--limit N] ENV

The running agent's recent passes of ENV, newest last: when, trigger, commit,
result, the service that failed its health gate, duration, plan summary and
error; then the last log lines of the newest failing service.

  --json      print a JSON array of passes
  --limit N   how many passes (default 20)

` + commandFooter

const syncHelp = `Usage: lockstep sync [--json] [ENV]

Asks the running agent for a pass now, of ENV or of every environment. A
nudge: the pass looks at git and the engine as any pass does, and a burst of
nudges coalesces into one pass.

` + commandFooter

const retryHelp = `Usage: lockstep retry [--json] ENV

A release that fails its health gate is rolled back and its commit
quarantined: the agent does not apply it again until the pin names another
commit. retry clears ENV's quarantine and asks the running agent for a pass
now, so the pinned commit is tried again (health gate and rollback included).
With no agent running, it clears the quarantine in the state dir and says
to run 'lockstep apply ENV'.

` + commandFooter

const rollbackHelp = `Usage: lockstep rollback [--json] ENV

The emergency brake. Asks the running agent to apply ENV's last healthy
revision again now, from its release directory on disk (no git needed), and
to hold the pinned commit back until the pin names another commit (or
'lockstep retry ENV'). Fails (HTTP 409) when ENV has no healthy revision
other than the pinned one.

` + commandFooter

const versionHelp = "Usage: lockstep version\n\nPrints the version, the commit it was built from and the Go version.\n"

const helpHelp = "Usage: lockstep help [COMMAND]\n\nShows help for lockstep, or for one command.\n"
