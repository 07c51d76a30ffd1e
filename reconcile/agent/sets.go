package agent

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/gitsource"
	"github.com/lockstep-gitops/lockstep/reconcile"
	"github.com/lockstep-gitops/lockstep/reconcile/envset"
	"github.com/lockstep-gitops/lockstep/reconcile/pass"
	"github.com/lockstep-gitops/lockstep/reconcile/state"
)

// PinLister lists the pin files a glob matches at the branch head, and
// the head: gitsource.Releases.ListPins.
type PinLister interface {
	ListPins(ctx context.Context, glob string) (head string, files []string, err error)
}

var _ PinLister = (*gitsource.Releases)(nil)

// setRunner is one [[environment_set]]'s share of the agent: it lists the
// set's pin files whenever the branch head moves, starts a loop (the
// same envLoop as a fixed environment's) for each new one, stops and
// tears down the ones whose file is gone, and tears down those whose ttl
// expired. The fields below the comment are guarded by Agent.mu.
type setRunner struct {
	spec envset.Set
	wake chan struct{} // capacity 1, like envLoop's

	// Guarded by Agent.mu.
	pending reconcile.Trigger // what the last nudge asked for (sync, webhook)
	refused []envset.Refused  // pin files not deployed, and why
	err     string            // why the pin files could not be listed, "" when they were
	ready   bool              // the first listing is done

	// Only the runner's goroutine touches these.
	lastHead string // head the pin files were last listed at
	retry    bool   // the last listing or a teardown failed: list again at the next tick
	scanned  bool   // the engine was asked which of the set's environments it runs
}

// nudge asks the runner to list the set's pin files now. Called with
// Agent.mu held.
func (s *setRunner) nudge(trigger reconcile.Trigger) {
	s.pending = stronger(s.pending, trigger)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// runSet drives set s until ctx is done. Its environments' loops run in
// wg, under contexts of their own derived from ctx.
func (a *Agent) runSet(ctx context.Context, s *setRunner, wg *sync.WaitGroup) {
	log := a.log.With().Str("set", s.spec.Name).Logger()
	a.syncSet(ctx, s, wg, reconcile.TriggerStart, log)
	a.mu.Lock()
	s.ready = true
	a.mu.Unlock()
	poll := a.clock.After(a.pollDelay())
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			a.mu.Lock()
			trigger := s.pending
			s.pending = ""
			a.mu.Unlock()
			a.syncSet(ctx, s, wg, cmp.Or(trigger, reconcile.TriggerSync), log)
		case <-poll:
			poll = a.clock.After(a.pollDelay())
			a.syncSet(ctx, s, wg, reconcile.TriggerPoll, log)
		}
	}
}

// syncSet brings the set's running environments in line with its pin
// files at the branch head: one ref listing when the head has not moved
// since the last listing (then only the ttl is checked).
func (a *Agent) syncSet(ctx context.Context, s *setRunner, wg *sync.WaitGroup, trigger reconcile.Trigger, log zerolog.Logger) {
	if ctx.Err() != nil {
		return
	}
	// A sync lists whatever the head says; a webhook or a poll checks
	// the head first, as an environment's loop does.
	if s.lastHead != "" && !s.retry && trigger != reconcile.TriggerSync {
		hctx, cancel := context.WithTimeout(ctx, a.opts.HeadTimeout)
		head, err := a.heads.Head(hctx)
		cancel()
		if err == nil && head == s.lastHead {
			log.Debug().Str("head", head).Msg("branch unchanged: the set's pin files are as they were")
			a.expireSet(ctx, s, trigger, log)
			return
		}
	}
	hctx, cancel := context.WithTimeout(ctx, a.opts.HeadTimeout)
	head, files, err := a.opts.Pins.ListPins(hctx, s.spec.Pins)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.retry = true
			log.Info().Err(err).Msg("cannot list the set's pin files; trying again at the next poll")
			a.mu.Lock()
			s.err = fmt.Sprintf("cannot list %s: %v", s.spec.Pins, err)
			a.mu.Unlock()
		}
		return
	}
	s.lastHead, s.retry = head, false
	a.converge(ctx, s, wg, files, trigger, log)
	a.expireSet(ctx, s, trigger, log)
}

