#!/usr/bin/env bash
# /metrics as Prometheus reads it: the real daemon, after a demo cycle and a few seconds of
# schedules of a second or two, must answer /metrics with text `promtool check metrics`
# accepts, holding every family ops rely on.
#
#   bash tests/metrics/promtool.sh BIN
set -euo pipefail
BIN=$(realpath "$1")
if ! command -v promtool >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
DIR=$(mktemp -d /tmp/attune-metrics.XXXX)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$DIR"' EXIT
DB="$DIR/attune.db"
ATTUNE_LOG_FILTER=warn "$BIN" --db "$DB" demo --once --customers 300 >/dev/null
PORT=$((20000 + RANDOM % 20000))
ATTUNE_HTTP_LISTEN="127.0.0.1:$PORT" ATTUNE_HTTP_COOKIE_SECURE=false \
ATTUNE_SCHEDULE_PULL="* * * * * *" ATTUNE_SCHEDULE_RESCORE="*/2 * * * * *" \
ATTUNE_SCHEDULE_SCORE="*/3 * * * * *" ATTUNE_WORKER_SHUTDOWN_GRACE_SECS=3 \
    "$BIN" --db "$DB" run >"$DIR/daemon.log" 2>&1 &
PID=$!
for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.5; done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/login"
sleep 6
curl -sf "http://127.0.0.1:$PORT/metrics" >"$DIR/metrics.txt"
promtool check metrics <"$DIR/metrics.txt"
missing=0
for family in attune_jobs_total attune_job_duration_seconds attune_job_lag_seconds attune_ticks_total \
    attune_scoring_run_customers attune_scoring_run_duration_seconds \
    attune_http_requests_total attune_nudges attune_deliveries \
    attune_scoring_run_shards attune_scoring_shards_total; do
    if ! grep -q "^# TYPE ${family}" "$DIR/metrics.txt"; then
        echo "missing metric family: $family" >&2
        missing=1
    fi
done
if ! grep -q '^attune_job_lag_seconds_count{kind="pull"} [1-9]' "$DIR/metrics.txt"; then
    echo "no pull job started in 6 s of a schedule of one second" >&2
    missing=1
fi
kill -TERM "$PID"; wait "$PID" || true; PID=
[ "$missing" = 0 ] || { cat "$DIR/metrics.txt" >&2; tail -20 "$DIR/daemon.log" >&2; exit 1; }
echo "promtool accepts /metrics ($(grep -c '^# TYPE' "$DIR/metrics.txt") families)"
