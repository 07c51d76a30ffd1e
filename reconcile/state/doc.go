// Package state owns what lockstep records per environment under
// <state_dir>/environments/<env>/: the last deployment (deployed.json), the
// healthy revisions a rollback goes back to (healthy.json), the commits held
// back (quarantine.json), the containers taken over from Docker Compose
// without a restart (adopted.json, standing in for the lockstep.hash label
// they lack), the bounded history of passes (history.json), the set a
// review environment belongs to and since when (member.json), and
// the apply lock (apply.lock) that lets one pass at a time change the host
// and those records, whichever process runs it.
//
// It is the one owner of those records. The CLI and the agent read them
// from here when they need them and keep no copies, so both see the same
// quarantine and the same rollback targets. Every write is atomic (a temp
// file, fsync, rename, fsync of the directory): a kill -9 at any instant
// leaves the old record or the new one, never a torn file.
//
// It never decides what a record means for a deployment (that is the pass's,
// in reconcile/pass) and never talks to git or the engine.
package state
