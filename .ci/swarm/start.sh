#!/usr/bin/env bash
# start.sh: start a three-node Docker swarm (three managers) of the modern
# engine's build, each dockerd in a network namespace of its own, linked by a
# bridge, beside the machine's engine and without touching it. Idempotent:
# when the swarm is up already it only prints how to reach it. Anything less
# (a node missing, a swarm not formed) is stopped and started afresh.
#
# stdout is one line (everything else goes to stderr), what e2e/swarmtest reads:
#   LOCKSTEP_SWARM=hosts=unix:///run/lockstep-swarm1.sock,...;addrs=10.237.0.11,...;registry=10.237.0.1
# so:  export "$(bash .ci/swarm/start.sh)"     (quoted: the value holds ';')
#
# README.md beside it says how the network is laid out and why. Needs root.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

for c in ip nsenter curl; do command -v "$c" >/dev/null 2>&1 || die "$c not found (Debian: iproute2, util-linux, curl)"; done

# swarm_ready: every node answers, and node 1 sees three ready, reachable managers.
swarm_ready() {
	local n nodes
	for n in "${NODES[@]}"; do ping_node "$n" || return 1; done
	nodes=$(api 1 GET /nodes 2>/dev/null) || return 1
	[ "$(grep -o '"State":"ready"' <<<"$nodes" | wc -l)" = 3 ] &&
		[ "$(grep -o '"Reachability":"reachable"' <<<"$nodes" | wc -l)" = 3 ]
}

# A swarm test that stopped a node (swarmtest.StopNode) holds the swarm's
# lock exclusively until it started it again: a node down then is a test's,
# not a broken swarm to rebuild under it (which removed every test's
# stacks). Wait for it, as the tests themselves do (swarmtest.lockWait).
exec 9>>"${TMPDIR:-/tmp}/lockstep-swarm.lock"
flock -s -w 900 9 || die "waited 15m for the swarm's lock ${TMPDIR:-/tmp}/lockstep-swarm.lock: a test holds a node stopped"
if swarm_ready; then
	log "already running"
	echo "LOCKSTEP_SWARM=$(spec)"
	exit 0
fi
exec 9>&- # not inherited by the dockerds started below (it would hold the lock)

# The routing mesh and service VIPs need IPVS; where it is a module, load it
# (dockerd's own modprobe needs /lib/modules too). Without it they do not
# answer: see README.md.
modprobe ip_vs 2>/dev/null || true
[ -e /proc/net/ip_vs ] || log "this kernel has no IPVS: no routing mesh, no service VIPs (use endpoint mode dnsrr, ports in host mode)"
t0=$(date +%s%N)
ms() { echo $((($(date +%s%N) - t0) / 1000000)); }
if [ -e "/run/netns/$SWITCH" ] || [ -e "/run/netns/$(netns 1)" ]; then
	log "a swarm is here but not three ready managers: removing it and starting afresh"
fi
bash "$HERE/stop.sh" 2>/dev/null || true # whatever a half-started or killed run left
BIN=$(MODERN_ENGINE=$ENGINE bash "$HERE/../engine/build.sh")

# ---- network: a switch netns with a bridge; a veth from it to each node and
# one to the root netns. The bridge is not in the root netns, where the
# machine's Docker 20.10 sets FORWARD to DROP with br_netfilter on: frames
# between nodes would cross that FORWARD chain.
ip netns add "$SWITCH"
sw() { ip -n "$SWITCH" "$@"; }
sw link set lo up
sw link add br0 type bridge
sw link set br0 up
# No iptables for bridged frames in the switch (it has no rules anyway).
ip netns exec "$SWITCH" sh -c 'echo 0 >/proc/sys/net/bridge/bridge-nf-call-iptables' 2>/dev/null || true
ip link add "$HOSTIF" type veth peer name "${HOSTIF}s"
ip link set "${HOSTIF}s" netns "$SWITCH"
sw link set "${HOSTIF}s" master br0 up
ip addr add "$NET.1/24" dev "$HOSTIF"
ip link set "$HOSTIF" up
for n in "${NODES[@]}"; do
	ns=$(netns "$n")
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip link add "lsw$n" type veth peer name "lsw${n}n"
	ip link set "lsw$n" netns "$SWITCH"
	sw link set "lsw$n" master br0 up
	ip link set "lsw${n}n" netns "$ns"
	ip -n "$ns" link set "lsw${n}n" name eth0
	ip -n "$ns" addr add "$(addr "$n")/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via "$NET.1"
done

# ---- engines ---------------------------------------------------------------
mkdir -p "$CACHE"
for n in "${NODES[@]}"; do
	: >"$(nodelog "$n")"
	cat >"$(conf "$n")" <<EOF
{
  "hosts": ["unix://$(sock "$n")"],
  "data-root": "$(data "$n")",
  "exec-root": "$(execroot "$n")",
  "pidfile": "$(pidfile "$n")",
  "insecure-registries": ["$NET.0/24"],
  "shutdown-timeout": 5,
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "3"}
}
EOF
done
for n in "${NODES[@]}"; do start_dockerd "$n" "$BIN" & done
wait
for n in "${NODES[@]}"; do ping_node "$n" || die "node $n did not start"; done
log "engines up after $(ms) ms"

# ---- swarm: node 1 inits, 2 and 3 join as managers, one at a time (Raft adds
# one member at a time). Tasks heartbeat every 2 s (default 5 s), so a
# stopped node is seen down within seconds.
api 1 POST /swarm/init "{\"ListenAddr\":\"0.0.0.0:2377\",\"AdvertiseAddr\":\"$(addr 1)\",\"DefaultAddrPool\":[\"$ADDR_POOL\"],\"SubnetSize\":24,\"Spec\":{\"Dispatcher\":{\"HeartbeatPeriod\":2000000000}}}" >/dev/null ||
	die "swarm init on node 1 failed (log: $(nodelog 1))"
token=$(api 1 GET /swarm | grep -o '"Manager":"[^"]*"' | cut -d'"' -f4)
[ -n "$token" ] || die "no manager join token from node 1"
for n in "${NODES[@]:1}"; do
	api "$n" POST /swarm/join "{\"ListenAddr\":\"0.0.0.0:2377\",\"AdvertiseAddr\":\"$(addr "$n")\",\"RemoteAddrs\":[\"$(addr 1):2377\"],\"JoinToken\":\"$token\"}" >/dev/null ||
		die "node $n could not join the swarm (log: $(nodelog "$n"))"
done
for _ in $(seq 1 120); do
	swarm_ready && break
	sleep 0.25
done
swarm_ready || die "the swarm did not show three ready managers within 30 s"
log "swarm of three managers up after $(ms) ms"
echo "LOCKSTEP_SWARM=$(spec)"
