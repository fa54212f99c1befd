#!/usr/bin/env python3
"""The peer a data team would write: per-kind event counts + scikit-learn LogisticRegression.

Evaluate on observations (written by attune, or by --make-observations below):

  python3 bench/byob/sklearn_counts.py --events /tmp/byob/retail/events.csv \
      --observations /tmp/byob/retail/obs.csv --json

OBS.csv has the header customer_id,as_of,label,side (as_of YYYY-MM-DD, label 0/1, side
train/test). For every observation and every event kind present in the events file the
script counts, with DuckDB, the events of that kind in the 30 and in the 90 days before
as_of (occurred_at >= as_of - N days and < as_of, both at 00:00 UTC). It fits
StandardScaler + LogisticRegression(C=1.0, max_iter=2000) on the train rows, scores the test
rows and prints one JSON object: pooled test ROC AUC with a 95% bootstrap interval clustered
by customer (customers resampled with replacement, 1000 times, fixed seed), AUC per as_of
day, row counts and the fit time.

With --backtest HORIZON:ORIGINS it follows attune's rolling origin instead (`attune train
--write-observations` writes the rows; the same horizon and [training] backtest_days): each
of the latest ORIGINS days is tested, on its test rows, by a model fitted on the train rows
of the days whose labels were known by then (day + HORIZON <= origin); predictions pooled.

Make observations for testing a generator:

  python3 bench/byob/sklearn_counts.py --make-observations \
      --events /tmp/byob/retail/events.csv --customers /tmp/byob/retail/customers.csv \
      --inactive-kind purchase --inactive-days 90 \
      --days 2025-11-01,2025-12-01,2026-01-01 --observations /tmp/byob/retail/obs.csv

A customer is observed on a day when they signed up on or before it and either had an
event of the inactive kind in the N days before it ([day - N, day)) or signed up in those N
days (signup_date >= day - N). label = 1 when they have no event of that kind in
[day, day + N). Customers go 75/25 to train/test by the first 8 hex digits of the MD5 of
their id (mod 100 < 75 is train), so a customer is on the same side for every day.

Needs numpy, pandas, scikit-learn and duckdb; runs itself inside $SKLEARN_VENV (default
/tmp/sklearn-baseline-venv, created with those packages if missing).
"""
import argparse
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import byob_common as bc  # noqa: E402

WINDOWS = (30, 90)
TS_FORMATS = "['%Y-%m-%dT%H:%M:%SZ', '%Y-%m-%dT%H:%M:%S.%fZ', '%Y-%m-%d %H:%M:%S', '%Y-%m-%d']"


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


def load_events(con, path):
    """events(customer_id, kind, ts) from a CSV (or .csv.gz) with attune's columns."""
    con.execute(f"""
        CREATE TABLE events AS
        SELECT customer_id, kind, strptime(occurred_at, {TS_FORMATS}) AS ts
        FROM read_csv({sql_str(path)}, header = true, all_varchar = true)""")


def side_of(customer_id):
    return "train" if int(hashlib.md5(customer_id.encode()).hexdigest()[:8], 16) % 100 < 75 else "test"


