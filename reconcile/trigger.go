package reconcile

// Trigger is why a pass ran, as recorded in PassRecord.Trigger.
type Trigger string

// Triggers.
const (
	TriggerStart   Trigger = "start"   // first pass after the agent started
	TriggerPoll    Trigger = "poll"    // the poll timer saw the branch move
	TriggerDrift   Trigger = "drift"   // periodic comparison with the engine, git unchanged
	TriggerRetry   Trigger = "retry"   // backoff after a git or engine failure ran out
	TriggerWebhook Trigger = "webhook" // a push notification: look at git now
	TriggerSync    Trigger = "sync"    // an operator asked (lockstep sync): always a pass
	// TriggerRollback is `lockstep rollback`: the last healthy revision is
	// applied again and the pinned commit held back.
	TriggerRollback Trigger = "rollback"
	// TriggerCLI is `lockstep apply`: the same pass as the agent's, run
	// by an operator, recorded in the same history.
	TriggerCLI Trigger = "cli"
	// TriggerWindow: the deploy window a held release waits for opened.
	TriggerWindow Trigger = "window"
)
