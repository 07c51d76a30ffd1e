package pass

import (
	"slices"

	"github.com/lockstep-gitops/lockstep/reconcile/envset"
)

// SetEnvironment is the environment of set that member (one of its pin
// files) names: its project is its name, its settings are the set's.
func SetEnvironment(set envset.Set, member envset.Member) Environment {
	return Environment{
		Name:          member.Name,
		Project:       member.Name,
		PinFile:       member.PinFile,
		ComposeFiles:  slices.Clone(set.ComposeFiles),
		EnvFiles:      slices.Clone(set.EnvFiles),
		HealthTimeout: set.HealthTimeout,
		Bake:          set.Bake,
		Set:           set.Name,
		URL:           member.URL,
		RemoveVolumes: set.RemoveVolumes,
		Windows:       slices.Clone(set.Windows),
	}
}
