#!/usr/bin/env bash
# The Postman stage: docs/keyledger.postman_collection.json against the real binary.
#
#   tests/postman/run.sh            check (CI): the collection is current, its seed flows pass
#   tests/postman/run.sh --update   rewrite the collection from the served document, then check
#
#   1. the binary (target/debug/keyledger, built if missing or stale) serves on a free port over a
#      fresh SQLite database, in an enterprise organisation made with `keyledger orgs create
#      --json` (its org id and root key read from that stdout, as tests/contract/run.sh does);
#   2. tests/postman/collection.js builds the collection from the live /openapi.json with the
#      pinned openapi-to-postmanv2 and merges the hand-kept "Seed flows" folder
#      (tests/postman/seed-flows.js); it must equal the committed file, else the stage fails
#      with the diff and the command that updates it (with --update, it is written instead);
#   3. newman (pinned) runs the folder "Seed flows" against the server, with baseUrl, orgId and
#      apiKey (the root key) as environment variables; any failed assertion fails the stage.
#      The generated folders are not run: their bodies are placeholders (see the README).
#
# node and npm must be on PATH (.ci/run installs them with apt); the npm packages are
# installed with `npm ci` from tests/postman/package-lock.json into tests/postman/node_modules
# (again when the lock file changes). KEYLEDGER_POSTMAN_REPORT names a directory for
# newman's JUnit report (default target/postman-report).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
here=$root/tests/postman
committed=$root/docs/keyledger.postman_collection.json
report=${KEYLEDGER_POSTMAN_REPORT:-$root/target/postman-report}

update=0
case "${1:-}" in
  "") ;;
  --update) update=1 ;;
  *) echo "usage: tests/postman/run.sh [--update]" >&2; exit 2 ;;
esac

log() { printf '\n== postman: %s\n' "$*"; }

for tool in node npm curl cargo; do
  command -v "$tool" >/dev/null 2>&1 || { echo "FATAL: postman: $tool is not installed" >&2; exit 1; }
done

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- tools (pinned in package-lock.json), reinstalled when the lock file changes
stamp=$(sha256sum "$here/package-lock.json" | cut -c1-16)
if [ ! -x "$here/node_modules/.bin/newman" ] || [ "$(cat "$here/node_modules/.stamp" 2>/dev/null)" != "$stamp" ]; then
  log "npm ci (node $(node --version), npm $(npm --version))"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$stamp" > "$here/node_modules/.stamp"
fi
echo "postman: openapi-to-postmanv2 $(node -p 'require("'"$here"'/node_modules/openapi-to-postmanv2/package.json").version')," \
  "newman $("$here/node_modules/.bin/newman" --version)"

# --- the binary
# Built when missing, and rebuilt when stale (a no-op otherwise): an old binary would serve
# an old document, and --update would write it.
log "building the binary (target/debug/keyledger)"
cargo build -q -p api --bin keyledger
bin=$root/target/debug/keyledger

free_port() { node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'; }

log "starting the server on a fresh SQLite database"
export KEYLEDGER_DATABASE_URL="sqlite://$work/postman.db?mode=rwc" KEYLEDGER_ENVIRONMENT=live
unset KEYLEDGER_EVENTSTORE_URL KEYLEDGER_NATS_URL
created=$(RUST_LOG=${RUST_LOG:-warn} "$bin" orgs create --name postman --plan enterprise --json)
org=$(node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0, "utf8")).org_id)' <<<"$created")
token=$(node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0, "utf8")).root_key)' <<<"$created")
[ -n "$org" ] && [ -n "$token" ] || { echo "FATAL: postman: no org id or root key from orgs create" >&2; exit 1; }
port=$(free_port)
base="http://127.0.0.1:$port"
KEYLEDGER_LISTEN=127.0.0.1:$port RUST_LOG=${RUST_LOG:-warn} "$bin" serve --no-bootstrap \
  >"$work/server.log" 2>&1 &
server_pid=$!
up=0
for _ in $(seq 1 100); do
  if curl -fsS "$base/healthz" >/dev/null 2>&1; then up=1; break; fi
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; echo "FATAL: postman: the server exited" >&2; exit 1; }
  sleep 0.2
done
[ "$up" = 1 ] || { cat "$work/server.log"; echo "FATAL: postman: the server did not answer on $base" >&2; exit 1; }
curl -fsS "$base/openapi.json" -o "$work/openapi.json"

# --- 1. the committed collection is what the served document and seed-flows.js make
log "the collection is current (generated from $base/openapi.json, merged with seed-flows.js)"
(cd "$here" && node collection.js build "$work/openapi.json" "$work/collection.json")
if [ "$update" = 1 ]; then
  mkdir -p "$(dirname "$committed")"
  cp "$work/collection.json" "$committed"
  echo "postman: wrote ${committed#"$root"/}"
elif ! (cd "$here" && node collection.js compare "$committed" "$work/collection.json"); then
  diff -u --label "committed ${committed#"$root"/}" --label "regenerated" \
    "$committed" "$work/collection.json" | head -n 400 || true
  echo >&2
  echo "postman: FAILED: docs/keyledger.postman_collection.json is not current (diff above, first 400 lines)." >&2
  echo "postman: update it with:  tests/postman/run.sh --update   (then commit docs/keyledger.postman_collection.json)" >&2
  exit 1
else
  echo "postman: ${committed#"$root"/} is current"
fi

# --- 2. the seed flows, with newman
log "newman: the folder \"Seed flows\" against $base"
mkdir -p "$report"
newman_status=0
"$here/node_modules/.bin/newman" run "$committed" \
  --folder "Seed flows" \
  --env-var "baseUrl=$base" --env-var "orgId=$org" --env-var "apiKey=$token" \
  --color off --disable-unicode --timeout-request 10000 \
  --reporters cli,junit,json --reporter-junit-export "$report/newman.xml" \
  --reporter-json-export "$work/newman.json" || newman_status=$?
cp "$work/server.log" "$report/server.log" 2>/dev/null || true
# One closing line, from newman's own counts (requests and assertions).
node -e '
  const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).run.stats;
  console.log(`postman: ${s.requests.total} requests, ${s.assertions.total} assertions`);
  console.log(`postman: ${s.assertions.total - s.assertions.failed} passed, ${s.assertions.failed} failed`);
' "$work/newman.json" 2>/dev/null || true
if [ "$newman_status" != 0 ]; then
  echo "postman: FAILED: a seed flow failed (newman exit $newman_status, above; server log: ${report#"$root"/}/server.log)" >&2
  exit 1
fi
echo "postman: the seed flows pass"
