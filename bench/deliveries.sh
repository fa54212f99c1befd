#!/usr/bin/env bash
# Deliveries per second to a local webhook receiver (issue 20), beside the receiver's own
# ceiling measured in the same run.
#
#   bench/deliveries.sh [ATTUNE] [ATTUNE_BENCH] [NUDGES]
#
# 1. The ceiling: `attune-bench receiver` (a process of its own: verifies each
#    signature, counts) answers `attune-bench load`, which sends one signed body open-loop
#    far faster than any receiver can answer (100,000/s, its most, 32 connections, 10 s): the
#    requests per second the receiver finished is what it can take from a client that
#    does nothing else.
# 2. attune: NUDGES approved nudges (one per customer, every channel carried by one
#    webhook channel), then `attune deliveries send`, the whole command from start to exit
#    (claims, checks at send time, signing, POSTs, settling), timed with /usr/bin/time.
#    The receiver's own count says how many arrived and how fast.
set -euo pipefail
bin=$(realpath "${1:-target/release/attune}")
bench=$(realpath "${2:-target/release/attune-bench}")
n=${3:-100000}
mail_n=${MAIL_NUDGES:-20000}   # emails go slower (see BENCHMARKS.md): fewer by default
port=${PORT:-8099}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
secret="whsec_$(head -c 32 /dev/urandom | base64 -w0)"

"$bench" receiver --secret "$secret" --sample "$work/sample"
"$bench" receiver --listen "127.0.0.1:$port" --secret "$secret" --idle-secs 2 >"$work/ceiling.json" &
sleep 0.5
headers=()
while IFS= read -r h; do headers+=(--header "$h"); done <"$work/sample/headers.txt"
"$bench" --json load --url "http://127.0.0.1:$port/hook" --method POST --body "$work/sample/body.json" \
    "${headers[@]}" --rate 100000 --duration 10 --connections 32 >"$work/load.json"
wait
echo "receiver ceiling (attune-bench load, 32 connections): $(cat "$work/ceiling.json")"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("  load generator: %d requests, %d ok, %d errors, %.0f/s achieved" % (r["requests"], r["ok"], r["errors"], r["achieved_rate"]))' "$work/load.json"

cat >"$work/attune.toml" <<TOML
[playbook]
quiet_hours_start = "00:00"
quiet_hours_end = "00:00"
max_nudges = 1000
[delivery]
batch = 1000
[[channels]]
name = "hook"
type = "webhook"
carries = ["email", "sms", "phone", "post", "task"]
url = "http://127.0.0.1:$port/hook"
secret_env = ["BENCH_WEBHOOK_SECRET"]
concurrency = 32
TOML
"$bench" --db "$work/a.db" seed-nudges --count "$n" --customers "$n" --status approved >/dev/null
"$bench" receiver --listen "127.0.0.1:$port" --secret "$secret" --idle-secs 5 >"$work/received.json" &
sleep 0.5
BENCH_WEBHOOK_SECRET="$secret" /usr/bin/time -f "%e s wall, %U s user, %S s sys, %M KB peak" \
    "$bin" --db "$work/a.db" --config "$work/attune.toml" --json deliveries send >"$work/send.json" 2>"$work/send.time"
wait
echo "attune deliveries send, $n approved nudges: $(tail -1 "$work/send.time")"
python3 -c '
import json,sys
s=json.load(open(sys.argv[1])); r=json.load(open(sys.argv[2])); wall=float(sys.argv[3])
print("  counts after: %s" % s["counts"])
print("  receiver: %s" % r)
print("  whole command: %.0f nudges/s (%d sent in %.2f s)" % (s["counts"]["sent"]/wall, s["counts"]["sent"], wall))
' "$work/send.json" "$work/received.json" "$(tail -1 "$work/send.time" | cut -d' ' -f1)"

# 3. SMTP: the sink's ceiling with attune-bench smtp-load (16 sessions, 10 s), then the
#    MAIL_NUDGES (20,000) through an email channel (lettre's pool of 16 sessions) to the sink.
sport=$((port + 1))
"$bench" smtp-sink --listen "127.0.0.1:$sport" --idle-secs 2 >"$work/smtp_ceiling.json" &
sleep 0.5
"$bench" smtp-load --server "127.0.0.1:$sport" --connections 16 --seconds 10 >"$work/smtp_load.json"
wait
echo "SMTP sink ceiling (attune-bench smtp-load, 16 sessions): $(cat "$work/smtp_load.json")"
cat >"$work/mail.toml" <<TOML
[playbook]
quiet_hours_start = "00:00"
quiet_hours_end = "00:00"
max_nudges = 1000
[delivery]
batch = 1000
[[channels]]
name = "mail"
type = "email"
carries = ["email", "sms", "phone", "post", "task"]
smtp = "127.0.0.1:$sport"
from = "Acme care <care@acme.example>"
unsubscribe_url = "https://acme.example/unsubscribe/{customer}"
concurrency = 16
TOML
"$bench" --db "$work/m.db" seed-nudges --count "$mail_n" --customers "$mail_n" --status approved >/dev/null
"$bench" smtp-sink --listen "127.0.0.1:$sport" --idle-secs 2 >"$work/mail_received.json" &
sleep 0.5
/usr/bin/time -f "%e s wall, %U s user, %S s sys, %M KB peak" \
    "$bin" --db "$work/m.db" --config "$work/mail.toml" --json deliveries send >"$work/mail_send.json" 2>"$work/mail_send.time"
wait
echo "attune deliveries send by email, $mail_n approved nudges: $(tail -1 "$work/mail_send.time")"
python3 -c '
import json,sys
s=json.load(open(sys.argv[1])); r=json.load(open(sys.argv[2])); wall=float(sys.argv[3])
print("  counts after: %s" % s["counts"])
print("  sink: %s" % r)
print("  whole command: %.0f emails/s (%d sent in %.2f s)" % (s["counts"]["sent"]/wall, s["counts"]["sent"], wall))
' "$work/mail_send.json" "$work/mail_received.json" "$(tail -1 "$work/mail_send.time" | cut -d' ' -f1)"
