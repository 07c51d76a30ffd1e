#!/usr/bin/env bash
# exec.sh CMD...: run CMD in the modern engine's network namespace with
# DOCKER_HOST pointing at it, so a registry or git server CMD serves on
# 127.0.0.1 is the engine's 127.0.0.1 too, and ports it publishes are dialable.
# The namespace has only loopback and the engine's bridges: no outside network,
# so warm the Go module cache first (e.g. `go mod download`, or one
# `go test -run '^$' ./...` outside).
#   bash .ci/engine/exec.sh env CI=true go test -count=1 ./compose/... ./e2e/...
set -euo pipefail
NAME=${MODERN_ENGINE_NAME:-docker-modern}
[ $# -gt 0 ] || { echo "usage: exec.sh CMD [ARG...]" >&2; exit 2; }
[ -e "/run/netns/$NAME" ] || { echo "exec.sh: no netns $NAME; run start.sh first" >&2; exit 1; }
exec nsenter --net="/run/netns/$NAME" env DOCKER_HOST="unix:///run/$NAME.sock" "$@"
