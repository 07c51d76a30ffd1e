#!/usr/bin/env bash
# start.sh: build (once, cached) and start a modern Docker Engine beside the
# machine's Docker 20.10, without touching that one. Idempotent: when the
# engine already answers, it only prints how to reach it.
#
# lockstep's copy of the modern-engine scripts (README.md beside it says how
# .ci/run uses them).
#
#   bash start.sh            # Docker 29 (API 1.56), daemon, containerd and runc
#                            # built from the Go module proxy (cold: ~15 min on 2 cores)
#   MODERN_ENGINE=26 bash start.sh
#                            # Docker 26.1.5 (API 1.45) from Debian trixie's .debs,
#                            # unpacked, never installed (~1 min)
#   MODERN_ENGINE_STORE=graphdriver bash start.sh
#                            # Docker 29 with the overlay2 graph driver instead of the
#                            # containerd image store (29's default on a fresh data root)
#
# stdout is only the two lines to use (everything else goes to stderr):
#   DOCKER_HOST=unix:///run/docker-modern.sock
#   MODERN_ENGINE_NETNS=/run/netns/docker-modern
#
# The engine runs in a network namespace of its own (bridges, iptables and
# published ports live there), because a dockerd that starts with iptables on
# deletes and rebuilds the DOCKER, DOCKER-ISOLATION-STAGE-* (and nat DOCKER)
# chains, which would wipe the host engine's published-port rules. So anything
# that talks to it over TCP (a test's registry on 127.0.0.1 that the engine pulls
# from, a published port the test dials) must run inside that namespace too:
#   bash .ci/engine/exec.sh go test ./e2e/...     # = nsenter --net=NETNS env DOCKER_HOST=... CMD
# The unix socket itself works from anywhere: DOCKER_HOST=... docker ps.
#
# Environment: MODERN_ENGINE (29|26), MODERN_ENGINE_NAME (default docker-modern:
# socket /run/NAME.sock, data /var/lib/NAME, exec root /run/NAME, netns NAME,
# log /var/log/NAME.log), MODERN_ENGINE_STORE (containerd|graphdriver),
# MODERN_ENGINE_CACHE (default /var/cache/modern-engine), and the pinned versions
# MOBY_VERSION, CONTAINERD_VERSION, RUNC_VERSION (pinned in build.sh). Needs root.
set -euo pipefail

ENGINE=${MODERN_ENGINE:-29}
NAME=${MODERN_ENGINE_NAME:-docker-modern}
STORE=${MODERN_ENGINE_STORE:-containerd}
CACHE=${MODERN_ENGINE_CACHE:-/var/cache/modern-engine}

SOCK=/run/$NAME.sock
DATA=/var/lib/$NAME
EXECROOT=/run/$NAME
PIDFILE=/run/$NAME.pid
NETNS=$NAME
LOG=/var/log/$NAME.log
CONF=$CACHE/$NAME.daemon.json

log() { printf 'modern-engine: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root"
command -v go >/dev/null 2>&1 || die "go not found"

apt_install() { # apt_install PKG...: install the Debian packages that are missing
	local missing=()
	for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
	[ ${#missing[@]} = 0 ] && return 0
	log "apt-get install ${missing[*]}"
	apt-get update -qq >&2 || true
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# A fresh Debian machine may lack these: ip (netns), nsenter, curl (the
# readiness ping on the unix socket).
command -v ip >/dev/null 2>&1 || apt_install iproute2
command -v nsenter >/dev/null 2>&1 || apt_install util-linux
command -v curl >/dev/null 2>&1 || apt_install curl
for c in ip nsenter curl; do command -v "$c" >/dev/null 2>&1 || die "$c not found"; done

ping_engine() {
	[ "$(curl -fsS --max-time 3 --unix-socket "$SOCK" http://engine/_ping 2>/dev/null)" = OK ]
}

print_use() {
	log "engine: $(DOCKER_HOST=unix://$SOCK docker version --format '{{.Server.Version}}, API {{.Server.APIVersion}} (min {{.Server.MinAPIVersion}})' 2>/dev/null || echo '?')"
	log "run tests inside its netns: $(dirname "$0")/exec.sh go test ./...   (or nsenter --net=/run/netns/$NETNS env DOCKER_HOST=unix://$SOCK ...)"
	echo "DOCKER_HOST=unix://$SOCK"
	echo "MODERN_ENGINE_NETNS=/run/netns/$NETNS"
}

if [ -S "$SOCK" ] && ping_engine; then
	log "already running ($SOCK)"
	print_use
	exit 0
fi

# ---- binaries -------------------------------------------------------------
# build.sh builds them once per machine and prints where they are.
BIN=$(bash "$(dirname "$0")/build.sh")
"$BIN/dockerd" --version >&2

# ---- network namespace ----------------------------------------------------
if [ ! -e "/run/netns/$NETNS" ]; then
	ip netns add "$NETNS"
fi
nsenter --net="/run/netns/$NETNS" ip link set lo up

# ---- stale state from a daemon that died -----------------------------------
if [ -f "$PIDFILE" ]; then
	pid=$(cat "$PIDFILE" 2>/dev/null || true)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		log "dockerd $pid is alive but not answering yet; waiting"
	else
		rm -f "$PIDFILE" "$SOCK"
	fi
fi

# ---- config (its own file: /etc/docker/daemon.json is the host engine's) ---
mkdir -p "$CACHE"
features=''
if [ "$ENGINE" = 29 ] && [ "$STORE" = graphdriver ]; then
	features=', "features": {"containerd-snapshotter": false}, "storage-driver": "overlay2"'
fi
cat >"$CONF" <<EOF
{
  "hosts": ["unix://$SOCK"],
  "data-root": "$DATA",
  "exec-root": "$EXECROOT",
  "pidfile": "$PIDFILE",
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "3"}$features
}
EOF

# ---- start ---------------------------------------------------------------
if ! { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }; then
	[ "$ENGINE" = 26 ] && STORE=graphdriver # 26 has no containerd image store by default
	log "starting dockerd $ENGINE (image store: $STORE) in netns $NETNS; log $LOG"
	# dockerd starts its own containerd (from BIN, first on PATH) under EXECROOT;
	# the shims, runc, docker-proxy and docker-init come from BIN too.
	setsid nsenter --net="/run/netns/$NETNS" \
		env -i PATH="$BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME=/root \
		"$BIN/dockerd" --config-file "$CONF" </dev/null >>"$LOG" 2>&1 &
fi
for _ in $(seq 1 120); do
	ping_engine && break
	sleep 0.5
done
if ! ping_engine; then
	tail -n 30 "$LOG" >&2
	die "dockerd did not answer on $SOCK within 60 s (log: $LOG)"
fi
print_use
