#!/usr/bin/env bash
# Install the Docker Compose CLI plugin whose config-hash lockstep reproduces
# (compose/composehash.go), for the oracle tests that run the real CLI:
#
#   bash .ci/compose.sh            # v5.6.0 into ~/.docker/cli-plugins/docker-compose
#
# COMPOSE_VERSION picks another v5.x release, PLUGIN_DIR another directory.
# A plugin already at the path that reports the version is kept as is, so
# only the first run on a machine builds (a few minutes on 2 cores); the Go
# module and build caches make a rebuild fast.
#
# The plugin is built from source with this machine's Go, fetched through
# the Go module proxy (the only network access): Compose publishes no
# binaries there, and v5.6.0 is the newest release whose dependencies the
# proxy serves (v5.7.x needs github.com/docker/secrets-engine modules it
# refuses).
set -euo pipefail

VERSION="${COMPOSE_VERSION:-v5.6.0}"
case "$VERSION" in
v5.*) MOD=github.com/docker/compose/v5 ;;
*)
	echo "compose.sh: $VERSION: only v5.x releases are built here" >&2
	exit 64
	;;
esac
PLUGIN_DIR="${PLUGIN_DIR:-${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins}"
PLUGIN="$PLUGIN_DIR/docker-compose"

say() { printf 'compose.sh: %s\n' "$*" >&2; }

# The plugin binary answers `version` on its own (standalone mode), so the
# check needs no docker CLI.
if [ -x "$PLUGIN" ] && [ "$("$PLUGIN" version --short 2>/dev/null || true)" = "${VERSION#v}" ]; then
	say "$PLUGIN is Docker Compose $VERSION already"
	exit 0
fi

command -v go >/dev/null 2>&1 || { say "go is not installed"; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/lockstep-compose.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"

# Compose's go directive decides the toolchain: a newer one than the local
# Go is itself fetched from the module proxy (the golang.org/toolchain module).
gomod="$(go mod download -json "$MOD@$VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
[ -n "$gomod" ] || { say "could not download $MOD@$VERSION from $(go env GOPROXY)"; exit 1; }
need_go="$(awk '$1 == "go" { print $2; exit }' "$gomod")"
have_go="$(go env GOVERSION | sed 's/^go//')"
toolchain=local
if [ -n "$need_go" ] && [ "$(printf '%s\n%s\n' "$need_go" "$have_go" | sort -V | head -n1)" != "$need_go" ]; then
	toolchain="go$need_go"
fi
say "building Docker Compose $VERSION with Go ${have_go} (toolchain $toolchain)"

# `go install $MOD/cmd@$VERSION` is refused because Compose's go.mod has an
# exclude block; a throwaway module that requires Compose, with the same
# excludes, selects the same dependency versions.
cat >go.mod <<EOF
module lockstep.invalid/composeplugin

go ${need_go:-1.24}

require $MOD $VERSION

exclude (
	github.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc
	github.com/pmezard/go-difflib v1.0.1-0.20181226105442-5d4384ee4fb2
)
EOF
export GOTOOLCHAIN="$toolchain" GOFLAGS=-mod=mod CGO_ENABLED=0
go get "$MOD/cmd@$VERSION"
go build -trimpath -ldflags "-s -w -X $MOD/internal.Version=$VERSION" -o docker-compose "$MOD/cmd"

got="$(./docker-compose version --short)"
[ "$got" = "${VERSION#v}" ] || { say "built binary reports $got, not $VERSION"; exit 1; }
mkdir -p "$PLUGIN_DIR"
install -m 0755 docker-compose "$PLUGIN.tmp.$$"
mv -f "$PLUGIN.tmp.$$" "$PLUGIN"
say "installed $PLUGIN ($VERSION)"
