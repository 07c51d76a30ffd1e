package reconcile

import (
	"fmt"
	"strings"

	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

// The fixtures (projects, observed worlds) and the recording engine are in
// package fake; what takes reconcile's own types stays here.

var _ Engine = (*fake.Engine)(nil)

// brief is an action in one line, for compact expectations.
func brief(a Action) string {
	target := a.Container
	switch a.Kind {
	case ActPull:
		target = a.Image
	case ActCreateNetwork:
		target = a.Network
	case ActCreateVolume:
		target = a.Volume
	case ActAdopt:
		target += a.Network + a.Volume
	}
	s := fmt.Sprintf("%s %s: %s", a.Kind, target, strings.Join(a.Reasons, "; "))
	if a.Order != "" {
		s += " [" + a.Order + "]"
	}
	if a.Drift {
		s += " [drift]"
	}
	if a.Adopt && a.Kind != ActAdopt {
		s += " [adopt]"
	}
	return s
}

func briefs(p *Plan) []string {
	out := make([]string, len(p.Actions))
	for i, a := range p.Actions {
		out[i] = brief(a)
	}
	return out
}
