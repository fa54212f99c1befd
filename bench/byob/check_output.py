#!/usr/bin/env python3
"""Checks that a generated directory is what attune's importer expects.

  python3 bench/byob/check_output.py /tmp/byob/retail [--today 2026-11-01]

Standard library only (reads events.csv or events.csv.gz as a stream). Checks:
  * customers.csv has customer_id,signup_date,plan,monthly_charge first; ids, emails and
    crm_numbers are unique; signup_date <= today; monthly_charge >= 0;
  * events.csv has customer_id,kind,occurred_at,value first; every line ends in '\\n' only;
    occurred_at is RFC 3339 UTC, non-decreasing, before 00:00 UTC of --today (default: the
    today in truth.json) and not before the customer's signup_date; every customer exists;
  * source_event_id, when present, is unique; purchases and returns have value > 0, reviews
    1-5, other kinds no value;
  * the per-kind counts agree with truth.json.
Prints a one-line summary, exits 1 on the first problems (up to 10 listed).
"""
import csv
import datetime as dt
import gzip
import io
import json
import os
import re
import sys
from collections import Counter

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
VALUED = {"purchase": "pos", "return": "pos", "review_posted": "stars", "upgrade": "pos"}


def main():
    d = sys.argv[1]
    truth = json.load(open(os.path.join(d, "truth.json")))
    today = truth["today"]
    if "--today" in sys.argv:
        today = sys.argv[sys.argv.index("--today") + 1]
    cutoff = today + "T00:00:00Z"
    problems = []

    def bad(msg):
        problems.append(msg)
        if len(problems) >= 10:
            report(problems)

    signup = {}
    emails, crms = set(), set()
    raw = open(os.path.join(d, "customers.csv"), "rb").read()
    if b"\r" in raw:
        bad("customers.csv has \\r")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    head = rows[0]
    if head[:4] != ["customer_id", "signup_date", "plan", "monthly_charge"]:
        bad(f"customers.csv header {head}")
    ix = {c: i for i, c in enumerate(head)}
    for r in rows[1:]:
        cid = r[0]
        if cid in signup:
            bad(f"duplicate customer {cid}")
        signup[cid] = r[1]
        dt.date.fromisoformat(r[1])
        if r[1] > today:
            bad(f"{cid} signup {r[1]} after today")
        if float(r[3]) < 0:
            bad(f"{cid} negative monthly_charge")
        for col, seen in (("email", emails), ("crm_number", crms)):
            if col in ix:
                v = r[ix[col]]
                if v in seen:
                    bad(f"duplicate {col} {v}")
                seen.add(v)

    path = os.path.join(d, truth.get("events_file", "events.csv"))
    f = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
    text = io.TextIOWrapper(f, encoding="utf-8", newline="")
    reader = csv.reader(text)
    head = next(reader)
    if head[:4] != ["customer_id", "kind", "occurred_at", "value"]:
        bad(f"events header {head}")
    sid_col = head.index("source_event_id") if "source_event_id" in head else None
    sids = set()
    kinds = Counter()
    prev = ""
    n = 0
    for r in reader:
        n += 1
        cid, kind, ts, val = r[0], r[1], r[2], r[3]
        kinds[kind] += 1
        if not TS.match(ts):
            bad(f"line {n + 1}: occurred_at {ts!r}")
        if ts < prev:
            bad(f"line {n + 1}: not sorted ({ts} after {prev})")
        prev = ts
        if ts >= cutoff:
            bad(f"line {n + 1}: {ts} not before today")
        s = signup.get(cid)
        if s is None:
            bad(f"line {n + 1}: unknown customer {cid}")
        elif ts[:10] < s:
            bad(f"line {n + 1}: {cid} event {ts} before signup {s}")
        rule = VALUED.get(kind)
        if rule == "pos" and not float(val) > 0:
            bad(f"line {n + 1}: {kind} value {val!r}")
        elif rule == "stars" and val not in ("1", "2", "3", "4", "5"):
            bad(f"line {n + 1}: review value {val!r}")
        elif rule is None and val != "":
            bad(f"line {n + 1}: {kind} has a value {val!r}")
        if sid_col is not None:
            sid = r[sid_col]
            if sid in sids:
                bad(f"line {n + 1}: duplicate source_event_id {sid}")
            sids.add(sid)
    f.close()
    raw_head = (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")).read(1 << 20)
    if b"\r" in raw_head:
        bad("events file has \\r")
    if dict(kinds) != truth["events_by_kind"]:
        bad(f"kind counts {dict(kinds)} != truth {truth['events_by_kind']}")
    if n != truth["events"]:
        bad(f"{n} events != truth {truth['events']}")
    report(problems, f"{d}: {len(signup)} customers, {n} events, kinds {dict(kinds)}")


def report(problems, ok_line=None):
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print("OK " + ok_line)
    sys.exit(0)


if __name__ == "__main__":
    main()
