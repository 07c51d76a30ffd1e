// Package reconcile decides and performs the changes that make a host match
// a revision: Plan compares the desired project with what the engine has and
// returns plain, printable actions, each with a reason; Apply carries a plan
// out in a safe order (pull everything first, then networks and volumes, then
// services in depends_on order).
//
// It never reads git or compose files itself: it is handed a desired
// compose.Project and talks to the engine only through the Engine interface.
package reconcile
