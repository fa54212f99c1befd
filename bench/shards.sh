#!/usr/bin/env bash
# One scoring run shared by 1, 2 and 3 daemons on one PostgreSQL (issue 22), beside the
# same run by `attune score` alone (one process, no daemon), on the same database in the
# same run. A simulated export is imported, a model trained and the database vacuumed
# once; then for each count of daemons, a config whose only tick is a full scoring run 8 s
# ahead, the daemons started, and the run timed from its tick to its close (polled every
# 0.1 s), with the CPU seconds the daemons and the whole machine (PostgreSQL too) spent
# meanwhile. run_shards gives the shards' holders; /proc each daemon's peak memory.
#
#   bench/shards.sh BIN [CUSTOMERS=1000000] [SHARD_CUSTOMERS=100000] [PG=postgres://postgres@127.0.0.1:5432]
set -euo pipefail
BIN=$(realpath "$1"); CUSTOMERS=${2:-1000000}; SHARD=${3:-100000}
PG=${4:-postgres://postgres@127.0.0.1:5432}
DIR=$(mktemp -d /tmp/attune-shards.XXXX)
cd "$DIR"
echo "workdir $DIR" >&2
NAME="attune_shards_$$"
psql "$PG/postgres" -qc "CREATE DATABASE $NAME"
URL="$PG/$NAME"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $NAME WITH (FORCE)" || true
}
trap cleanup EXIT
q() { psql "$URL" -Atqc "$1"; }

t0=$(date +%s.%N)
"$BIN" simulate --customers "$CUSTOMERS" --months 3 --out export >/dev/null 2>&1
"$BIN" --db "$URL" import customers export/customers.csv >/dev/null 2>&1
for f in export/events-*.csv; do "$BIN" --db "$URL" import events "$f" >/dev/null 2>&1; done
"$BIN" --db "$URL" train --from-db >/dev/null 2>&1
# What autovacuum does after a bulk load, done now rather than during the first run.
psql "$URL" -qc "VACUUM ANALYZE"
echo "set-up (simulate, import, train, vacuum): $(echo "$(date +%s.%N) - $t0" | bc) s" >&2
# CPU seconds the whole machine has spent (every process: the daemons and PostgreSQL).
machine_cpu() { awk '/^cpu / {printf "%.2f", ($2 + $3 + $4 + $7 + $8) / 100}' /proc/stat; }
# CPU seconds process $1 has spent.
proc_cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
active=$(q "SELECT COUNT(*) FROM customers WHERE signup_date <= CURRENT_DATE AND (churned_on IS NULL OR churned_on > CURRENT_DATE)")

# The anchor: the same run by one process, the command a user runs by hand; once before
# the daemons' runs and once after.
cat > alone.toml <<TOML
[scoring]
shard_customers = $SHARD
TOML
alone() {
  local c0; c0=$(machine_cpu)
  /usr/bin/time -f "%e %M %U %S" -o alone.time "$BIN" --db "$URL" --config alone.toml score >/dev/null 2>alone.log
  local c1; c1=$(machine_cpu)
  read -r alone_s alone_kb alone_u alone_sys < alone.time
  local run; run=$(q "SELECT MAX(id) FROM scoring_runs")
  local shards; shards=$(q "SELECT COUNT(*) FROM run_shards WHERE run_id = $run")
  printf "%-30s %8.2f %7s %8s %12s %14s %10s %10s %s\n" "attune score (one process) $1" "$alone_s" "$shards" "-" \
    "$(echo "$alone_u + $alone_sys" | bc)" "$(echo "$c1 - $c0" | bc)" \
    "$(q "SELECT customers FROM scoring_runs WHERE id = $run")" "-" "$((alone_kb / 1024))"
}

printf "%s customers (%s active on the run's day), shards of about %s customers\n" "$CUSTOMERS" "$active" "$SHARD"
printf "%-30s %8s %7s %8s %12s %14s %10s %10s %s\n" "scoring run" "seconds" "shards" "daemons" "attune CPU s" "machine CPU s" "scored" "lag" "peak MB per process"
alone "(first)"

