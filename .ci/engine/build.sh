#!/usr/bin/env bash
# build.sh: build (once, cached) the modern Docker Engine's binaries and print
# the directory that holds them (dockerd, docker-proxy, containerd, the runc
# shim, runc, docker-init) on stdout; everything else goes to stderr. start.sh
# runs it, and so does .ci/swarm/start.sh, which starts three of the same
# engine.
#
#   bash build.sh                  # Docker 29 from the Go module proxy (cold: ~15 min on 2 cores)
#   MODERN_ENGINE=26 bash build.sh # Docker 26.1.5 from Debian trixie's .debs (~1 min)
#
# Environment: MODERN_ENGINE (29|26), MODERN_ENGINE_CACHE (default
# /var/cache/modern-engine), and the pinned versions MOBY_VERSION,
# CONTAINERD_VERSION, RUNC_VERSION below. Needs root.
set -euo pipefail

ENGINE=${MODERN_ENGINE:-29}
CACHE=${MODERN_ENGINE_CACHE:-/var/cache/modern-engine}
# Docker 29's daemon module (releases/versions.yaml in it: last 29.8.0, next
# 29.8.1), and the containerd and runc its Dockerfile pins.
MOBY_VERSION=${MOBY_VERSION:-v2.0.0-beta.24}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.3.5}
RUNC_VERSION=${RUNC_VERSION:-v1.5.1}
DOCKER_VERSION_LABEL=${DOCKER_VERSION_LABEL:-29.8.1-dev+moby-$MOBY_VERSION}

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
case "$ENGINE" in
29)
	BIN=$CACHE/29-$MOBY_VERSION-ctr$CONTAINERD_VERSION-runc$RUNC_VERSION/bin
	if [ ! -x "$BIN/dockerd" ] || [ ! -x "$BIN/docker-proxy" ] || [ ! -x "$BIN/containerd" ] ||
		[ ! -x "$BIN/containerd-shim-runc-v2" ] || [ ! -x "$BIN/runc" ]; then
		# runc needs libseccomp (cgo); tini-static serves as docker-init.
		apt_install gcc libc6-dev pkg-config libseccomp-dev tini
		command -v gcc >/dev/null || die "gcc missing"
		tmp=$(mktemp -d "$CACHE.build.XXXXXX" 2>/dev/null || { mkdir -p "$(dirname "$CACHE")"; mktemp -d "$CACHE.build.XXXXXX"; })
		trap 'rm -rf "$tmp"' EXIT
		t0=$(date +%s)
		log "building dockerd + docker-proxy (github.com/moby/moby/v2@$MOBY_VERSION); this takes minutes"
		GOBIN=$tmp CGO_ENABLED=1 go install -trimpath -tags "netgo osusergo nri_no_wasm" \
			-ldflags "-w -X github.com/moby/moby/v2/dockerversion.Version=$DOCKER_VERSION_LABEL -X github.com/moby/moby/v2/dockerversion.GitCommit=$MOBY_VERSION -X github.com/moby/moby/v2/dockerversion.BuildTime=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
			"github.com/moby/moby/v2/cmd/dockerd@$MOBY_VERSION" "github.com/moby/moby/v2/cmd/docker-proxy@$MOBY_VERSION" >&2
		log "building containerd (github.com/containerd/containerd/v2@$CONTAINERD_VERSION)"
		GOBIN=$tmp CGO_ENABLED=1 go install -trimpath -tags "no_btrfs urfave_cli_no_docs" \
			-ldflags "-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION -X github.com/containerd/containerd/v2/version.Revision=modproxy" \
			"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" >&2
		GOBIN=$tmp CGO_ENABLED=0 go install -trimpath -tags "no_grpc urfave_cli_no_docs" \
			-ldflags "-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
			"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" >&2
		log "building runc (github.com/opencontainers/runc@$RUNC_VERSION; tags seccomp, without libpathrs)"
		GOBIN=$tmp CGO_ENABLED=1 go install -trimpath -tags "seccomp urfave_cli_no_docs" \
			-ldflags "-X main.version=${RUNC_VERSION#v} -X main.gitCommit=modproxy" \
			"github.com/opencontainers/runc@$RUNC_VERSION" >&2
		ln -sf /usr/bin/tini-static "$tmp/docker-init"
		mkdir -p "$(dirname "$BIN")"
		rm -rf "$BIN" && mv "$tmp" "$BIN"
		trap - EXIT
		log "built in $(($(date +%s) - t0)) s into $BIN"
	fi
	;;
26)
	# Debian trixie's docker.io and containerd, fetched through apt with a
	# private source list and state (the system's sources and pins are not
	# touched) and unpacked with dpkg -x: nothing is installed. Their binaries
	# need libc6 >= 2.34 (bookworm has 2.36). runc is bookworm's (1.1.5):
	# trixie's needs libc6 >= 2.38.
	ROOT=$CACHE/trixie
	BIN=$ROOT/bin
	if [ ! -x "$BIN/dockerd" ] || [ ! -x "$BIN/containerd" ]; then
		apt_install runc tini
		A=$CACHE/apt
		mkdir -p "$A/parts" "$A/lists/partial" "$A/cache/archives/partial" "$A/debs"
		# The machine's own Debian mirror (the first URIs line of its sources), suite trixie.
		MIRROR=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
		[ -n "$MIRROR" ] || MIRROR=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
		[ -n "$MIRROR" ] || die "no Debian mirror found in the apt sources"
		printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$MIRROR" >"$A/parts/trixie.sources"
		O=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$A/parts" -o "Dir::State::Lists=$A/lists"
			-o "Dir::Cache=$A/cache" -o APT::Sandbox::User=root)
		log "fetching trixie's docker.io and containerd .debs (not installing them)"
		apt-get "${O[@]}" update -qq >&2
		(cd "$A/debs" && rm -f ./*.deb && apt-get "${O[@]}" download docker.io containerd >&2)
		rm -rf "$ROOT.new" && mkdir -p "$ROOT.new/bin"
		for f in "$A"/debs/*.deb; do dpkg -x "$f" "$ROOT.new/root"; done
		for b in usr/sbin/dockerd usr/sbin/docker-proxy usr/bin/containerd usr/bin/containerd-shim-runc-v2 usr/bin/ctr; do
			ln -s "$ROOT/root/$b" "$ROOT.new/bin/$(basename "$b")"
		done
		ln -s /usr/bin/tini-static "$ROOT.new/bin/docker-init"
		rm -rf "$ROOT" && mv "$ROOT.new" "$ROOT"
	fi
	;;
*) die "MODERN_ENGINE must be 29 or 26, not $ENGINE" ;;
esac
echo "$BIN"
