package pass

import (
	"context"
	"fmt"

	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/window"
)

// Held is a release that is pending and not applied, and why: paused in
// its pin file, or waiting for its deploy window.
type Held = reconcile.Hold

// heldHistory is how many of the newest history records are read to tell
// whether a hold was already told (EventHeld).
const heldHistory = 20

// window holds a new release back while its deploy windows are closed:
// every list that is set, the host config's (Environment.Windows) and the
// pin file's (Release.Windows), must have a window open now (Pipeline.Clock).
// A release is new when it is not what the last apply left running (the
// deployment record); nothing deployed yet counts as new. A held release
// is noted in the result (Held) and the pass goes on with the revision
// that runs, so drift is still repaired; with nothing running, the pass
// plans the pending release and applies nothing. A release paused in its
// pin file is noted as held too (the plan step keeps it from being
// applied). opts.ForceWindow applies the release anyway, said at warn.
// Validate checks the pinned release whatever the time. Reads the
// deployment record and the healthy revisions; changes only the pass's
// release and the result's Held.
func (r *run) window(ctx context.Context) error {
	switch {
	case r.res.Quarantined != nil, r.opts.Mode == ModeValidate:
		return nil
	case r.rel.Paused:
		r.res.Held = &Held{Kind: reconcile.HoldPaused, Commit: r.rel.Commit, Reason: "paused in its pin file " + r.rel.PinFile}
		return nil
	}
	now := r.p.now()
	if window.OpenAll(now, r.env.Windows, r.rel.Windows) {
		return nil
	}
	deployed, err := r.p.State.Deployed(r.env.Name, r.env.Project)
	if err != nil {
		// Not knowing what runs, the release is treated as new: held.
		r.log.Warn().Err(err).Msg("the record of the last deployment is unreadable: holding the release as new until the deploy window opens")
		deployed = nil
	}
	if deployed != nil && deployed.Commit == r.rel.Commit {
		return nil // nothing new: what runs is planned and repaired as always
	}
	held := &Held{Kind: reconcile.HoldWindow, Commit: r.rel.Commit, Reason: "waiting for the deploy window (no window opens within 8 days)"}
	if opens, ok := window.NextOpenAll(now, r.env.Windows, r.rel.Windows); ok {
		held.Opens = opens
		held.Reason = "waiting for the deploy window (" + window.Opens(opens) + ")"
	}
	if r.opts.ForceWindow {
		r.forced = true
		r.log.Warn().Str("windows", windowsText(r.env.Windows, r.rel.Windows)).
			Msg("deploy window closed: applying the release anyway (--force-window); recorded in the history")
		return nil
	}
	r.res.Held = held
	if deployed == nil {
		r.holdAll = true
		return nil
	}
	return r.targetRunning(ctx, deployed.Commit)
}

// targetRunning makes what runs the pass's release: its newest healthy
// record (compose files and vars as they ran; restore checks it on disk,
// or materializes it again), else the commit with the pin's settings.
// The result keeps the branch head the pin was read at.
func (r *run) targetRunning(ctx context.Context, commit string) error {
	head := r.res.Head
	healthy, err := r.p.State.Healthy(r.env.Name)
	if err != nil {
		r.log.Warn().Err(err).Msg("the record of healthy revisions is unreadable: taking the running commit from git")
	}
	var rel gitsource.Release
	found := false
	for _, hr := range healthy {
		if hr.Commit == commit {
			if rel, err = r.p.restore(ctx, r.env, hr, r.log); err != nil {
				return err
			}
			found, r.materialized = true, true
			break
		}
	}
	if !found {
		rel, err = r.p.Source.Resolve(ctx, gitsource.Want{Environment: r.env.Name, PinFile: r.env.PinFile, MinCommit: r.env.MinCommit, Commit: commit})
		if err != nil {
			return &reconcile.StepError{Step: reconcile.StepSource, Err: fmt.Errorf("the release of %s that runs (%s), planned while %s waits for its deploy window: %w",
				r.env.Name, reconcile.Short(commit), reconcile.Short(r.res.Held.Commit), err)}
		}
	}
	r.log.Debug().Str("pending", r.res.Held.Commit).Str("running", commit).Str("held", r.res.Held.Reason).
		Msg("new release held outside its deploy window: checking what runs")
	r.log = r.log.With().Str("running", commit).Logger()
	r.setRelease(rel)
	r.res.Head = head
	return nil
}

// toldHeld says whether the hold h was already told: the newest record
// of the history that is not a failure (or any holding it) holds the same
// commit for the same reason. The history, not memory, is what tells: an
// agent restarted, or `lockstep apply`, says it no twice.
func (r *run) toldHeld(h *Held) bool {
	recs, err := r.p.State.History(r.env.Name, heldHistory)
	if err != nil {
		return false
	}
	for i := len(recs) - 1; i >= 0; i-- {
		if h.Same(recs[i].Held) {
			return true
		}
		if recs[i].Result != reconcile.ResultFailed {
			return false
		}
	}
	return false
}

// heldEvent adds EventHeld for the pass's hold unless it was told or
// is a follower's.
func (r *run) heldEvent() {
	h := r.res.Held
	// A follower is told by its status and metric, not notified: every
	// manager but one would send it on every release.
	if h == nil || h.Kind == reconcile.HoldFollower || r.toldHeld(h) {
		return
	}
	r.event(reconcile.Event{Kind: reconcile.EventHeld, Commit: h.Commit, Previous: r.res.Previous, Reason: h.Reason})
}

func windowsText(lists ...[]window.Window) string {
	s := ""
	for _, ws := range lists {
		for _, w := range ws {
			if s != "" {
				s += "; "
			}
			s += w.String()
		}
	}
	return s
}
