#!/usr/bin/env bash
# HTTP ingest under load (BENCHMARKS.md, issue 3): RATE requests per second of 1,000 events
# each to `POST /v1/events`, open loop, on loopback.
#
#   bash bench/http_ingest.sh [SIM_DIR]        # default /tmp/sim1m
#   DATABASE=postgres://postgres@127.0.0.1:5432/attune_bench_http bash bench/http_ingest.sh
#
# SIM_DIR comes from `attune simulate --customers 1000000 --months 3 --out SIM_DIR
# --today 2026-11-24`. Once, this imports its customers into a base SQLite database and
# cuts BODIES request bodies of 1,000 distinct events (JSON arrays) from its October file.
# Each run then copies the base database (customers, no events; on PostgreSQL, DATABASE is
# made once with the customers and its activity tables are emptied), starts `attune run` with
# one `http` source on 127.0.0.1:PORT, waits for /readyz (the customer ids loaded), and runs
# `attune-bench load`. The JSON report goes to OUT/load.json, the server's log to
# OUT/server.log.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${ATTUNE_BIN:-$root/target/release/attune}"
bench="${ATTUNE_BENCH_BIN:-$root/target/release/attune-bench}"   # cargo build --release --workspace
unset ATTUNE_BIN ATTUNE_BENCH_BIN   # attune refuses ATTUNE_* variables that are not its settings
sim="${1:-/tmp/sim1m}"
rate="${RATE:-50}"
duration="${DURATION:-20}"
connections="${CONNECTIONS:-16}"
bodies="${BODIES:-1800}"
port="${PORT:-18282}"
out="${OUT:-/tmp/attune-bench-http}"
base="$out/base.db"
db="$out/run.db"
mkdir -p "$out"
export ATTUNE_LOG_FILTER="${ATTUNE_LOG_FILTER:-warn}"
export BENCH_INGEST_TOKEN="${BENCH_INGEST_TOKEN:-bench-ingest-token-0123456789}"

pg="${DATABASE:-}"
if [ -n "$pg" ]; then
    name="${pg##*/}"
    if ! psql "${pg%/*}/postgres" -Atc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
        echo "== importing the customers of $sim into $pg"
        psql -q "${pg%/*}/postgres" -c "CREATE DATABASE $name"
        "$bin" --db "$pg" import customers "$sim/customers.csv" > /dev/null
    fi
    psql -q "$pg" -c "TRUNCATE events, activity_daily, activity_changes_log, activity_changes, quarantine" -c "VACUUM ANALYZE"
elif [ ! -f "$base" ]; then
    echo "== importing the customers of $sim into $base"
    "$bin" --db "$base" import customers "$sim/customers.csv" > /dev/null
    sqlite3 "$base" "PRAGMA wal_checkpoint(TRUNCATE)" > /dev/null 2>&1 || true
fi
if [ ! -d "$out/bodies" ]; then
    echo "== cutting $bodies bodies of 1,000 events from $sim/events-2026-10.csv"
    python3 - "$sim/events-2026-10.csv" "$out/bodies" "$bodies" <<'EOF'
import csv, json, os, sys
src, dest, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(dest, exist_ok=True)
with open(src, newline="") as f:
    rows = csv.DictReader(f)
    for i in range(count):
        batch = []
        for row in rows:
            event = {k: v for k, v in row.items() if v not in (None, "")}
            if "value" in event:
                event["value"] = float(event["value"])
            batch.append(event)
            if len(batch) == 1000:
                break
        with open(os.path.join(dest, f"{i:05}.json"), "w") as out:
            json.dump(batch, out)
EOF
fi

cat > "$out/http.toml" <<EOF
[http]
listen = "127.0.0.1:$port"

[[sources]]
name = "app"
type = "http"
token_env = "BENCH_INGEST_TOKEN"
EOF

if [ -n "$pg" ]; then
    db="$pg"
else
    rm -f "$db" "$db-wal" "$db-shm"
    cp "$base" "$db"
fi
"$bin" --config "$out/http.toml" --db "$db" run 2> "$out/server.log" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
ready=""
for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$port/readyz" > /dev/null; then ready=1; break; fi
    sleep 0.2
done
[ -n "$ready" ] || { echo "the server did not get ready; see $out/server.log" >&2; exit 1; }

"$bench" --json load --url "http://127.0.0.1:$port/v1/events" --method POST --body "$out/bodies" \
    --header "Authorization: Bearer $BENCH_INGEST_TOKEN" --header "Content-Type: application/json" \
    --rate "$rate" --duration "$duration" --connections "$connections" --timeout 30 > "$out/load.json"
python3 - "$out/load.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps(r, indent=1)[:2000])
EOF
