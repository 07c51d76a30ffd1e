package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/lockstep-gitops/lockstep/cmd/lockstep/wire"
	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile/envset"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
)

// pinLister is what finds a review environment by name: the pin files of
// its set at the branch head. The real runner has it; a test's fake may
// not.
type pinLister interface {
	ListPins(ctx context.Context, glob string) (string, []string, error)
}

// passRunner is the real runner: the pipeline, and the releases it
// resolves with for the pin files of a set.
type passRunner struct {
	*pass.Pipeline
	releases *gitsource.Releases
}

func (r passRunner) ListPins(ctx context.Context, glob string) (string, []string, error) {
	return r.releases.ListPins(ctx, glob)
}

// setOf returns the set whose environments name would be one of.
func setOf(cfg *config.Config, name string) (config.EnvironmentSet, bool) {
	for _, s := range cfg.EnvironmentSets {
		if strings.HasPrefix(name, s.Name+"-") {
			return s, true
		}
	}
	return config.EnvironmentSet{}, false
}

// setEnvironment finds the review environment name among the pin files of
// its set at the branch head.
func setEnvironment(ctx context.Context, r runner, cfg *config.Config, name string) (pass.Environment, error) {
	set, _ := setOf(cfg, name)
	lister, ok := r.(pinLister)
	if !ok {
		return pass.Environment{}, fmt.Errorf("%s: cannot list the pin files of set %s here", name, set.Name)
	}
	head, files, err := lister.ListPins(ctx, set.Pins)
	if err != nil {
		return pass.Environment{}, fmt.Errorf("%s: list the pin files of set %s: %w", name, set.Name, err)
	}
	spec := set.Spec()
	fixed := envset.Fixed(cfg.EnvironmentNames()...)
	for _, e := range cfg.Environments {
		fixed[e.Project] = true
	}
	members, refused := envset.Expand(spec, files, fixed)
	for _, m := range members {
		if m.Name == name {
			return pass.SetEnvironment(spec, m), nil
		}
	}
	for _, r := range refused {
		if r.Name == name {
			return pass.Environment{}, fmt.Errorf("%s (%s): %s", name, r.PinFile, r.Reason)
		}
	}
	return pass.Environment{}, fmt.Errorf("no pin file of set %s (%s) at %s makes the environment %s", set.Name, set.Pins, shortSHA(head), name)
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// resolveEnvironments turns the selection into the environments passes
// run for: fixed ones from the config, a set's found by its pin files.
func resolveEnvironments(ctx context.Context, r runner, cfg *config.Config, sel []selected) ([]pass.Environment, error) {
	out := make([]pass.Environment, 0, len(sel))
	for _, s := range sel {
		if s.fixed != nil {
			out = append(out, wire.Environment(*s.fixed))
			continue
		}
		env, err := setEnvironment(ctx, r, cfg, s.name)
		if err != nil {
			return nil, err
		}
		out = append(out, env)
	}
	return out, nil
}

// selected is one environment named on the command line: a fixed one, or
// the name of a set's, found once the runner can list pin files.
type selected struct {
	name  string
	fixed *config.Environment
}