def make_observations(args):
    import duckdb
    import pandas as pd

    if not (args.customers and args.inactive_kind and args.inactive_days and args.days):
        sys.exit("--make-observations needs --customers, --inactive-kind, --inactive-days and --days")
    con = duckdb.connect()
    load_events(con, args.events)
    con.execute(f"""CREATE TABLE customers AS SELECT customer_id, CAST(signup_date AS DATE) AS signup
                    FROM read_csv({sql_str(args.customers)}, header = true, all_varchar = true)""")
    days = [d.strip() for d in args.days.split(",") if d.strip()]
    con.execute("CREATE TABLE days(day DATE)")
    con.executemany("INSERT INTO days VALUES (?)", [[d] for d in days])
    n = int(args.inactive_days)
    last = con.execute("SELECT max(ts) FROM events").fetchone()[0]
    obs = con.execute(f"""
        WITH k AS (SELECT customer_id, ts FROM events WHERE kind = {sql_str(args.inactive_kind)}),
        pairs AS (
            SELECT c.customer_id, c.signup, d.day FROM customers c, days d WHERE c.signup <= d.day),
        hits AS (
            SELECT p.customer_id, p.day,
                   count(k.ts) FILTER (WHERE k.ts < CAST(p.day AS TIMESTAMP)) AS before,
                   count(k.ts) FILTER (WHERE k.ts >= CAST(p.day AS TIMESTAMP)) AS after
            FROM pairs p JOIN k ON k.customer_id = p.customer_id
             AND k.ts >= CAST(p.day AS TIMESTAMP) - INTERVAL {n} DAY
             AND k.ts < CAST(p.day AS TIMESTAMP) + INTERVAL {n} DAY
            GROUP BY ALL)
        SELECT p.customer_id, p.day AS as_of, CASE WHEN coalesce(h.after, 0) = 0 THEN 1 ELSE 0 END AS label
        FROM pairs p LEFT JOIN hits h ON h.customer_id = p.customer_id AND h.day = p.day
        WHERE coalesce(h.before, 0) > 0 OR p.signup >= p.day - INTERVAL {n} DAY
        ORDER BY p.day, p.customer_id""").df()
    obs["as_of"] = pd.to_datetime(obs["as_of"]).dt.strftime("%Y-%m-%d")
    obs["side"] = [side_of(c) for c in obs["customer_id"]]
    obs.to_csv(args.observations, index=False, lineterminator="\n")
    late = [d for d in days if last is not None and pd.Timestamp(d) + pd.Timedelta(days=n) > last]
    summary = {"observations": args.observations, "rows": len(obs), "positives": int(obs["label"].sum()),
               "by_day": {d: {"rows": int(len(g)), "positives": int(g["label"].sum())}
                          for d, g in obs.groupby("as_of")},
               "train_customers": int(obs.loc[obs.side == "train", "customer_id"].nunique()),
               "test_customers": int(obs.loc[obs.side == "test", "customer_id"].nunique())}
    if late:
        summary["warning"] = f"labels of {late} look past the last event ({last}): they are censored"
    print(json.dumps(summary, indent=None if args.json else 2))


def weighted_auc(inv, ngroups, y, w):
    """ROC AUC of scores grouped into tie groups `inv` (ascending), rows weighted by w."""
    import numpy as np

    pos = np.bincount(inv, weights=w * y, minlength=ngroups)
    neg = np.bincount(inv, weights=w * (1 - y), minlength=ngroups)
    tp, tn = pos.sum(), neg.sum()
    if tp == 0 or tn == 0:
        return float("nan")
    below = np.cumsum(neg) - neg
    return float((pos * (below + 0.5 * neg)).sum() / (tp * tn))


