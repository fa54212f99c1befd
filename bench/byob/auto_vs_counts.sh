#!/usr/bin/env bash
# attune's auto features beside scikit-learn on per-kind 30/90-day counts, on one event log
# attune did not generate, over the same observations and the same rolling-origin backtest.
# usage: bench/byob/auto_vs_counts.sh BIN retail|social   (data in $BYOB_DIR, default /tmp/byob)
# Prints one JSON line: both sides' pooled backtest AUC with 95% intervals (customers
# resampled), the rows, and attune's whole `train` command time and peak memory.
set -eu
BIN=$(realpath "$1"); SHAPE=$2
here=$(cd "$(dirname "$0")" && pwd)
data=${BYOB_DIR:-/tmp/byob}/$SHAPE
case $SHAPE in
  retail)
    [ -s "$data/events.csv" ] || python3 "$here/gen_retail.py" --customers 50000 --months 18 --seed 7 --today 2026-11-01 --out "$data"
    kinds='purchase = "payment"
product_view = "none"
add_to_cart = "none"
return = "none"
newsletter_click = "none"
support_ticket = "contact"
review_posted = "none"'
    churn_kind=purchase; days=90 ;;
  social)
    [ -s "$data/events.csv" ] || python3 "$here/gen_social.py" --customers 20000 --months 12 --seed 11 --today 2026-11-01 --out "$data"
    kinds='session_start = "login"
message_sent = "none"
like = "none"
post_created = "none"
comment = "none"
follow = "none"
thumbs_down = "none"
report_content = "none"
upgrade = "none"
downgrade = "none"'
    churn_kind=session_start; days=30 ;;
  *) echo "usage: $0 BIN retail|social" >&2; exit 2 ;;
esac
w=$(mktemp -d /tmp/attune-byob-XXXX)
cd "$w"
printf '[kinds]\n%s\n\n[churn]\ndefinition = "inactivity"\nkinds = ["%s"]\ndays = %s\n' "$kinds" "$churn_kind" "$days" > attune.toml
"$BIN" import customers "$data/customers.csv" >/dev/null 2>&1
"$BIN" import events "$data/events.csv" >/dev/null 2>&1
/usr/bin/time -f "%e %M" -o t "$BIN" --json train --as-of 2026-11-01 --no-promote --write-observations obs.csv > train.json 2>err || { tail -3 err; exit 1; }
python3 "$here/sklearn_counts.py" --events "$data/events.csv" --observations obs.csv --json --backtest "$days:3" > peer.json
python3 - train.json peer.json t "$SHAPE" <<'PY'
import json, sys
a = json.load(open(sys.argv[1])); p = json.load(open(sys.argv[2])); secs, kb = open(sys.argv[3]).read().split()
b = a["backtest"]["pooled"]
print(json.dumps({"log": sys.argv[4],
  "attune_auto": {"auc": round(b["auc"], 4), "auc_ci95": [round(b["auc_interval"]["low"], 4), round(b["auc_interval"]["high"], 4)],
                  "test_rows": b["test_rows"], "test_churners": b["test_churners"], "columns": a["features"],
                  "train_command_s": float(secs), "train_peak_mb": round(int(kb) / 1024)},
  "sklearn_counts": {"auc": p["auc"], "auc_ci95": p["auc_ci95"], "test_rows": p["test_rows"], "test_churners": p["test_positives"], "features": p["features"]}}))
PY
rm -rf "$w"
