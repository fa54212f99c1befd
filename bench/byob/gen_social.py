#!/usr/bin/env python3
"""Event log of a SOCIAL / MUSIC-STREAMING APP, written independently of attune's simulator.

  python3 bench/byob/gen_social.py --customers 20000 --months 12 --seed 11 \
      --today 2026-11-01 --out /tmp/byob/social

The business imitated: a freemium social streaming app like the "Sparkify" service of the
well-known public churn exercise (a user event log of page hits: NextSong, Thumbs Up,
Thumbs Down, Add Friend, Upgrade, Downgrade, ...; free and paid levels; churners visit
fewer pages, give more thumbs down and often downgrade before they go) with the
inactivity-style churn of the KKBox churn challenge (churn = nothing renewed within 30 days
after the membership expires). Here the app's own event names are used:
  session_start, message_sent, like, post_created, comment, follow, thumbs_down,
  report_content, upgrade (value = price paid), downgrade.

How users behave:
  * activity is heavy-tailed: sessions per day are log-normal across users (a few power
    users open the app ten times a day, many open it every few days), and each user has
    their own mix of liking, chatting, commenting, posting (a minority are creators),
    following (mostly in the first weeks) and disliking;
  * weekly seasonality (more sessions on weekends) and an evening peak within the day;
  * each user has a latent dropout hazard (Gamma across users, high in the first two weeks,
    lower for paying users and for users who follow many others, higher after a run of
    thumbs down or a content report). Once it fires the user FADES for a couple of weeks:
    sessions get rarer, likes per session fall, thumbs down rise, paying users tend to
    downgrade; after that the user never opens the app again;
  * about 0.5% of rows are exact duplicates of the row next to them except for the
    `device` column (same user, kind and second on two devices): two genuine events that
    look alike but for one attribute. There is no source_event_id column.
Churn for this business is INACTIVITY: no `session_start` for 30 days. There is no churned_on.

Files written to --out:
  customers.csv  customer_id,signup_date,plan,monthly_charge,country,acquisition_channel,
                 age,email,crm_number   (plan free/premium/student, as at signup)
  events.csv     customer_id,kind,occurred_at,value,device   sorted by occurred_at
                 (events.csv.gz with --gzip)
  truth.json     counts, the churn definition and the latent dropout shares

Deterministic for a given --seed; only numpy and the standard library.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import byob_common as bc  # noqa: E402

KINDS = ["session_start", "message_sent", "like", "post_created", "comment", "follow",
         "thumbs_down", "report_content", "upgrade", "downgrade"]
SESSION, MSG, LIKE, POST, COMMENT, FOLLOW, TD, REPORT, UP, DOWN = range(len(KINDS))
IN_SESSION = [MSG, LIKE, POST, COMMENT, FOLLOW, TD, REPORT]  # drawn per session
DEVICES = ["ios", "android", "web"]
PLANS = ["free", "premium", "student"]
PRICE = [0.0, 9.99, 4.99]

COUNTRIES = [("US", 30), ("BR", 14), ("IN", 12), ("GB", 10), ("DE", 9), ("MX", 9), ("PH", 8), ("ID", 8)]
CHANNELS = [("app_store_search", 30), ("friend_invite", 20), ("social_ads", 20), ("influencer", 10),
            ("web_organic", 15), ("preinstall", 5)]
HOURS = [2, 1.2, 0.7, 0.5, 0.5, 0.7, 1.5, 3, 3.5, 3, 3, 3.5, 4.5, 4, 3.5, 3.5, 4, 4.5, 5.5,
         7, 8, 8.5, 7, 4]
WEEKDAY = [0.95, 0.93, 0.95, 0.97, 1.05, 1.2, 1.2]  # Monday..Sunday
DUPLICATE_SHARE = 0.005


def simulate(args):
    import numpy as np

    rng = np.random.default_rng(args.seed)
    cal = bc.Calendar(args.today, args.months)
    D, N = cal.days, args.customers

    # --- who the users are -----------------------------------------------------------------
    join = np.minimum((D * rng.random(N) ** 0.8).astype(np.int64), D - 1)
    join.sort()
    country, channel, age, email, crm = bc.attribute_columns(rng, N, COUNTRIES, CHANNELS, 29, 9)
    u = rng.random(N)
    plan0 = np.where(u < 0.10, 1, 0)
    plan0[(u >= 0.10) & (u < 0.16) & (age < 26)] = 2
    ch_haz = {"friend_invite": 0.7, "social_ads": 1.3, "influencer": 1.2, "preinstall": 1.4}

    sess_rate = np.clip(rng.lognormal(np.log(0.4), 0.95, N) * np.exp(-0.012 * (age - 29)), 0.03, 10)
    rate = np.zeros((len(KINDS), N))  # per-session means
    rate[MSG] = rng.gamma(0.7, 1.1 / 0.7, N)
    rate[LIKE] = rng.gamma(1.3, 1.9 / 1.3, N)
    rate[COMMENT] = rng.gamma(0.8, 0.3 / 0.8, N)
    rate[POST] = np.where(rng.random(N) < 0.12, rng.gamma(2, 0.25, N), 0.03)  # creators
    rate[FOLLOW] = rng.gamma(1.0, 0.08, N)
    rate[TD] = rng.gamma(1.0, 0.12, N)
    rate[REPORT] = rng.gamma(0.5, 0.004 / 0.5, N)
    mu = rng.gamma(0.8, (0.09 / 30) / 0.8, N) * np.array([ch_haz.get(c, 1.0) for c in channel])
    fade_len = np.maximum(rng.gamma(3.0, 20 / 3.0, N), 5)
    primary = rng.choice(3, N, p=[0.45, 0.4, 0.15])

    # --- day by day ------------------------------------------------------------------------
    ACTIVE, FADING, GONE = 1, 2, 3
    state = np.zeros(N, np.int8)
    plan = plan0.copy()
    fade_start = np.full(N, -1, np.int64)
    dropped_on = np.full(N, -1, np.int64)
    r_td = np.zeros(N)    # decayed thumbs down, sessions and reports (two-week half-life)
    r_sess = np.zeros(N)
    r_rep = np.zeros(N)
    follows = np.zeros(N)
    keep = 0.5 ** (1 / 14)
    wd = np.array(WEEKDAY)[cal.weekday]
    day_rec = ([], [], [])          # user-days with sessions: day, user, sessions
    kind_rec = {k: ([], [], []) for k in IN_SESSION + [UP, DOWN]}  # day, user, count
    up_value = []
    joined = 0

    for t in range(D):
        hi = np.searchsorted(join, t, side="right")
        state[joined:hi] = ACTIVE
        joined = hi

        act = np.flatnonzero(state[:joined] == ACTIVE)
        tenure = t - join[act]
        haz = (mu[act] * (1 + 5 * np.exp(-tenure / 12))
               * np.exp(np.minimum(1.8 * r_td[act] / (r_sess[act] + 1) + 0.9 * r_rep[act], 3))
               * np.where(plan[act] > 0, 0.6, 1.0) / np.sqrt(1 + 0.15 * np.minimum(follows[act], 50)))
        new = act[rng.random(act.size) < -np.expm1(-haz)]
        state[new] = FADING
        fade_start[new] = t
        fad = np.flatnonzero(state[:joined] == FADING)
        done = fad[t - fade_start[fad] >= fade_len[fad]]
        state[done] = GONE
        dropped_on[done] = t

        alive = np.flatnonzero((state[:joined] == ACTIVE) | (state[:joined] == FADING))
        eng = np.ones(alive.size)
        f = state[alive] == FADING
        eng[f] = np.exp(-3.0 * (t - fade_start[alive[f]]) / fade_len[alive[f]])
        ten = t - join[alive]
        sess = rng.poisson(sess_rate[alive] * eng * wd[t] * (1 + 0.8 * np.exp(-ten / 7)))
        sess[join[alive] == t] += 1  # registering is the first session
        has = sess > 0
        users, ns, e, ten = alive[has], sess[has], eng[has], ten[has]
        day_rec[0].append(np.full(users.size, t, np.int32))
        day_rec[1].append(users)
        day_rec[2].append(ns)
        mod = {MSG: e ** 0.7, LIKE: e ** 0.5, COMMENT: e ** 0.7, POST: e,
               FOLLOW: e * (1 + 4 * np.exp(-ten / 10)), TD: 1 + 2.5 * (1 - e), REPORT: 1 + 2 * (1 - e)}
        counts = {}
        for k in IN_SESSION:
            c = rng.poisson(rate[k, users] * mod[k] * ns)
            counts[k] = c
            nz = c > 0
            kind_rec[k][0].append(np.full(int(nz.sum()), t, np.int32))
            kind_rec[k][1].append(users[nz])
            kind_rec[k][2].append(c[nz])

        # Plan changes happen inside a session: engaged free users upgrade, paying users
        # downgrade now and then, and often while fading.
        free = plan[users] == 0
        up = free & (e == 1) & (rng.random(users.size) < 0.0012 * np.sqrt(np.minimum(sess_rate[users] / 0.45, 4)))
        down = ~free & (rng.random(users.size) < np.where(e < 1, 0.04, 0.0012))
        uu = users[up]
        newplan = np.where((age[uu] < 26) & (rng.random(uu.size) < 0.5), 2, 1)
        plan[uu] = newplan
        plan[users[down]] = 0
        for k, m in ((UP, up), (DOWN, down)):
            kind_rec[k][0].append(np.full(int(m.sum()), t, np.int32))
            kind_rec[k][1].append(users[m])
            kind_rec[k][2].append(np.ones(int(m.sum()), np.int64))
        up_value.append(np.array(PRICE)[newplan])

        r_td *= keep
        r_sess *= keep
        r_rep *= keep
        r_td[users] += counts[TD]
        r_sess[users] += ns
        r_rep[users] += counts[REPORT]
        follows[users] += counts[FOLLOW]

    # --- sessions ----------------------------------------------------------------------------
    ud_day = np.concatenate(day_rec[0]).astype(np.int64)
    ud_user = np.concatenate(day_rec[1])
    ud_n = np.concatenate(day_rec[2])
    ud_first = np.cumsum(ud_n) - ud_n          # index of each user-day's first session
    s_day = np.repeat(ud_day, ud_n)
    s_user = np.repeat(ud_user, ud_n)
    s_len = np.minimum(60 + rng.exponential(420, s_day.size), 4 * 3600).astype(np.int64)
    # a session that would run past midnight starts earlier instead
    s_start = np.minimum(bc.seconds_of_day(rng, s_day.size, HOURS), 86399 - s_len - 1)
    s_dev = np.where(rng.random(s_day.size) < 0.8, primary[s_user], rng.integers(0, 3, s_day.size))
    # key to find a user-day's sessions from (day, user)
    ud_key = ud_day * N + ud_user
    order = np.argsort(ud_key)
    ud_key_sorted = ud_key[order]

    kinds, days, users, secs, devs, vals = [], [], [], [], [], []
    kinds.append(np.full(s_day.size, SESSION, np.int8))
    days.append(s_day)
    users.append(s_user)
    secs.append(s_start)
    devs.append(s_dev)
    vals.append(np.full(s_day.size, np.nan))
    for k in IN_SESSION + [UP, DOWN]:
        d = np.concatenate(kind_rec[k][0]).astype(np.int64)
        uu = np.concatenate(kind_rec[k][1])
        c = np.concatenate(kind_rec[k][2])
        d, uu = np.repeat(d, c), np.repeat(uu, c)
        # pick one of that user-day's sessions at random and put the event inside it
        j = order[np.searchsorted(ud_key_sorted, d * N + uu)]
        s = ud_first[j] + (rng.random(d.size) * ud_n[j]).astype(np.int64)
        sec = s_start[s] + 1 + (rng.random(d.size) * s_len[s]).astype(np.int64)
        kinds.append(np.full(d.size, k, np.int8))
        days.append(d)
        users.append(uu)
        secs.append(sec)
        devs.append(s_dev[s])
        vals.append(np.concatenate(up_value) if k == UP else np.full(d.size, np.nan))
    kind, day, user = np.concatenate(kinds), np.concatenate(days), np.concatenate(users)
    sec, dev, val = np.concatenate(secs), np.concatenate(devs), np.concatenate(vals)

    # No accidental look-alikes: two events of one user and kind in the same second (on any
    # devices) are moved a second apart, so the only ones are the deliberate ones below.
    ts = day * 86400 + sec
    for _ in range(50):
        key = (ts * N + user) * 16 + kind
        o = np.argsort(key)
        same = o[1:][key[o][1:] == key[o][:-1]]
        if same.size == 0:
            break
        step = np.where(sec[same] < 86399, 1, -1)
        sec[same] += step
        ts[same] += step

    # Deliberate look-alikes: ~0.5% of rows repeated with another device in the same second.
    cand = np.flatnonzero((kind != UP) & (kind != DOWN))
    dup = np.sort(rng.choice(cand, int(round(DUPLICATE_SHARE * kind.size)), replace=False))
    other = (dev[dup] + rng.integers(1, 3, dup.size)) % 3
    src = np.concatenate([np.arange(kind.size), dup])
    dev = np.concatenate([dev, other])
    # each look-alike right after its original, then a stable sort by (time, user)
    src_order = np.argsort(np.concatenate([np.arange(kind.size) * 2, dup * 2 + 1]))
    src, dev = src[src_order], dev[src_order]
    order = np.argsort(ts[src] * N + user[src], kind="stable")
    src, dev = src[order], dev[order]
    return dict(cal=cal, N=N, join=join, plan0=plan0, country=country, channel=channel, age=age,
                email=email, crm=crm, kind=kind[src], day=day[src], user=user[src],
                sec=sec[src], dev=dev, val=val[src], duplicates=int(dup.size),
                fade_start=fade_start, dropped_on=dropped_on, plan_now=plan)


def write(sim, args):
    import numpy as np

    out = args.out
    os.makedirs(out, exist_ok=True)
    cal, N = sim["cal"], sim["N"]
    ids = np.array([f"U{i:06d}" for i in range(1, N + 1)])

    plan = np.array(PLANS)[sim["plan0"]]
    charge = np.array(["0", "9.99", "4.99"])[sim["plan0"]]
    lines = [",".join(r) for r in zip(ids.tolist(), cal.date_strings(sim["join"]).tolist(), plan.tolist(),
                                      charge.tolist(), sim["country"].tolist(), sim["channel"].tolist(),
                                      map(str, sim["age"].tolist()), sim["email"],
                                      map(str, sim["crm"].tolist()))]
    w = bc.open_text(os.path.join(out, "customers.csv"), False)
    bc.write_lines(w, "customer_id,signup_date,plan,monthly_charge,country,acquisition_channel,age,email,crm_number", lines)
    bc.close_text(w)

    kind, val = sim["kind"], sim["val"]
    vstr = np.full(kind.size, "", dtype=object)
    m = kind == UP
    vstr[m] = bc.money(val[m])
    ts = cal.timestamps(sim["day"], sim["sec"])
    lines = [f"{c},{k},{t},{v},{d}" for c, k, t, v, d in
             zip(ids[sim["user"]].tolist(), np.array(KINDS)[kind].tolist(), ts.tolist(), vstr.tolist(),
                 np.array(DEVICES)[sim["dev"]].tolist())]
    name = "events.csv.gz" if args.gzip else "events.csv"
    w = bc.open_text(os.path.join(out, name), args.gzip)
    bc.write_lines(w, "customer_id,kind,occurred_at,value,device", lines)
    bc.close_text(w)

    counts = np.bincount(kind, minlength=len(KINDS))
    bc.write_truth(out, {
        "business": "freemium social / music-streaming app (Sparkify-style event log, KKBox-style inactivity churn)",
        "generator": "bench/byob/gen_social.py",
        "seed": args.seed, "today": cal.today.isoformat(), "history_start": cal.start.isoformat(),
        "months": args.months,
        "customers": N,
        "plans_at_signup": {p: int((sim["plan0"] == i).sum()) for i, p in enumerate(PLANS)},
        "plans_today": {p: int((sim["plan_now"] == i).sum()) for i, p in enumerate(PLANS)},
        "events": int(kind.size),
        "events_by_kind": {KINDS[i]: int(counts[i]) for i in range(len(KINDS))},
        "events_file": name,
        "near_duplicate_rows": sim["duplicates"],
        "near_duplicate_meaning": "rows equal to the row before them in customer_id, kind, occurred_at and value "
                                  "but with another device: genuine second events, included in the counts above",
        "churn_definition": "inactivity: a user has churned once 30 days pass without a `session_start` event; "
                            "there is no churned_on column",
        "inactive_kind": "session_start", "inactive_days": 30,
        "dropped_out_share": round(float((sim["fade_start"] >= 0).mean()), 4),
        "dropped_out_meaning": "share of users whose latent dropout began before today "
                               "(they fade for a couple of weeks, then never open the app again)",
        "fully_gone_share": round(float((sim["dropped_on"] >= 0).mean()), 4),
        "attribute_columns": {"categorical": ["country", "acquisition_channel"], "numeric": ["age"],
                              "identifiers_to_ignore": ["email", "crm_number"]},
    })
    return kind.size, name


def main():
    args = bc.parse_generator_args(__doc__, 20000, 12)
    bc.ensure_modules("numpy")
    t0 = time.perf_counter()
    sim = simulate(args)
    t1 = time.perf_counter()
    n, name = write(sim, args)
    t2 = time.perf_counter()
    size = os.path.getsize(os.path.join(args.out, name)) / 1e6
    print(f"social: {args.customers} users, {n} events ({name} {size:.1f} MB) in {args.out}; "
          f"simulate {t1 - t0:.1f}s, write {t2 - t1:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