// converge starts, stops and tears down the set's environments for the
// pin files found.
func (a *Agent) converge(ctx context.Context, s *setRunner, wg *sync.WaitGroup, files []string, trigger reconcile.Trigger, log zerolog.Logger) {
	members, refused := envset.Expand(s.spec, files, a.fixed)
	known, err := a.store.Members(s.spec.Name)
	if err != nil {
		// Starting or tearing down without knowing what runs could do
		// either twice.
		s.retry = true
		log.Error().Err(err).Msg("cannot read the set's environments from the state dir; trying again at the next poll")
		a.mu.Lock()
		s.err = err.Error()
		a.mu.Unlock()
		return
	}
	if !s.scanned {
		s.scanned = a.knownFromEngine(ctx, s, known, log)
	}
	members, held := a.heldByTTL(ctx, s, members, known, log)
	keep, capped := capSet(s.spec, members, known)
	refused = append(append(refused, held...), capped...)
	wanted := map[string]bool{}
	for _, m := range keep {
		wanted[m.Name] = true
	}
	inFiles := map[string]bool{}
	for _, f := range files {
		inFiles[f] = true
	}
	// Gone first: a teardown frees the room a new one takes.
	gone := map[string]bool{}
	for _, l := range a.setLoops(s.spec.Name) {
		if !wanted[l.env.Name] {
			a.stopLoop(l)
			a.teardown(ctx, s, l.env, removalReason(inFiles[l.env.PinFile]), false, trigger, log)
			gone[l.env.Name] = true
		}
	}
	for name, m := range known {
		if _, running := a.lookup(name); running || wanted[name] || gone[name] || (m.Expired != "" && inFiles[m.PinFile]) {
			continue
		}
		// Known from the state dir, no pin file any more (or no room):
		// what a restart after a kill -9 during a teardown finds.
		env := pass.SetEnvironment(s.spec, envset.Member{Name: name, PinFile: m.PinFile, Slug: envset.SlugOf(s.spec.Name, name)})
		env.Project = m.Project
		a.teardown(ctx, s, env, removalReason(inFiles[m.PinFile]), false, trigger, log)
	}
	for _, r := range held {
		// Torn down when its ttl expired; a kill -9 during that teardown
		// left something, which this removes (a no-op otherwise).
		if _, running := a.lookup(r.Name); !running {
			m := known[r.Name]
			env := pass.SetEnvironment(s.spec, envset.Member{Name: r.Name, PinFile: r.PinFile})
			env.Project = m.Project
			a.teardown(ctx, s, env, pass.ReasonTTLExpired, true, trigger, log)
		}
	}
	for _, m := range keep {
		if _, running := a.lookup(m.Name); running {
			continue
		}
		if r, ok := a.startSetEnv(ctx, wg, s, m, known); !ok {
			refused = append(refused, r)
		}
	}
	a.setRefused(s, refused, log)
}

// setRefused notes the set's pin files that do not run, for the status,
// and logs each when it starts not to run.
func (a *Agent) setRefused(s *setRunner, refused []envset.Refused, log zerolog.Logger) {
	a.mu.Lock()
	before := map[envset.Refused]bool{}
	for _, r := range s.refused {
		before[r] = true
	}
	s.refused, s.err = refused, ""
	a.mu.Unlock()
	for _, r := range refused {
		ev := log.Debug()
		if !before[r] {
			ev = log.Warn()
		}
		ev.Str("pin_file", r.PinFile).Str("env", r.Name).Msg(r.Reason)
	}
}

// knownFromEngine adds to known the set's environments that have
// containers on the engine but no record in the state dir (deleted, or
// from another host's state dir): they are torn down unless a pin file
// names them. It says whether the engine answered.
func (a *Agent) knownFromEngine(ctx context.Context, s *setRunner, known map[string]state.Member, log zerolog.Logger) bool {
	envs, err := a.pipeline.Backend.Environments(ctx)
	if err != nil {
		log.Info().Err(err).Msg("cannot list the environments on the engine; asking again at the next listing")
		return false
	}
	for env, project := range envs {
		if _, ok := known[env]; ok || !strings.HasPrefix(env, s.spec.Name+"-") || state.CheckEnvironment(env) != nil {
			continue
		}
		log.Info().Str("env", env).Str("project", project).Msg("found on the engine without a record in the state dir")
		known[env] = state.Member{Set: s.spec.Name, Project: project, Since: a.clock.Now().UTC()}
	}
	return true
}

