#!/usr/bin/env bash
# The console stage: the admin console (/console) in a real browser against the real binary.
#
# Debian's chromium (installed here when missing) is driven by Playwright for Python, pinned
# in tests/console/requirements.txt and installed in a venv under target/
# (KEYLEDGER_CONSOLE_VENV to put it elsewhere). Playwright's own browser download is never
# used: the tests launch /usr/bin/chromium. The binary (target/debug/keyledger) starts on a
# free port with a temporary SQLite file; its bootstrap root key is read from its output.
# Screenshots land in target/console-report/ (CONSOLE_SHOTS=docs refreshes the README's).
# Anything missing fails the stage; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
here=$root/tests/console
venv=${KEYLEDGER_CONSOLE_VENV:-$root/target/console-venv}
work=$(mktemp -d)
server_pid=""

cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

log() { printf '\n== console: %s\n' "$*"; }

if [ ! -x /usr/bin/chromium ]; then
  log "installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
[ -x /usr/bin/chromium ] || { echo "FATAL: /usr/bin/chromium is missing" >&2; exit 1; }

stamp=$(sha256sum "$here/requirements.txt" | cut -c1-16)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
  log "installing $(grep -v '^#' "$here/requirements.txt" | tr '\n' ' ')"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
  echo "$stamp" > "$venv/.stamp"
fi

log "the vendored chart library is the one packed"
(cd "$root/api/console/vendor" && grep -E '^    [0-9a-f]{64}  ' README.md | sed 's/^    //' | sha256sum -c --quiet) \
  || { echo "FATAL: api/console/vendor/ differs from the hashes in its README.md" >&2; exit 1; }

log "building the binary"
cargo build -q -p api --bin keyledger
bin=$root/target/debug/keyledger

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export CONSOLE_BASE="http://127.0.0.1:$port"
log "starting keyledger on $CONSOLE_BASE"
(
  unset KEYLEDGER_EVENTSTORE_URL KEYLEDGER_NATS_URL
  KEYLEDGER_DATABASE_URL="sqlite://$work/console.db?mode=rwc" KEYLEDGER_ENVIRONMENT=live \
    KEYLEDGER_LISTEN=127.0.0.1:$port RUST_LOG=${RUST_LOG:-warn} exec "$bin" serve
) >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q '^listening on ' "$work/server.log" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "FATAL: the server died" >&2; exit 1; }
  sleep 0.1
done
grep -q '^listening on ' "$work/server.log" || { cat "$work/server.log" >&2; echo "FATAL: the server did not start" >&2; exit 1; }
CONSOLE_ROOT_KEY=$(sed -n 's/^bootstrap: root key[^:]*: //p' "$work/server.log")
[ -n "$CONSOLE_ROOT_KEY" ] || { echo "FATAL: no bootstrap root key in the server's output" >&2; exit 1; }
export CONSOLE_ROOT_KEY
# A relative CONSOLE_SHOTS is taken from the repository's root (pytest runs in here).
shots=${CONSOLE_SHOTS:-target/console-report}
case "$shots" in /*) ;; *) shots="$root/$shots" ;; esac
export CONSOLE_SHOTS="$shots"

log "pytest (Playwright, /usr/bin/chromium)"
cd "$here"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