for k in 1 2 3; do
  at=$(( $(date +%s) + 8 ))
  cron=$(date -u -d "@$at" +"%-S %-M %-H %-d %-m *")
  ports=()
  for i in $(seq 1 "$k"); do
    port=$((20000 + RANDOM % 20000)); ports+=("$port")
    cat > "d$k-$i.toml" <<TOML
[schedule]
pull = "0 0 0 1 1 *"
rescore = "0 0 0 1 1 *"
score = "$cron"
[retrain]
schedule = "0 0 0 1 1 *"
[scoring]
shard_customers = $SHARD
[worker]
poll_interval_ms = 100
[http]
listen = "127.0.0.1:$port"
cookie_secure = false
TOML
    "$BIN" --db "$URL" --config "d$k-$i.toml" --log-format json run > "d$k-$i.log" 2>&1 &
    PIDS+=($!)
  done
  trigger="score@$(date -u -d "@$at" +%Y-%m-%dT%H:%M:%SZ)"
  while [ "$(date +%s)" -lt "$at" ]; do sleep 0.05; done
  c0=$(machine_cpu); p0=0
  for i in $(seq 1 "$k"); do p0=$(echo "$p0 + $(proc_cpu "${PIDS[$(( ${#PIDS[@]} - k + i - 1 ))]}")" | bc); done
  while :; do
    fin=$(q "SELECT finished_at FROM scoring_runs WHERE trigger = '$trigger' AND finished_at IS NOT NULL")
    [ -n "$fin" ] && break
    sleep 0.1
  done
  done_at=$(date +%s.%N)
  c1=$(machine_cpu); p1=0
  run=$(q "SELECT id FROM scoring_runs WHERE trigger = '$trigger'")
  started=$(q "SELECT started_at FROM scoring_runs WHERE id = $run")
  peaks=""
  for i in $(seq 1 "$k"); do
    pid=${PIDS[$(( ${#PIDS[@]} - k + i - 1 ))]}
    p1=$(echo "$p1 + $(proc_cpu "$pid")" | bc)
    peaks="$peaks $(awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status")"
  done
  holders=$(q "SELECT COUNT(DISTINCT holder) FROM run_shards WHERE run_id = $run")
  n_shards=$(q "SELECT COUNT(*) FROM run_shards WHERE run_id = $run")
  printf "%-30s %8.2f %7s %8s %12s %14s %10s %10s %s\n" "$k daemon(s), from the tick" \
    "$(echo "$done_at - $at" | bc)" "$n_shards" "$holders of $k" \
    "$(echo "$p1 - $p0" | bc)" "$(echo "$c1 - $c0" | bc)" \
    "$(q "SELECT customers FROM scoring_runs WHERE id = $run")" \
    "$((started - at)) s" "$peaks"
  dup=$(q "SELECT COUNT(*) - COUNT(DISTINCT customer_id) FROM scores WHERE run_id = $run")
  [ "$dup" = 0 ] || echo "  $dup customers scored twice!"
  for i in $(seq 1 "$k"); do
    pid=${PIDS[$(( ${#PIDS[@]} - k + i - 1 ))]}
    kill -9 "$pid" 2>/dev/null || true
  done
  sleep 1
  # The planning each run queues is not measured here: left queued, it would run beside
  # the next count's scoring run.
  q "DELETE FROM apalis.jobs WHERE job_type = 'attune.plan'" >/dev/null
  q "UPDATE job_runs SET status = 'interrupted', finished_at = EXTRACT(EPOCH FROM now())::bigint WHERE status IN ('queued', 'running')" >/dev/null
done
alone "(again)"
echo "attune CPU s: user and system seconds of attune's processes over the run; machine CPU s: of every process (attune and PostgreSQL) from /proc/stat; lag: the run's start behind its tick; peak MB: VmHWM of each daemon, or of attune score"
