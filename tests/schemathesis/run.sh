#!/usr/bin/env bash
# Property-based test of the review desk's API against its own OpenAPI document, with
# schemathesis from PyPI in a virtual environment this script makes (and reuses).
#
# It starts its own server: the attune binary (ATTUNE_BIN, default target/debug/attune) on
# a temp SQLite database filled by `attune demo --once` and `attune-bench seed-nudges`
# (ATTUNE_BENCH_BIN, default target/debug/attune-bench),
# on a free port, with a reviewer's API token. Exits non-zero on any failed check.
#
#   bash tests/schemathesis/run.sh [extra schemathesis options]
#
# Every check runs but positive_data_acceptance: some valid-looking inputs are refused by
# rules a schema cannot state (a snooze must end after today, `from` not after `to`, a
# decided nudge stays decided), and those answers are checked by the API tests instead.
# CHECKS and EXCLUDE change that; MAX_EXAMPLES sets the examples per operation.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${ATTUNE_BIN:-$root/target/debug/attune}"
bench="${ATTUNE_BENCH_BIN:-$root/target/debug/attune-bench}"
unset ATTUNE_BIN ATTUNE_BENCH_BIN   # attune refuses ATTUNE_* variables that are not its settings
venv="${SCHEMATHESIS_VENV:-$here/.venv}"
checks="${CHECKS:-all}"
exclude="${EXCLUDE:-positive_data_acceptance}"
examples="${MAX_EXAMPLES:-60}"
out="${SCHEMATHESIS_ARTIFACTS:-$here/artifacts}"

if [ ! -x "$venv/bin/schemathesis" ]; then
    echo "== making $venv with $(tr '\n' ' ' < "$here/requirements.txt")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi
[ -x "$bin" ] || { echo "no attune binary at $bin; run cargo build first" >&2; exit 1; }
[ -x "$bench" ] || { echo "no attune-bench binary at $bench; run cargo build --workspace first" >&2; exit 1; }

work="$(mktemp -d)"
server=""
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server"
        wait "$server" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

db="$work/desk.db"
export ATTUNE_LOG_FILTER=warn
"$bin" --db "$db" demo --once --customers 200 > /dev/null
"$bench" --db "$db" seed-nudges --count 500 --customers 200 --proposed-share 0.8 > /dev/null
echo 'schemathesis-password' | "$bin" --db "$db" users add fuzzer --role reviewer --password-stdin > /dev/null
token="$("$bin" --db "$db" users token fuzzer 2>/dev/null)"

ATTUNE_HTTP_LISTEN=127.0.0.1:0 ATTUNE_LOG_FILTER=info,sqlx=warn ATTUNE_WORKER_SHUTDOWN_GRACE_SECS=3 \
    "$bin" --db "$db" --log-format json run 2> "$work/server.log" &
server=$!
url=""
for _ in $(seq 1 150); do
    url="$(grep -o '"url":"http://[^"]*"' "$work/server.log" | head -n 1 | cut -d'"' -f4 || true)"
    [ -n "$url" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.2
done
[ -n "$url" ] || { echo "the server did not say where it listens" >&2; cat "$work/server.log" >&2; exit 1; }
echo "== schemathesis against $url/v1/openapi.json (checks: $checks but $exclude; $examples examples per operation)"
mkdir -p "$out"
run_schemathesis() {
    # From the temp directory, so schemathesis's example cache goes with it.
    (cd "$work" && "$venv/bin/schemathesis" run "$url/v1/openapi.json" \
        --header "Authorization: Bearer $token" \
        --checks "$checks" \
        --exclude-checks "$exclude" \
        --max-examples "$examples" \
        --seed 42 \
        --workers 1 \
        --no-color \
        --report junit --report-dir "$out" \
        "$@")
}
# One worker: with several threads, CPython 3.11.7 (this machine's) trips over its own AST
# recursion counter inside schemathesis's generator ("AST constructor recursion depth
# mismatch", a CPython bug fixed in 3.11.8), which is no finding about the API.
status=0
run_schemathesis "$@" || status=$?
if grep -q '"level":"ERROR"' "$work/server.log"; then
    echo "the server logged errors during the run:" >&2
    grep '"level":"ERROR"' "$work/server.log" >&2 | head -n 20
    status=1
fi
exit "$status"
