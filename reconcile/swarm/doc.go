// Package swarm is the Docker Swarm backend of a pass: it plans, applies
// and health-gates a stack (compose.Stack) on the swarm the local engine
// belongs to, through Engine, as reconcile does a project on one host.
// Backend bundles it the way reconcile.Host bundles the host's.
//
// It owns what changes a stack and in which order: networks, then the
// configs and secrets (named by content, so a changed file is a new
// object), then services created, updated (only when their spec changed:
// by the lockstep.hash label, or by hand, which is drift), recreated
// (a mode change, which the swarm cannot update), removed; the health
// gate that follows each changed service's update and tasks until
// converged; and the prune of the objects no service uses once the stack
// converged. It never edits a config or secret in place, never removes a
// network or a volume, never re-resolves the image of a service it does
// not change, and applies only on the swarm's leader (CanApply).
package swarm
