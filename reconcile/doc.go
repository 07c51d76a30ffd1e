// Package reconcile decides and performs the changes that make a host match
// a revision: BuildPlan compares the desired project with what the engine
// has and returns plain, printable actions, each with a reason; Apply
// carries a plan out in a safe order (check preconditions and pull
// everything first, then networks and volumes, removals of orphans, then
// services in depends_on order honouring their conditions, then
// scale-down); the health gate watches what an apply changed. Host joins
// them into the single-host backend that reconcile/pass drives.
//
// It also owns the vocabulary every other package reads: why a pass ran
// (Trigger), how it ended (Result, PassRecord), what a failure means (Class,
// decided by Classify alone), what people hear about (EventKind, Event).
//
// It never reads git or compose files itself: it is handed a desired
// compose.Project and talks to the engine only through the Engine interface.
// It never removes a volume or a network, except in a TeardownPlan (the
// removal of a whole review environment, volumes only when its set says
// so), never recreates a network that exists, and never acts on a container that does not carry the project's
// label. It decides nothing about rollbacks or quarantine (reconcile/pass)
// and keeps no records (reconcile/state).
package reconcile
