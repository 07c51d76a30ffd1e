# lib.sh: names and helpers the swarm scripts share (sourced, not run).
#
# Three dockerds of the modern engine's build (.ci/engine/build.sh), node N
# (1..3) in network namespace PREFIX N with socket /run/PREFIX N.sock, data
# /var/lib/PREFIX N, exec root /run/PREFIX N, log /var/log/PREFIX N.log and
# address NET.1N on its eth0. A "switch" namespace PREFIX-sw holds the bridge
# all of them plug into, and one more veth pair links the root namespace
# (NET.1, interface lsw0) to it, so the test process reaches every node and
# every node reaches the test's registry on NET.1.

PREFIX=${LOCKSTEP_SWARM_PREFIX:-lockstep-swarm}
NET=10.237.0 # a /24; nodes are NET.11, NET.12, NET.13, the root netns NET.1
NODES=(1 2 3)
SWITCH=$PREFIX-sw
HOSTIF=lsw0 # the root netns' end of its link to the switch
# The modern engine's build (.ci/engine/build.sh): Docker 29 unless
# LOCKSTEP_SWARM_ENGINE=26 (MODERN_ENGINE, for .ci/run's other engine, is not read).
ENGINE=${LOCKSTEP_SWARM_ENGINE:-29}
CACHE=${MODERN_ENGINE_CACHE:-/var/cache/modern-engine}
# Swarm overlay networks take their subnets from here, not from swarm's
# default 10.0.0.0/8, which holds NET.
ADDR_POOL=10.238.0.0/16

log() { printf 'swarm: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

[ "$(id -u)" = 0 ] || die "needs root"

sock() { echo "/run/$PREFIX$1.sock"; }
data() { echo "/var/lib/$PREFIX$1"; }
execroot() { echo "/run/$PREFIX$1"; }
pidfile() { echo "/run/$PREFIX$1.pid"; }
nodelog() { echo "/var/log/$PREFIX$1.log"; }
conf() { echo "$CACHE/$PREFIX$1.daemon.json"; }
netns() { echo "$PREFIX$1"; }
addr() { echo "$NET.1$1"; }

# api N METHOD PATH [JSON]: the Engine API of node N over its unix socket.
api() {
	local n=$1 method=$2 path=$3 body=${4:-}
	if [ -n "$body" ]; then
		curl -fsS --max-time 60 --unix-socket "$(sock "$n")" -X "$method" \
			-H 'Content-Type: application/json' -d "$body" "http://engine$path"
	else
		curl -fsS --max-time 60 --unix-socket "$(sock "$n")" -X "$method" "http://engine$path"
	fi
}

ping_node() { [ "$(curl -fsS --max-time 3 --unix-socket "$(sock "$1")" http://engine/_ping 2>/dev/null)" = OK ]; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# node_pid N: node N's dockerd pid, if it runs in node N's netns (a pid file
# a reboot left behind may name someone else's process).
node_pid() {
	local pid
	pid=$(cat "$(pidfile "$1")" 2>/dev/null || true)
	alive "$pid" || return 0
	[ -e "/run/netns/$(netns "$1")" ] || return 0
	[ "$(readlink "/proc/$pid/ns/net")" = "$(stat -L -c 'net:[%i]' "/run/netns/$(netns "$1")")" ] || return 0
	echo "$pid"
}

# start_dockerd N BIN: start node N's dockerd (its config written by
# write_conf) unless it runs, and wait until it answers.
start_dockerd() {
	local n=$1 bin=$2
	if [ -z "$(node_pid "$n")" ]; then
		rm -f "$(pidfile "$n")" "$(sock "$n")"
		# dockerd starts its own containerd (from BIN, first on PATH) under
		# the exec root; the shims, runc, docker-proxy and docker-init come
		# from BIN too.
		# Its own UTS namespace too, so the swarm's nodes have distinct
		# hostnames (PREFIX N), as placement constraints and node lists see them.
		setsid nsenter --net="/run/netns/$(netns "$n")" \
			unshare --uts sh -c 'hostname "$0" && exec "$@"' "$(netns "$n")" \
			env -i PATH="$bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME=/root \
			"$bin/dockerd" --config-file "$(conf "$n")" </dev/null >>"$(nodelog "$n")" 2>&1 &
	fi
	for _ in $(seq 1 120); do
		ping_node "$n" && return 0
		sleep 0.25
	done
	tail -n 30 "$(nodelog "$n")" >&2
	die "node $n: dockerd did not answer on $(sock "$n") within 30 s (log: $(nodelog "$n"))"
}

# stop_dockerd N: stop node N's dockerd (it stops its containers and its
# containerd), then end whatever is left in its netns.
stop_dockerd() {
	local n=$1 pid pids
	pid=$(node_pid "$n")
	if [ -n "$pid" ]; then
		kill -TERM "$pid"
		for _ in $(seq 1 120); do
			alive "$pid" || break
			sleep 0.25
		done
		alive "$pid" && {
			log "node $n: dockerd $pid still up after 30 s; SIGKILL"
			kill -KILL "$pid"
		}
	fi
	[ -e "/run/netns/$(netns "$n")" ] || return 0
	for sig in TERM KILL; do
		pids=$(ip netns pids "$(netns "$n")" 2>/dev/null | tr '\n' ' ')
		[ -z "${pids// /}" ] && break
		log "node $n: SIG$sig to what is left in its netns: $pids"
		# shellcheck disable=SC2086
		kill -"$sig" $pids 2>/dev/null
		sleep 1
	done
	rm -f "$(sock "$n")" "$(pidfile "$n")"
}

# spec: the LOCKSTEP_SWARM value e2e/swarmtest reads.
spec() {
	local hosts='' addrs='' n
	for n in "${NODES[@]}"; do
		hosts+="${hosts:+,}unix://$(sock "$n")"
		addrs+="${addrs:+,}$(addr "$n")"
	done
	echo "hosts=$hosts;addrs=$addrs;registry=$NET.1"
}
