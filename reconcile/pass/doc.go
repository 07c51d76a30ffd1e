// Package pass is one pass of one environment, as an ordered list of small
// steps that `lockstep validate`, `plan`, `apply` and the agent all run:
//
//	resolve -> hold -> window -> materialize -> load -> policy   (validate stops here)
//	-> observe -> plan                                     (plan stops here)
//	-> secrets -> apply -> gate -> settle -> record         (apply, the agent)
//
// Each step is a function documented with what it reads and what it
// changes; the pass stops at the first step that fails. The outcome of a
// pass is decided here and nowhere else: a release that fails its health
// gate is quarantined and the last healthy revision applied again (settle),
// and every apply is recorded in the environment's state (reconcile/state),
// whoever ran it. A new release outside its deploy windows (or paused in
// its pin file) is held here too: the pass then plans and repairs what
// runs, and says why (Result.Held). The agent (reconcile/agent) only
// schedules passes.
//
// A review environment (of an [[environment_set]]) is refused at the
// policy step when it publishes a fixed host port, and leaves through
// Teardown, a pass of its own: lock -> observe -> plan the removal of the
// whole project -> apply -> record (ResultRemoved) -> forget its records.
//
// It reaches git only through Source (gitsource), compose files only
// through Loader (compose), and the engine only through Backend, the apply
// step's seam (reconcile.Host for one Docker engine). It never keeps state
// between passes: every pass re-derives the world from git, the engine and
// the state dir.
package pass
