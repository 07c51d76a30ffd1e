#!/usr/bin/env bash
# node.sh stop|start N: stop or start node N's dockerd (N is 1, 2 or 3), its
# namespace, network and data kept, as a host that goes down and comes back.
# A started node rejoins the swarm by itself, with its role; waiting until
# the swarm sees it down or ready is the caller's (e2e/swarmtest does).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

[ $# = 2 ] || die "usage: node.sh stop|start N"
n=$2
case "$n" in 1 | 2 | 3) ;; *) die "no node $n (1, 2 or 3)" ;; esac
[ -e "/run/netns/$(netns "$n")" ] && [ -f "$(conf "$n")" ] || die "no swarm node $n: run start.sh first"
case "$1" in
stop)
	stop_dockerd "$n"
	log "node $n stopped"
	;;
start)
	start_dockerd "$n" "$(MODERN_ENGINE=$ENGINE bash "$HERE/../engine/build.sh")"
	log "node $n answers on $(sock "$n")"
	;;
*) die "usage: node.sh stop|start N" ;;
esac
