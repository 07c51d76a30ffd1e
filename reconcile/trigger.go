package reconcile

// Triggers: why a pass ran, as recorded in PassRecord.Trigger.
const (
	TriggerStart   = "start"   // first pass after the agent started
	TriggerPoll    = "poll"    // the poll timer saw the branch move
	TriggerDrift   = "drift"   // periodic comparison with the engine, git unchanged
	TriggerRetry   = "retry"   // backoff after a git or engine failure ran out
	TriggerWebhook = "webhook" // a push notification: look at git now
	TriggerSync    = "sync"    // an operator asked (lockstep sync): always a pass
	// TriggerRollback is `lockstep rollback`: the last healthy revision is
	// applied again and the pinned commit held back.
	TriggerRollback = "rollback"
	// TriggerCLI is `lockstep apply`: the same pass as the agent's, run
	// by an operator, recorded in the same history.
	TriggerCLI = "cli"
)
