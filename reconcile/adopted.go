package reconcile

import (
	"time"

	"github.com/lockstep-gitops/lockstep/compose"
)

// Adopted is a container lockstep took over from Docker Compose without
// recreating it (an ActAdopt that apply carried out). The container keeps
// the labels Compose gave it, without a lockstep.hash; the record stands in
// for the label, so later passes plan it as one lockstep created from the
// desired service as it was when adopted. reconcile/state keeps the
// records per environment.
type Adopted struct {
	ContainerID string    `json:"container_id"`
	Service     string    `json:"service"`
	Number      int       `json:"number"`
	Hash        string    `json:"hash"`                // the service's lockstep.hash when adopted
	SpecHash    string    `json:"spec_hash,omitempty"` // its lockstep.spec-hash when adopted
	Commit      string    `json:"commit"`              // the revision that adopted it
	At          time.Time `json:"at"`
}

// OverlayAdopted gives each container of o that has no lockstep.hash and
// is recorded in adopted the hash, spec hash and commit recorded for it:
// what its labels would say had lockstep created it. A container is
// matched by ID and service, so one Docker Compose re-created since (a new
// ID) is adopted afresh, never mistaken for the old one.
func OverlayAdopted(o *compose.Observed, adopted []Adopted) {
	if len(adopted) == 0 {
		return
	}
	byID := make(map[string]Adopted, len(adopted))
	for _, a := range adopted {
		byID[a.ContainerID] = a
	}
	for i := range o.Containers {
		c := &o.Containers[i]
		a, ok := byID[c.ID]
		if !ok || c.Hash != "" || c.Service != a.Service {
			continue
		}
		c.Hash, c.SpecHash, c.Commit = a.Hash, a.SpecHash, a.Commit
	}
}

// AdoptionsAfter is the record of adopted containers once done was carried
// out on observed: the prior records whose containers are still there and
// were neither removed nor recreated, plus the containers done adopted,
// recorded with the desired service's hashes. The order is the observed
// containers' (service, number), so an unchanged record compares equal.
func AdoptionsAfter(desired *compose.Project, observed compose.Observed, prior []Adopted, done []Action, at time.Time) []Adopted {
	gone := map[string]bool{}
	fresh := map[string]Adopted{}
	for _, a := range done {
		switch a.Kind {
		case ActRemove, ActRecreate:
			gone[a.ContainerID] = true
		case ActAdopt:
			svc := desired.Service(a.Service)
			if a.ContainerID == "" || svc == nil {
				continue // a network or a volume: nothing to record
			}
			fresh[a.ContainerID] = Adopted{
				ContainerID: a.ContainerID, Service: a.Service, Number: a.Number,
				Hash: svc.Hash, SpecHash: svc.SpecHash, Commit: desired.Commit, At: at.UTC(),
			}
		}
	}
	old := map[string]Adopted{}
	for _, a := range prior {
		old[a.ContainerID] = a
	}
	out := []Adopted{}
	for _, c := range observed.Containers {
		if gone[c.ID] {
			continue
		}
		if a, ok := fresh[c.ID]; ok {
			out = append(out, a)
		} else if a, ok := old[c.ID]; ok {
			out = append(out, a)
		}
	}
	return out
}