def evaluate(args):
    import duckdb
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    con = duckdb.connect()
    load_events(con, args.events)
    obs = pd.read_csv(args.observations, dtype={"customer_id": str, "as_of": str, "side": str})
    missing = {"customer_id", "as_of", "label", "side"} - set(obs.columns)
    if missing:
        sys.exit(f"{args.observations}: missing columns {sorted(missing)}")
    con.register("obs_df", obs[["customer_id", "as_of"]].drop_duplicates())
    kinds = [r[0] for r in con.execute("SELECT DISTINCT kind FROM events ORDER BY kind").fetchall()]
    aggs, names = [], []
    for k in kinds:
        for n in WINDOWS:
            cond = f"e.kind = {sql_str(k)}"
            if n != max(WINDOWS):
                cond += f" AND e.ts >= o.t - INTERVAL {n} DAY"
            aggs.append(f"count(e.ts) FILTER (WHERE {cond})")
            names.append(f"{k}_{n}d")
    cols = ", ".join(f'{a} AS "f{i}"' for i, a in enumerate(aggs))
    feats = con.execute(f"""
        WITH o AS (SELECT customer_id, as_of, CAST(CAST(as_of AS DATE) AS TIMESTAMP) AS t FROM obs_df)
        SELECT o.customer_id, o.as_of, {cols}
        FROM o LEFT JOIN events e ON e.customer_id = o.customer_id
         AND e.ts >= o.t - INTERVAL {max(WINDOWS)} DAY AND e.ts < o.t
        GROUP BY o.customer_id, o.as_of""").df()
    feats.columns = ["customer_id", "as_of"] + names
    df = obs.merge(feats, on=["customer_id", "as_of"], how="left")
    feature_s = time.perf_counter() - t0

    x = df[names].fillna(0).to_numpy(dtype=float)
    y = df["label"].to_numpy(dtype=int)
    tr = (df["side"] == "train").to_numpy()
    te = (df["side"] == "test").to_numpy()
    t1 = time.perf_counter()
    design = "one model: every train row, every test row"
    if args.backtest:
        # attune's rolling origin: each of the latest K days is tested (test side) by a
        # model of the train side of the days whose labels were known by then
        # (day + horizon <= origin).
        horizon, k = (int(v) for v in args.backtest.split(":"))
        days = sorted(df["as_of"].unique())
        as_of = pd.to_datetime(df["as_of"]).to_numpy()
        p = np.full(len(df), np.nan)
        used = np.zeros(len(df), dtype=bool)
        origins = []
        for origin in days[-k:]:
            o = np.datetime64(origin)
            known = tr & (as_of < o) & (as_of + np.timedelta64(horizon, "D") <= o)
            test = te & (df["as_of"] == origin).to_numpy()
            if not known.any() or not test.any() or y[known].min() == y[known].max():
                continue
            m = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
            m.fit(x[known], y[known])
            p[test] = m.predict_proba(x[test])[:, 1]
            used |= test
            origins.append(origin)
        te = used
        p = p[te]
        model = m
        design = f"rolling origin over {origins} (horizon {horizon} days)"
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        model.fit(x[tr], y[tr])
        p = model.predict_proba(x[te])[:, 1]
    fit_s = time.perf_counter() - t1
    yt = y[te]
    auc = float(roc_auc_score(yt, p))

    # Customer-clustered bootstrap: resample test customers with replacement; a customer drawn
    # k times contributes all its rows k times.
    rng = np.random.default_rng(args.bootstrap_seed)
    cust_codes, _ = pd.factorize(df.loc[te, "customer_id"])
    ncust = int(cust_codes.max()) + 1
    _, inv = np.unique(p, return_inverse=True)
    ngroups = int(inv.max()) + 1
    yf = yt.astype(float)
    boots = []
    for _ in range(args.bootstrap):
        w = np.bincount(rng.integers(0, ncust, ncust), minlength=ncust)[cust_codes].astype(float)
        boots.append(weighted_auc(inv, ngroups, yf, w))
    lo, hi = np.nanpercentile(boots, [2.5, 97.5])

    by_day = {}
    for d, g in df.loc[te].assign(p=p).groupby("as_of"):
        a = roc_auc_score(g["label"], g["p"]) if g["label"].nunique() == 2 else None
        by_day[d] = {"auc": None if a is None else round(float(a), 4), "rows": int(len(g)),
                     "positives": int(g["label"].sum())}

    lr = model.named_steps["logisticregression"]
    out = {
        "peer": "per-kind counts (30d, 90d) + StandardScaler + LogisticRegression(C=1.0, max_iter=2000)",
        "design": design,
        "events": args.events, "observations": args.observations,
        "kinds": kinds, "features": len(names),
        "train_rows": int(tr.sum()), "train_positives": int(y[tr].sum()),
        "test_rows": int(te.sum()), "test_positives": int(yt.sum()),
        "test_customers": ncust,
        "auc": round(auc, 4), "auc_ci95": [round(float(lo), 4), round(float(hi), 4)],
        "bootstrap": {"resamples": args.bootstrap, "clustered_by": "customer_id", "seed": args.bootstrap_seed},
        "auc_by_as_of": by_day,
        "feature_seconds": round(feature_s, 3), "fit_seconds": round(fit_s, 4),
        "iterations": int(lr.n_iter_[0]),
    }
    print(json.dumps(out, indent=None if args.json else 2))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", required=True, help="events.csv or events.csv.gz with attune's columns")
    p.add_argument("--observations", required=True, help="OBS.csv to read (or to write with --make-observations)")
    p.add_argument("--json", action="store_true", help="one line of JSON (default: indented JSON)")
    p.add_argument("--bootstrap", type=int, default=1000, help="customer-clustered resamples")
    p.add_argument("--bootstrap-seed", type=int, default=20260101)
    p.add_argument("--backtest", metavar="HORIZON:ORIGINS",
                   help="attune's rolling-origin backtest: e.g. 90:3 tests each of the latest 3 days "
                        "with a model of the train rows of the days whose 90-day labels were known by then")
    g = p.add_argument_group("--make-observations")
    g.add_argument("--make-observations", action="store_true")
    g.add_argument("--customers", help="customers.csv (customer_id, signup_date, ...)")
    g.add_argument("--inactive-kind", help="the event kind whose absence defines churn, e.g. purchase")
    g.add_argument("--inactive-days", type=int, help="N: churned = no inactive-kind event for N days")
    g.add_argument("--days", help="comma-separated observation days YYYY-MM-DD")
    args = p.parse_args()
    bc.ensure_modules("numpy", "pandas", "sklearn", "duckdb")
    if args.make_observations:
        make_observations(args)
    else:
        evaluate(args)


if __name__ == "__main__":
    main()
