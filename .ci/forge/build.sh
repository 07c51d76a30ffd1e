#!/usr/bin/env bash
# Build (once per machine) the Gitea server the forge e2e test runs against
# (e2e/forge_test.go: commit statuses, push webhooks, git over HTTP), and
# print the binary's path:
#
#   bash .ci/forge/build.sh        # -> /var/cache/gitea-test/gitea-1.27.3
#
#   GITEA_VERSION    module version to build   (default 1.27.3)
#   GITEA_CACHE_DIR  where the binary is kept  (default /var/cache/gitea-test)
#
# Built from the Go module proxy alone (the only network access): no npm,
# no cgo. The web UI's JS/CSS are not built (the test uses the API and git
# only); templates and options are embedded (-tags bindata); SQLite is the
# pure-Go driver. A cached binary that runs is printed in ~0.1 s; a cold
# build takes ~9 minutes on 2 cores and ~2.5 GB of module and build cache.
# A flock on the cache dir makes concurrent first runs wait for one build.
set -euo pipefail

VERSION=${GITEA_VERSION:-1.27.3}
VERSION=${VERSION#v}
CACHE=${GITEA_CACHE_DIR:-/var/cache/gitea-test}
BIN="$CACHE/gitea-$VERSION"

say() { printf 'forge/build.sh: %s\n' "$*" >&2; }
runs() { [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; }

if runs; then
	echo "$BIN"
	exit 0
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
if runs; then # another run built it while this one waited
	echo "$BIN"
	exit 0
fi

WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT

# Gitea's go.mod names another module path and has replace directives, so
# `go install code.gitea.io/gitea@v...` refuses: download the source
# (outside any module, leaving lockstep's go.mod alone) and build a
# writable copy of it.
SRC=$(cd "$WORK" && GO111MODULE=on GOFLAGS=-mod=mod go mod download -json "code.gitea.io/gitea@v$VERSION" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
if [ -z "$SRC" ] || [ ! -d "$SRC" ]; then
	say "could not download code.gitea.io/gitea@v$VERSION through the module proxy"
	exit 1
fi
cp -r "$SRC" "$WORK/src"
chmod -R u+w "$WORK/src"
cd "$WORK/src"

export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=mod"
{
	say "building Gitea $VERSION in $WORK/src (cold: ~9 minutes)"
	# What `make generate-go` does for the embedded assets.
	for pkg in modules/options modules/public modules/templates modules/migration; do
		(cd "$pkg" && CC= GOOS= GOARCH= go generate -tags bindata -run generate-bindata .)
	done
	go build -tags bindata -ldflags "-s -w -X main.Version=$VERSION -X main.Tags=bindata" -o "$WORK/gitea" .
	"$WORK/gitea" --version
} >&2
mv -f "$WORK/gitea" "$BIN"
echo "$BIN"