func removalReason(fileThere bool) string {
	if fileThere {
		return "not deployed any more (see lockstep status)"
	}
	return pass.ReasonPinDeleted
}

// capSet keeps at most the set's max of members: those the state dir
// knows (running, or run before a restart) first, oldest first, then new
// ones by name. The others are refused.
func capSet(spec envset.Set, members []envset.Member, known map[string]state.Member) ([]envset.Member, []envset.Refused) {
	ordered := slices.Clone(members)
	slices.SortStableFunc(ordered, func(x, y envset.Member) int {
		kx, okx := known[x.Name]
		ky, oky := known[y.Name]
		switch {
		case okx && oky:
			return cmp.Or(kx.Since.Compare(ky.Since), cmp.Compare(x.Name, y.Name))
		case okx != oky:
			if okx {
				return -1
			}
			return 1
		}
		return cmp.Compare(x.Name, y.Name)
	})
	max := spec.Max
	if max <= 0 {
		max = envset.DefaultMax
	}
	if len(ordered) <= max {
		return ordered, nil
	}
	var refused []envset.Refused
	for _, m := range ordered[max:] {
		refused = append(refused, envset.Refused{Set: spec.Name, PinFile: m.PinFile, Name: m.Name,
			Reason: fmt.Sprintf("not deployed: set %s already runs its max of %d", spec.Name, max)})
	}
	return ordered[:max], refused
}

// setLoops are the loops of set running now.
func (a *Agent) setLoops(set string) []*envLoop {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*envLoop
	for _, l := range a.loops {
		if l.env.Set == set {
			out = append(out, l)
		}
	}
	return out
}

// startSetEnv records member as the set's (before its first pass, so a
// crash at any point after leaves it known) and starts its loop.
func (a *Agent) startSetEnv(ctx context.Context, wg *sync.WaitGroup, s *setRunner, m envset.Member, known map[string]state.Member) (envset.Refused, bool) {
	env := pass.SetEnvironment(s.spec, m)
	refuse := func(err error) (envset.Refused, bool) {
		return envset.Refused{Set: s.spec.Name, PinFile: m.PinFile, Name: m.Name, Reason: "not deployed: " + err.Error()}, false
	}
	if err := state.CheckEnvironment(env.Name); err != nil {
		return refuse(err)
	}
	if _, err := a.store.Quarantine(env.Name); err != nil {
		// Failing open would redeploy a release known to be broken.
		return refuse(fmt.Errorf("quarantined commits: %w", err))
	}
	rec := state.Member{Set: s.spec.Name, Project: env.Project, PinFile: env.PinFile, Since: a.clock.Now().UTC()}
	if k, ok := known[env.Name]; ok {
		rec.Since = k.Since
	}
	if err := a.store.SaveMember(env.Name, rec); err != nil {
		return refuse(fmt.Errorf("cannot record it in the state dir: %w", err))
	}
	lctx, cancel := context.WithCancel(ctx)
	l := &envLoop{env: env, wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	l.status = a.restoredStatus(env)
	a.mu.Lock()
	l.late = s.ready
	l.beat = a.clock.Now()
	a.loops = append(a.loops, l)
	a.byName[env.Name] = l
	a.mu.Unlock()
	a.log.Info().Str("set", s.spec.Name).Str("env", env.Name).Str("pin_file", env.PinFile).Str("url", env.URL).Msg("review environment started")
	wg.Go(func() {
		defer close(l.done)
		a.loop(lctx, l)
	})
	return envset.Refused{}, true
}

// stopLoop stops l's loop (a pass in flight finishes first, within the
// shutdown grace) and forgets it.
func (a *Agent) stopLoop(l *envLoop) {
	l.cancel()
	<-l.done
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.byName, l.env.Name)
	a.loops = slices.DeleteFunc(a.loops, func(x *envLoop) bool { return x == l })
}

