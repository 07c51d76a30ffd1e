package reconcile

import (
	"time"

	"github.com/lockstep-gitops/lockstep/compose"
)

// Deployed records what the last successful apply of an environment left
// running: the revision and the replicas of each service. It is what lets a
// plan tell "removed by hand" from "added by this release", since containers
// a release leaves untouched keep the commit label of the release that
// created them. reconcile/state keeps it on disk.
type Deployed struct {
	Commit   string         `json:"commit"`
	Project  string         `json:"project"`
	Replicas map[string]int `json:"replicas"`
	At       time.Time      `json:"at"`
}

// DeployedOf is the record of p running, as of at.
func DeployedOf(p *compose.Project, at time.Time) *Deployed {
	d := &Deployed{Commit: p.Commit, Project: p.Name, Replicas: map[string]int{}, At: at.UTC()}
	for _, s := range p.Services {
		if s.Replicas > 0 {
			d.Replicas[s.Name] = s.Replicas
		}
	}
	if p.Stack != nil {
		for _, s := range p.Stack.Services {
			if n := s.Tasks(); n > 0 {
				d.Replicas[s.Key] = n
			}
		}
	}
	return d
}

// Same reports whether d records the same deployment as o (ignoring when).
func (d *Deployed) Same(o *Deployed) bool {
	if d == nil || o == nil || d.Commit != o.Commit || d.Project != o.Project || len(d.Replicas) != len(o.Replicas) {
		return false
	}
	for k, v := range d.Replicas {
		if o.Replicas[k] != v {
			return false
		}
	}
	return true
}
