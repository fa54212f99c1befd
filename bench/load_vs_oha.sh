#!/usr/bin/env bash
# attune-bench's open-loop load generator beside oha (a Rust HTTP load tester, `cargo
# install oha`), on the same server, URL, rate, duration and connections, one after the
# other, each twice in turn: do their latency percentiles agree, and what does each cost?
#
#   bash bench/load_vs_oha.sh [DATABASE]     # default /tmp/attune-load-vs-oha.db
#
# RATE (100/s), DURATION (20 s), CONNECTIONS (16), COUNT (nudges seeded once, 100,000);
# OHA (default: oha on the PATH); release binaries of attune and attune-bench.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${ATTUNE_BIN:-$root/target/release/attune}"
bench="${ATTUNE_BENCH_BIN:-$root/target/release/attune-bench}"
oha="${OHA:-oha}"
unset ATTUNE_BIN ATTUNE_BENCH_BIN   # attune refuses ATTUNE_* variables that are not its settings
db="${1:-/tmp/attune-load-vs-oha.db}"
rate="${RATE:-100}"
duration="${DURATION:-20}"
connections="${CONNECTIONS:-16}"
count="${COUNT:-100000}"
port="${PORT:-18383}"
out="${OUT:-/tmp/attune-load-vs-oha}"
mkdir -p "$out"
export ATTUNE_LOG_FILTER="${ATTUNE_LOG_FILTER:-warn}"

if ! "$bin" --db "$db" users list 2>/dev/null | grep -q '^bench '; then
    "$bench" --db "$db" seed-nudges --count "$count" --customers 20000 > /dev/null
    echo "bench-password-1" | "$bin" --db "$db" users add bench --role reviewer --password-stdin > /dev/null
fi
token="$("$bin" --db "$db" users token bench 2>/dev/null)"
ATTUNE_HTTP_LISTEN="127.0.0.1:$port" "$bin" --db "$db" run 2> "$out/server.log" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/readyz" > /dev/null && break
    sleep 0.2
done
url="http://127.0.0.1:$port/v1/nudges?limit=50"
header="Authorization: Bearer $token"
curl -sf -H "$header" "$url" > /dev/null

ours() {
    /usr/bin/time -f '%U %S' -o "$out/ours.time" "$bench" --json load --url "$url" --rate "$rate" \
        --duration "$duration" --connections "$connections" --header "$header" > "$out/ours.json"
    python3 - "$out/ours.json" "$out/ours.time" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); l = r["latency_ms"]
u, s = map(float, open(sys.argv[2]).read().split()[-2:])
print(f"attune-bench load  {r['requests']:>6} req {r['achieved_rate']:6.1f}/s  p50 {l['p50']:6.2f}  p90 {l['p90']:6.2f}  p99 {l['p99']:6.2f}  max {l['max']:7.2f} ms  errors {r['errors']}  its CPU {u + s:.2f} s")
PY
}
theirs() {
    /usr/bin/time -f '%U %S' -o "$out/oha.time" "$oha" --no-tui --output-format json -o "$out/oha.json" \
        -q "$rate" -z "${duration}s" -c "$connections" --latency-correction -H "$header" "$url"
    python3 - "$out/oha.json" "$out/oha.time" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); p = r["latencyPercentiles"]; s = r["summary"]
n = sum(r.get("statusCodeDistribution", {}).values())
# A request still in flight when the duration ends is oha stopping, not a server error.
errors = sum(v for k, v in r.get("errorDistribution", {}).items() if k != "aborted due to deadline")
errors += sum(v for k, v in r.get("statusCodeDistribution", {}).items() if not k.startswith("2"))
u, sy = map(float, open(sys.argv[2]).read().split()[-2:])
ms = lambda x: x * 1000
print(f"oha                {n:>6} req {s['requestsPerSec']:6.1f}/s  p50 {ms(p['p50']):6.2f}  p90 {ms(p['p90']):6.2f}  p99 {ms(p['p99']):6.2f}  max {ms(s['slowest']):7.2f} ms  errors {errors}  its CPU {u + sy:.2f} s")
PY
}
echo "== $url at $rate/s for $duration s, $connections connections, $db"
for round in 1 2; do
    ours
    theirs
done