// teardown runs the teardown pass of env and reports it like any pass.
// A failure leaves its membership recorded: the next tick tries again.
func (a *Agent) teardown(ctx context.Context, s *setRunner, env pass.Environment, reason string, keepMember bool, trigger reconcile.Trigger, log zerolog.Logger) {
	if ctx.Err() != nil {
		return
	}
	id := pass.NewID(a.clock.Now())
	res, err := a.pipeline.Teardown(ctx, env, reason, keepMember, pass.Options{Mode: pass.ModeApply, Trigger: trigger, ID: id, Log: &a.log})
	if err != nil {
		s.retry = true
	}
	if res.Record == nil {
		if err != nil {
			log.Warn().Err(err).Str("env", env.Name).Msg("teardown failed; trying again at the next poll")
		}
		return
	}
	logPass(log.With().Str("pass", id).Str("reason", reason).Logger(), env.Name, *res.Record, 0)
	if a.opts.OnPass != nil {
		a.opts.OnPass(*res.Record)
	}
	if a.opts.OnEvent != nil {
		for _, e := range res.Events {
			a.opts.OnEvent(e)
		}
	}
}

// heldByTTL takes out of members those whose ttl expired at the commit
// their pin still names; one whose pin names another commit now is
// released (and deployed again).
func (a *Agent) heldByTTL(ctx context.Context, s *setRunner, members []envset.Member, known map[string]state.Member, log zerolog.Logger) ([]envset.Member, []envset.Refused) {
	var out []envset.Member
	var held []envset.Refused
	for _, m := range members {
		k, ok := known[m.Name]
		if !ok || k.Expired == "" {
			out = append(out, m)
			continue
		}
		hctx, cancel := a.passContext(ctx)
		rel, err := a.pipeline.Source.Resolve(hctx, gitsource.Want{Environment: m.Name, PinFile: m.PinFile})
		cancel()
		if err != nil || rel.Commit == k.Expired {
			held = append(held, envset.Refused{Set: s.spec.Name, PinFile: m.PinFile, Name: m.Name, Reason: fmt.Sprintf(
				"not deployed: its ttl of %s expired at commit %s; pin another commit to deploy it again", s.spec.TTL, reconcile.Short(k.Expired))})
			continue
		}
		k.Expired = ""
		if err := a.store.SaveMember(m.Name, k); err != nil {
			log.Warn().Err(err).Str("env", m.Name).Msg("cannot release the environment from its ttl")
			continue
		}
		known[m.Name] = k
		log.Info().Str("env", m.Name).Str("commit", rel.Commit).Msg("the pin names another commit: the environment whose ttl expired is deployed again")
		out = append(out, m)
	}
	return out, held
}

// expireSet tears down the set's environments whose deployed commit has
// not changed for the set's ttl, and remembers the commit: it is not
// deployed again until the pin names another.
func (a *Agent) expireSet(ctx context.Context, s *setRunner, trigger reconcile.Trigger, log zerolog.Logger) {
	if s.spec.TTL <= 0 {
		return
	}
	now := a.clock.Now()
	for _, l := range a.setLoops(s.spec.Name) {
		d, err := a.store.Deployed(l.env.Name, l.env.Project)
		if err != nil || d == nil || now.Sub(d.At) < s.spec.TTL {
			continue
		}
		m, err := a.store.Member(l.env.Name)
		if err != nil || m == nil {
			continue
		}
		m.Expired = d.Commit
		if err := a.store.SaveMember(l.env.Name, *m); err != nil {
			log.Warn().Err(err).Str("env", l.env.Name).Msg("cannot record the expired ttl; not tearing down")
			continue
		}
		log.Info().Str("env", l.env.Name).Str("commit", d.Commit).Dur("ttl", s.spec.TTL).Time("deployed_at", d.At).Msg("ttl expired: tearing down")
		a.stopLoop(l)
		a.teardown(ctx, s, l.env, pass.ReasonTTLExpired, true, trigger, log)
		a.mu.Lock()
		s.refused = append(s.refused, envset.Refused{Set: s.spec.Name, PinFile: l.env.PinFile, Name: l.env.Name, Reason: fmt.Sprintf(
			"not deployed: its ttl of %s expired at commit %s; pin another commit to deploy it again", s.spec.TTL, reconcile.Short(d.Commit))})
		a.mu.Unlock()
	}
}
