#!/usr/bin/env bash
# stop.sh: stop the swarm start.sh started and remove all of it: the three
# dockerds and their containerds, what runs in their network namespaces, their
# data (/var/lib/lockstep-swarmN), exec roots, sockets and configs, the
# namespaces, the switch and the root netns' lsw0. The build cache
# (/var/cache/modern-engine) stays, and so do the logs
# (/var/log/lockstep-swarmN.log, for a failed run; the next start.sh
# truncates them). Never touches the machine's engine: it
# signals only pids that run in a node's netns, and unmounts only under the
# nodes' own directories.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

t0=$(date +%s%N)
# All three at once: each waits up to shutdown-timeout for its containers.
for n in "${NODES[@]}"; do stop_dockerd "$n" & done
wait

# under PATH: PATH lies in a node's data dir or exec root.
under() {
	local n
	for n in "${NODES[@]}"; do
		case "$1" in "$(data "$n")" | "$(data "$n")"/* | "$(execroot "$n")" | "$(execroot "$n")"/*) return 0 ;; esac
	done
	return 1
}
mounts() { awk '{print $5}' /proc/self/mountinfo | sort -r | while read -r mp; do
	mp=$(printf '%b' "$mp") # mountinfo escapes spaces as \040
	under "$mp" && echo "$mp"
done; }
for _ in 1 2 3; do
	left=$(mounts)
	[ -z "$left" ] && break
	while read -r mp; do umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true; done <<<"$left"
done
rc=0
if [ -n "$(mounts)" ]; then
	log "still mounted, so not deleting the nodes' directories:"
	mounts | sed 's/^/  /' >&2
	rc=1
fi

for n in "${NODES[@]}"; do
	[ "$rc" = 0 ] && rm -rf --one-file-system "$(data "$n")" "$(execroot "$n")"
	rm -f "$(sock "$n")" "$(pidfile "$n")" "$(conf "$n")"
	[ -e "/run/netns/$(netns "$n")" ] && ip netns del "$(netns "$n")"
done
ip link show "$HOSTIF" >/dev/null 2>&1 && ip link del "$HOSTIF"
[ -e "/run/netns/$SWITCH" ] && ip netns del "$SWITCH"
log "stopped and removed in $((($(date +%s%N) - t0) / 1000000)) ms"
exit "$rc"
