#!/usr/bin/env bash
# The daemon on SQLite with schedules of a few seconds (pull every second, re-score every
# 3 s, full score every 7 s) while files of 2,500 events arrive every second: reports the
# tick-to-start lag distribution from /metrics and checks that no two full scoring runs,
# planning runs or pulls ran at once (from job_runs).
#
#   bench/daemon_schedule.sh BIN [CUSTOMERS=100000] [SECONDS=600]
set -euo pipefail
BIN=$(realpath "$1"); CUSTOMERS=${2:-100000}; SECONDS_RUN=${3:-600}
DIR=$(mktemp -d /tmp/attune-schedule.XXXX)
cd "$DIR"
echo "workdir $DIR" >&2
"$BIN" simulate --customers "$CUSTOMERS" --out export >/dev/null
months=$(ls export/events-*.csv | sort)
# Held back for the inbox: the newest months, enough for a file every second of the run
# (the current month is partial, so two months can be too few).
need=$((SECONDS_RUN * 2500))
held=0; have=0
for f in $(echo "$months" | sort -r); do
  held=$((held + 1)); have=$((have + $(wc -l < "$f") - 1))
  [ "$have" -ge "$need" ] && break
done
held_back=$(echo "$months" | tail -n "$held")
DB="$DIR/attune.db"
"$BIN" --db "$DB" import customers export/customers.csv >/dev/null
for f in $(echo "$months" | head -n -"$held"); do "$BIN" --db "$DB" import events "$f" >/dev/null; done
"$BIN" --db "$DB" train --from-db >/dev/null 2>&1
# The held-back months, in files of 2,500 events, dropped one a second.
mkdir -p chunks inbox
for f in $held_back; do
  tail -n +2 "$f" | split -l 2500 -d -a 4 - "chunks/$(basename "$f" .csv)-"
done
header=$(head -1 $(echo "$held_back" | head -1))
PORT=$((20000 + RANDOM % 20000))
cat > attune.toml <<TOML
database_url = "$DB"
[schedule]
pull = "* * * * * *"
rescore = "*/3 * * * * *"
score = "*/7 * * * * *"
[pull]
inbox = "$DIR/inbox"
[http]
listen = "127.0.0.1:$PORT"
cookie_secure = false
TOML
"$BIN" --config attune.toml run > daemon.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for i in $(seq 1 60); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 1; done
start=$(date +%s)
# The write-ahead log's size every second: readers that always overlap keep SQLite's
# checkpoints from finishing, and a long log makes every read slower.
( while kill -0 $PID 2>/dev/null; do
    echo "$(date +%s) $(stat -c %s "$DB-wal" 2>/dev/null || echo 0)"; sleep 1
  done > wal_sizes.txt ) &
n=0
for c in $(ls chunks | sort); do
  now=$(date +%s); [ $((now - start)) -ge "$SECONDS_RUN" ] && break
  { echo "$header"; cat "chunks/$c"; } > "inbox/.$c.tmp" && mv "inbox/.$c.tmp" "inbox/$c.csv"
  n=$((n + 1))
  sleep 1
done
while [ $(( $(date +%s) - start )) -lt "$SECONDS_RUN" ]; do sleep 1; done
curl -sf "http://127.0.0.1:$PORT/metrics" > metrics.txt
kill -TERM $PID; wait $PID || true
trap - EXIT
echo "files dropped: $n in ${SECONDS_RUN} s; customers: $CUSTOMERS"
sort -k2 -n wal_sizes.txt | tail -1 | awk '{printf "largest write-ahead log: %.0f MB\n", $2 / 1e6}'
awk '{s += $2; n++} END {if (n) printf "mean write-ahead log: %.0f MB over %d samples\n", s / n / 1e6, n}' wal_sizes.txt
python3 - "$DB" metrics.txt <<'PY'
import sqlite3, sys, re, collections
db, metrics = sys.argv[1], sys.argv[2]
# Lag histogram from /metrics (cumulative buckets per kind).
b = collections.defaultdict(dict); cnt = {}
for line in open(metrics):
    m = re.match(r'attune_job_lag_seconds_bucket\{kind="(\w+)",le="([^"]+)"\} (\d+)', line)
    if m: b[m[1]][m[2]] = int(m[3])
    m = re.match(r'attune_job_lag_seconds_count\{kind="(\w+)"\} (\d+)', line)
    if m: cnt[m[1]] = int(m[2])
print("tick-to-start lag from /metrics (jobs started with lag <= bound, cumulative):")
for k in sorted(b):
    cells = "  ".join(f"<={le}s:{n}" for le, n in sorted(b[k].items(), key=lambda x: float(x[0]) if x[0] != '+Inf' else 1e18))
    print(f"  {k:8} {cells}")
c = sqlite3.connect(db)
print("lag per kind from job_runs (ms): n p50 p99 max")
for kind, in c.execute("SELECT DISTINCT kind FROM job_runs WHERE started_ms IS NOT NULL"):
    lags = sorted(r[0] for r in c.execute("SELECT MAX(0, started_ms - due_ms) FROM job_runs WHERE kind=? AND started_ms IS NOT NULL AND job_key LIKE '%@20%' AND job_key NOT LIKE '%#%'", (kind,)))
    if lags:
        print(f"  {kind:8} {len(lags):5} {lags[len(lags)//2]:6} {lags[min(len(lags)-1, int(len(lags)*0.99))]:6} {lags[-1]:6}")
print("executions by kind and status:")
for row in c.execute("SELECT kind, status, COUNT(*) FROM job_runs GROUP BY 1, 2 ORDER BY 1, 2"):
    print("  ", *row)
# Overlaps: two executions of the same exclusive work whose running times intersect.
ov = c.execute("""SELECT COUNT(*) FROM job_runs a JOIN job_runs b ON a.id < b.id
  AND (CASE WHEN a.kind IN ('score','rescore') THEN 'score' ELSE a.kind END) = (CASE WHEN b.kind IN ('score','rescore') THEN 'score' ELSE b.kind END)
  AND a.status = 'succeeded' AND b.status = 'succeeded'
  AND b.started_ms < a.finished_ms AND a.started_ms < b.finished_ms""").fetchone()[0]
print("overlapping executions of the same work:", ov)
ovr = c.execute("""SELECT COUNT(*) FROM scoring_runs a JOIN scoring_runs b ON a.id < b.id
  AND b.started_at < a.finished_at AND a.started_at < b.finished_at AND b.started_at > a.started_at""").fetchone()[0]
print("scoring runs started while another was running (second resolution):", ovr)
print("scoring runs:", c.execute("SELECT COUNT(*), SUM(scope='full'), SUM(finished_at IS NULL) FROM scoring_runs").fetchone(), "(all, full, unfinished)")
PY
grep -c "database is locked" daemon.log | sed 's/^/"database is locked" in the log: /' || true
grep -c "slow threshold" daemon.log | sed 's/^/slow connection acquires in the log: /' || true
