// Package agent is the daemon's loop: one goroutine per environment that
// decides when a pass runs (the first pass, the poll timer's cheap "did the
// branch move?" check, the drift timer, retries with backoff, webhook and
// CLI nudges, which coalesce) and runs it through reconcile/pass. For an
// [[environment_set]] it also decides which environments run: it lists
// the set's pin files when the branch moves, starts a loop for each new
// one (up to the set's max), and stops and tears down (a teardown pass)
// those whose file is gone or whose ttl expired (sets.go).
//
// It schedules; it never decides the outcome of a pass (rollback and
// quarantine are the pass's) and keeps no copy of an environment's state:
// what runs, the healthy revisions, the quarantine and the history are read
// from reconcile/state when asked. What it keeps in memory is its own:
// when it retries, what it waits for, and counters since it started.
package agent
