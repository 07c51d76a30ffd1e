package reconcile

// Environment is one environment of the agent config, as a pass needs it.
type Environment struct {
	Name         string   // environment name (staging, production, pr-142)
	Project      string   // compose project name
	PinFile      string   // repo-relative pin file path
	ComposeFiles []string // repo-relative compose files; empty = pin's, else discovery
	EnvFiles     []string // host-local env files (absolute)
}

// PassResult is what one pass (plan, apply or validate) of an environment
// found and did.
type PassResult struct {
	Environment string       `json:"environment"`
	Project     string       `json:"project"`
	Head        string       `json:"head"`   // branch head the pin was read at
	Commit      string       `json:"commit"` // the resolved revision
	ReleaseDir  string       `json:"release_dir"`
	Paused      bool         `json:"paused,omitempty"`
	Plan        *Plan        `json:"plan,omitempty"`
	Applied     *ApplyResult `json:"applied,omitempty"` // nil for plan and validate
}
