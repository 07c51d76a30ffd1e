#!/usr/bin/env bash
# Start a throw-away Gitea on a free 127.0.0.1 port with a fresh temp dir,
# for the forge e2e test. Prints, one per line on stdout:
#
#   GITEA_URL=http://127.0.0.1:PORT  GITEA_TOKEN=...  GITEA_PID=...
#   GITEA_DIR=...  GITEA_USER=...  GITEA_PASSWORD=...
#
# Stop it with: kill "$GITEA_PID"; rm -rf "$GITEA_DIR" (SIGTERM shuts it
# down cleanly in well under a second).
#
#   GITEA_BIN            binary (default: $LOCKSTEP_GITEA, else build.sh's)
#   GITEA_ALLOWED_HOSTS  webhook targets Gitea may deliver to (default loopback)
#   GITEA_START_TIMEOUT  seconds to wait for the API (default 60)
#   TMPDIR               parent of the temp dir (default /tmp)
#
# The instance: sqlite (WAL) in the temp dir, no SSH, no registration, no
# cron, no Actions, offline; one admin user with an all-scope API token.
# HOME, GITEA_WORK_DIR and GITEA_CUSTOM point into the temp dir so Gitea
# touches nothing of the caller's (it otherwise writes ~/.ssh). As root it
# needs I_AM_BEING_UNSAFE_RUNNING_AS_ROOT.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${GITEA_BIN:-${LOCKSTEP_GITEA:-}}
[ -n "$BIN" ] || BIN=$(bash "$HERE/build.sh")
USER_NAME=${GITEA_USER:-lockstep-admin}
PASSWORD=${GITEA_PASSWORD:-lockstep-admin-pw-1}
ALLOWED=${GITEA_ALLOWED_HOSTS:-loopback}
TIMEOUT=${GITEA_START_TIMEOUT:-60}

DIR=$(mktemp -d "${TMPDIR:-/tmp}/gitea-test.XXXXXX")
mkdir -p "$DIR/data" "$DIR/repos" "$DIR/log" "$DIR/custom/conf" "$DIR/home"
STARTED=
# Anything that fails before the end leaves nothing behind.
trap '[ -n "$STARTED" ] || { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; rm -rf "$DIR"; }' EXIT

# free_port picks a random high port nothing answers on; the race with
# another process taking it is handled by retrying the start.
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 40000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || {
			echo "$p"
			return
		}
	done
	echo "forge/start.sh: no free port found" >&2
	return 1
}

write_ini() {
	local root=""
	[ "$(id -u)" = 0 ] && root="I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true"
	cat >"$DIR/custom/conf/app.ini" <<INI
APP_NAME = lockstep-e2e
RUN_MODE = prod
RUN_USER = $(id -un)
WORK_PATH = $DIR
$root

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = $PORT
DOMAIN = 127.0.0.1
ROOT_URL = http://127.0.0.1:$PORT/
APP_DATA_PATH = $DIR/data
DISABLE_SSH = true
START_SSH_SERVER = false
SSH_ROOT_PATH = $DIR/ssh
SSH_CREATE_AUTHORIZED_KEYS_FILE = false
SSH_CREATE_AUTHORIZED_PRINCIPALS_FILE = false
OFFLINE_MODE = true
LFS_START_SERVER = false

[database]
DB_TYPE = sqlite3
PATH = $DIR/data/gitea.db
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = $DIR/repos

[security]
INSTALL_LOCK = true
SECRET_KEY = $SECRET_KEY
INTERNAL_TOKEN = $INTERNAL_TOKEN
ALLOWED_HOST_LIST = $ALLOWED

[oauth2]
ENABLED = false

[service]
DISABLE_REGISTRATION = true
NO_REPLY_ADDRESS = noreply.localhost

[webhook]
DELIVER_TIMEOUT = 10

[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false

[session]
PROVIDER = memory

[mailer]
ENABLED = false

[cron]
ENABLED = false

[cron.update_checker]
ENABLED = false

[actions]
ENABLED = false

[log]
MODE = file
LEVEL = Info
ROOT_PATH = $DIR/log
INI
}

export GITEA_WORK_DIR="$DIR" GITEA_CUSTOM="$DIR/custom" HOME="$DIR/home"
# Gitea writes its own git config (under $DIR/data/home) with `git config
# --global`. With the tests' GIT_CONFIG_GLOBAL=/dev/null inherited, git
# writes through a lock file renamed over /dev/null: as root that replaces
# the machine's /dev/null with a regular file. Never pass it on.
unset GIT_CONFIG_GLOBAL GIT_CONFIG_SYSTEM GIT_CONFIG_NOSYSTEM
CONF="$DIR/custom/conf/app.ini"
SECRET_KEY=$("$BIN" generate secret SECRET_KEY)
INTERNAL_TOKEN=$("$BIN" generate secret INTERNAL_TOKEN)
PORT=$(free_port)
write_ini

"$BIN" migrate --config "$CONF" >"$DIR/log/setup.log" 2>&1 || {
	cat "$DIR/log/setup.log" >&2
	exit 1
}
OUT=$("$BIN" admin user create --config "$CONF" --username "$USER_NAME" \
	--password "$PASSWORD" --email "$USER_NAME@example.com" --admin \
	--must-change-password=false \
	--access-token --access-token-name lockstep-e2e --access-token-scopes all 2>>"$DIR/log/setup.log") || {
	cat "$DIR/log/setup.log" >&2
	exit 1
}
TOKEN=$(printf '%s\n' "$OUT" | sed -n 's/^Access token was successfully created\.\.\. //p')
if [ -z "$TOKEN" ]; then
	echo "forge/start.sh: gitea printed no token (see $DIR/log/setup.log)" >&2
	exit 1
fi

for attempt in 1 2 3; do
	(cd "$DIR" && exec setsid "$BIN" web --config "$CONF" >"$DIR/log/stdout.log" 2>&1 </dev/null) &
	PID=$!
	ok=
	for _ in $(seq $((TIMEOUT * 10))); do
		if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/api/v1/version" 2>/dev/null; then
			ok=1
			break
		fi
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	[ -n "$ok" ] && break
	kill "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
	if [ "$attempt" = 3 ]; then
		echo "forge/start.sh: gitea did not answer on /api/v1/version:" >&2
		tail -20 "$DIR/log/stdout.log" >&2
		exit 1
	fi
	PORT=$(free_port) # taken meanwhile: try another
	write_ini
done
STARTED=1

echo "GITEA_URL=http://127.0.0.1:$PORT"
echo "GITEA_TOKEN=$TOKEN"
echo "GITEA_PID=$PID"
echo "GITEA_DIR=$DIR"
echo "GITEA_USER=$USER_NAME"
echo "GITEA_PASSWORD=$PASSWORD"
