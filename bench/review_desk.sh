#!/usr/bin/env bash
# The review desk under load with a million nudges (BENCHMARKS.md, issue 6).
#
#   bash bench/review_desk.sh [DATABASE]          # a SQLite path (default) or postgres://...
#
# Fills DATABASE once with COUNT nudges (`attune-bench seed-nudges`) and a reviewer, starts
# `attune run` on 127.0.0.1:PORT, signs in for a session cookie, makes an API token, and
# runs oha (`cargo install oha`; open loop with latency correction, RATE requests per second
# for DURATION seconds) against the queue page and the API list: the first page, a page deep
# in the queue, and a filtered page. Prints one line per target; the JSON of each run goes
# to OUT. (oha replaced attune-bench's own load generator here once the two were measured
# side by side, bench/load_vs_oha.sh; attune-bench load stays for HTTP ingest, whose bodies
# must differ from request to request.)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${ATTUNE_BIN:-$root/target/release/attune}"
bench="${ATTUNE_BENCH_BIN:-$root/target/release/attune-bench}"   # cargo build --release --workspace
oha="${OHA:-$(command -v oha || echo oha)}"                         # cargo install oha
unset ATTUNE_BIN ATTUNE_BENCH_BIN   # attune refuses ATTUNE_* variables that are not its settings
db="${1:-/tmp/attune-bench-desk.db}"
count="${COUNT:-1000000}"
rate="${RATE:-100}"
duration="${DURATION:-30}"
connections="${CONNECTIONS:-16}"
port="${PORT:-18181}"
out="${OUT:-/tmp/attune-bench-desk}"
base="http://127.0.0.1:$port"
password="bench-password-1"
mkdir -p "$out"
export ATTUNE_LOG_FILTER="${ATTUNE_LOG_FILTER:-warn}"

if ! "$bin" --db "$db" users list 2>/dev/null | grep -q '^bench '; then
    echo "== seeding $count nudges into $db"
    "$bench" --db "$db" seed-nudges --count "$count" --customers 20000
    echo "$password" | "$bin" --db "$db" users add bench --role reviewer --password-stdin
    # PostgreSQL answers counts from its indexes alone once the visibility map is set.
    case "$db" in postgres://*|postgresql://*) psql -q "$db" -c "VACUUM (ANALYZE)" ;; esac
fi
token="$("$bin" --db "$db" users token bench 2>/dev/null)"

ATTUNE_HTTP_LISTEN="127.0.0.1:$port" ATTUNE_HTTP_COOKIE_SECURE=false "$bin" --db "$db" run 2> "$out/server.log" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -sf "$base/readyz" > /dev/null && break
    sleep 0.2
done

# Sign in as a browser would: the form's token and cookie, then the session cookie.
jar="$out/cookies.txt"
rm -f "$jar"
csrf="$(curl -s -c "$jar" "$base/login" | grep -o 'name="csrf" value="[^"]*"' | head -n 1 | cut -d'"' -f4)"
curl -s -b "$jar" -c "$jar" -o /dev/null --data-urlencode "csrf=$csrf" --data-urlencode "name=bench" \
    --data-urlencode "password=$password" --data-urlencode "next=/queue" "$base/login"
session="$(awk '$6 == "attune_session" {print $7}' "$jar")"
[ -n "$session" ] || { echo "signing in failed" >&2; exit 1; }

# CPU the server used, in milliseconds: a figure the other work on a shared machine does
# not inflate the way it inflates latency.
tick="$(getconf CLK_TCK)"
cpu_ms() { awk -v t="$tick" '{print ($14 + $15) * 1000 / t}' "/proc/$server/stat"; }

# A cursor in the middle of the queue: value at risk 300, the seed's median is near it.
deep="3e2~0"
run() {
    local name="$1" url="$2" header="$3"
    curl -sf -H "$header" "$url" > /dev/null   # warm the caches and the connection pool
    local cpu0 load
    cpu0="$(cpu_ms)"
    load="$(cut -d' ' -f1 /proc/loadavg)"
    "$oha" --no-tui --output-format json -o "$out/$name.json" -q "$rate" -z "${duration}s" \
        -c "$connections" --latency-correction -H "$header" "$url"
    python3 - "$name" "$out/$name.json" "$cpu0" "$(cpu_ms)" "$load" <<'PY'
import json, sys
r = json.load(open(sys.argv[2])); p = r["latencyPercentiles"]; s = r["summary"]
n = sum(r.get("statusCodeDistribution", {}).values())
# A request still in flight when the duration ends is oha stopping, not a server error.
errors = sum(v for k, v in r.get("errorDistribution", {}).items() if k != "aborted due to deadline")
errors += sum(v for k, v in r.get("statusCodeDistribution", {}).items() if not k.startswith("2"))
cpu = (float(sys.argv[4]) - float(sys.argv[3])) / max(n, 1)
ms = lambda x: x * 1000
print(f"{sys.argv[1]:<14} {n:>6} req {s['requestsPerSec']:6.1f}/s  p50 {ms(p['p50']):6.2f} ms  p90 {ms(p['p90']):6.2f}  p99 {ms(p['p99']):6.2f}  max {ms(s['slowest']):7.2f}  errors {errors}  server CPU {cpu:5.2f} ms/req  load {sys.argv[5]}")
PY
}
echo "== $rate requests/s for $duration s each, $connections connections, against $db"
run page-first "$base/queue" "Cookie: attune_session=$session"
run page-deep "$base/queue?cursor=$deep" "Cookie: attune_session=$session"
run page-filtered "$base/queue?rule=welcome&channel=email" "Cookie: attune_session=$session"
run api-first "$base/v1/nudges?limit=50" "Authorization: Bearer $token"
run api-deep "$base/v1/nudges?limit=50&cursor=$deep" "Authorization: Bearer $token"
run api-filtered "$base/v1/nudges?limit=50&rule=welcome&channel=email&risk_band=high" "Authorization: Bearer $token"
