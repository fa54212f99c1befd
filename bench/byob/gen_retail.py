#!/usr/bin/env python3
"""Event log of a NON-CONTRACTUAL ONLINE RETAILER, written independently of attune's simulator.

  python3 bench/byob/gen_retail.py --customers 50000 --months 18 --seed 7 \
      --today 2026-11-01 --out /tmp/byob/retail

The business imitated: a UK-based online shop selling giftware and homeware to consumers
across Europe, the kind of business behind the UCI "Online Retail II" transaction set
(invoices with a 6-digit number, cancellations/returns as invoices prefixed with "C", a
customer number and a country, UK customers the large majority, a strong November peak).
That set holds only invoices; this one adds the web-shop events such a retailer also logs
(product views, cart adds, newsletter clicks, support tickets, reviews).

Purchase behaviour follows the Pareto/NBD ("buy 'til you die") story from the BTYD
literature: while alive a customer buys as a Poisson process whose rate is Gamma-distributed
across customers, and each customer's lifetime is exponential with a Gamma-distributed
dropout rate. Two departures make it a churn problem rather than a textbook fit:
  * dropout is not instantaneous: a customer first FADES for a few weeks (views, cart adds,
    newsletter clicks and purchases decay exponentially) and only then is gone; a gone
    customer still opens the odd newsletter and looks at the odd product page but never
    buys again;
  * the hazard of starting to fade rises with recent returns, support tickets and bad
    reviews (1-2 stars), and is high in the first weeks (one-and-done shoppers), lower for
    loyalty members.
Churn for this business is INACTIVITY: no `purchase` for 90 days. There is no churned_on.

Files written to --out:
  customers.csv  customer_id,signup_date,plan,monthly_charge,country,acquisition_channel,
                 age,email,crm_number   (plan is standard/member, as at signup)
  events.csv     customer_id,kind,occurred_at,value,source_event_id   sorted by occurred_at
                 (events.csv.gz with --gzip)
  truth.json     counts, the churn definition and the latent dropout shares

Deterministic for a given --seed; only numpy and the standard library.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import byob_common as bc  # noqa: E402

KINDS = ["purchase", "product_view", "add_to_cart", "return", "newsletter_click",
         "support_ticket", "review_posted"]
P, VIEW, CART, RET, CLICK, TICKET, REVIEW = range(len(KINDS))

COUNTRIES = [("GB", 55), ("DE", 9), ("FR", 8), ("IE", 6), ("NL", 6), ("ES", 5), ("BE", 5), ("CH", 6)]
CHANNELS = [("organic_search", 30), ("paid_search", 20), ("social_ads", 15), ("referral", 10),
            ("email", 10), ("marketplace", 15)]
# Share of a day's shopping per hour (UTC): quiet nights, a lunchtime and an evening peak.
HOURS = [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4, 5, 5.5, 6, 6.5, 6, 5.5, 5, 5, 5.5, 6.5,
         7.5, 8, 7, 4.5, 2.5]
WEEKDAY = [1.05, 1.0, 1.0, 1.1, 0.95, 0.8, 1.1]  # Monday..Sunday
NEWSLETTER_DAYS = (1, 4)  # sent on Tuesdays and Fridays


def season(cal):
    """Yearly shape: a November/December gifting peak, a January lull, a mild summer dip."""
    import numpy as np

    d = cal.doy.astype(float)
    return (1 + 0.55 * np.exp(-((d - 330) / 16) ** 2) + 0.3 * np.exp(-((d - 349) / 7) ** 2)
            - 0.18 * np.exp(-((d - 18) / 14) ** 2) - 0.1 * np.exp(-((d - 210) / 25) ** 2))


def simulate(args):
    import numpy as np

    rng = np.random.default_rng(args.seed)
    cal = bc.Calendar(args.today, args.months)
    D, N = cal.days, args.customers

    # --- who the customers are -------------------------------------------------------------
    join = np.minimum((D * rng.random(N) ** 0.85).astype(np.int64), D - 1)  # growing shop
    join.sort()  # customer R000001 is the oldest
    country, channel, age, email, crm = bc.attribute_columns(rng, N, COUNTRIES, CHANNELS, 41, 13)
    member = rng.random(N) < 0.2
    ch_rate = {"marketplace": 0.8, "referral": 1.15, "email": 1.1}
    ch_haz = {"marketplace": 1.35, "referral": 0.8, "social_ads": 1.2, "email": 0.9}
    rate_mult = np.array([ch_rate.get(c, 1.0) for c in channel]) * np.where(member, 1.35, 1.0)
    haz_mult = np.array([ch_haz.get(c, 1.0) for c in channel]) * np.where(member, 0.6, 1.0)
    haz_mult *= np.where(age < 25, 1.2, 1.0)

    # Pareto/NBD latent traits: purchase rate ~ Gamma, dropout rate ~ Gamma (per day).
    lam = rng.gamma(1.0, 1.3 / 30, N) * rate_mult                      # mean ~1.3 purchases/month
    mu = rng.gamma(0.9, (0.06 / 30) / 0.9, N) * haz_mult               # mean ~6%/month
    fade_len = np.maximum(rng.gamma(3.0, 42 / 3.0, N), 10)            # days of fading
    view_rate = 0.12 * rng.lognormal(0, 0.7, N) + 1.2 * lam           # browsing views/day
    cart_ratio = rng.beta(2, 12, N)                                    # abandoned carts per view
    opted_in = rng.random(N) < 0.55
    click_rate = np.where(opted_in, rng.gamma(1.2, 0.35 / 1.2, N), 0)  # clicks per newsletter
    satisfaction = np.clip(rng.normal(4.1, 0.6, N), 1, 5)
    return_prop = np.clip(rng.beta(1.2, 9, N) * (1 + 0.6 * (4.1 - satisfaction)), 0.01, 0.8)
    review_prop = rng.beta(1.5, 12, N)
    ticket_rate = 0.004 * rng.gamma(1.0, 1.0, N)
    basket_mu = np.log(30) + rng.normal(0, 0.55, N)

    # --- day by day ------------------------------------------------------------------------
    ACTIVE, FADING, GONE = 1, 2, 3
    state = np.zeros(N, np.int8)
    fade_start = np.full(N, -1, np.int64)
    dropped_on = np.full(N, -1, np.int64)
    r_ret = np.zeros(N)   # decayed counts (about a 45-day memory) driving the hazard
    r_tick = np.zeros(N)
    r_bad = np.zeros(N)
    r_buy = np.zeros(N)   # decayed purchases (about 10 days) that returns and reviews follow
    keep = 0.5 ** (1 / 45)
    seas = season(cal) * np.array(WEEKDAY)[cal.weekday]
    send = np.isin(cal.weekday, NEWSLETTER_DAYS)
    rec = {k: ([], [], []) for k in range(len(KINDS))}  # kind -> (days, customers, counts)
    stars_rec = []
    joined = 0

    def put(kind, t, idx, counts):
        nz = counts > 0
        if nz.any():
            d, c, n = rec[kind]
            d.append(np.full(int(nz.sum()), t, np.int32))
            c.append(idx[nz])
            n.append(counts[nz])

    for t in range(D):
        hi = np.searchsorted(join, t, side="right")
        state[joined:hi] = ACTIVE
        joined = hi

        # Start fading: Pareto/NBD hazard, higher early on and after returns/tickets/bad reviews.
        act = np.flatnonzero(state[:joined] == ACTIVE)
        tenure = t - join[act]
        haz = mu[act] * (1 + 2.0 * np.exp(-tenure / 45)) * np.exp(
            np.minimum(0.45 * r_ret[act] + 0.5 * r_tick[act] + 0.6 * r_bad[act], 3))
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
        s = seas[t]

        buys = rng.poisson(lam[alive] * eng ** 1.3 * s)
        put(P, t, alive, buys)
        put(VIEW, t, alive, rng.poisson(view_rate[alive] * eng * s))
        put(CART, t, alive, rng.poisson(view_rate[alive] * cart_ratio[alive] * eng * s))
        clicks = rng.poisson(click_rate[alive] * (0.3 + 0.7 * eng) * (1.0 if send[t] else 0.12))
        put(CLICK, t, alive, clicks)
        rets = rng.poisson(return_prop[alive] * r_buy[alive] * 0.1)
        put(RET, t, alive, rets)
        tick = rng.poisson(ticket_rate[alive] + 0.35 * rets)
        put(TICKET, t, alive, tick)
        revs = (rng.random(alive.size) < -np.expm1(-review_prop[alive] * r_buy[alive] * 0.1)).astype(np.int64)
        put(REVIEW, t, alive, revs)
        rv = revs > 0
        stars = np.clip(np.round(rng.normal(satisfaction[alive[rv]] - 1.2 * (r_ret[alive[rv]] > 0.5), 0.9)), 1, 5)
        stars_rec.append(stars.astype(np.int64))

        # A lapsed customer still opens the odd newsletter and looks at the odd product.
        gone = np.flatnonzero(state[:joined] == GONE)
        put(VIEW, t, gone, rng.poisson(view_rate[gone] * 0.04 * s))
        put(CLICK, t, gone, rng.poisson(click_rate[gone] * 0.25 * (1.0 if send[t] else 0.12)))

        r_buy *= 0.9
        r_buy[alive] += buys
        r_ret *= keep
        r_tick *= keep
        r_bad *= keep
        r_ret[alive] += rets
        r_tick[alive] += tick
        bad = np.zeros(alive.size)
        bad[rv] = stars <= 2
        r_bad[alive] += bad

    # --- one row per event -----------------------------------------------------------------
    def expand(kind):
        d, c, n = rec[kind]
        if not d:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        d, c, n = np.concatenate(d), np.concatenate(c), np.concatenate(n)
        return np.repeat(d, n).astype(np.int64), np.repeat(c, n)

    cols = []  # (kind, day, customer, second of day, value)
    nan = np.nan

    pd_, pc = expand(P)
    psec = bc.seconds_of_day(rng, pd_.size, HOURS, low_hour=1)  # leaves room for the funnel
    basket = np.maximum(np.round(np.exp(basket_mu[pc] + rng.normal(0, 0.45, pc.size)), 2), 1.0)
    cols.append((P, pd_, pc, psec, basket))
    # The funnel in front of every purchase: one cart add and a few product views that hour.
    cols.append((CART, pd_, pc, psec - rng.integers(60, 1800, pc.size), np.full(pc.size, nan)))
    nv = 1 + rng.poisson(1.5, pc.size)
    fv = np.repeat(np.arange(pc.size), nv)
    cols.append((VIEW, pd_[fv], pc[fv], psec[fv] - rng.integers(120, 3500, fv.size), np.full(fv.size, nan)))

    for kind in (VIEW, CART, CLICK, TICKET):
        d, c = expand(kind)
        cols.append((kind, d, c, bc.seconds_of_day(rng, d.size, HOURS), np.full(d.size, nan)))
    d, c = expand(RET)
    refund = np.maximum(np.round(np.exp(basket_mu[c] + rng.normal(0, 0.45, c.size)) * rng.uniform(0.15, 1.0, c.size), 2), 0.5)
    cols.append((RET, d, c, bc.seconds_of_day(rng, d.size, HOURS), refund))
    d, c = expand(REVIEW)  # one review per customer-day at most, in the order the stars were drawn
    cols.append((REVIEW, d, c, bc.seconds_of_day(rng, d.size, HOURS),
                 np.concatenate(stars_rec).astype(float)))

    kind = np.concatenate([np.full(x[1].size, x[0], np.int8) for x in cols])
    day = np.concatenate([x[1] for x in cols])
    cust = np.concatenate([x[2] for x in cols])
    sec = np.concatenate([x[3] for x in cols])
    val = np.concatenate([x[4] for x in cols])

    # Registration is the first visit: a product view just before anything else that day.
    on_join = day == join[cust]
    first = np.full(N, 86400, np.int64)
    np.minimum.at(first, cust[on_join], sec[on_join])
    reg_sec = np.minimum(first, bc.seconds_of_day(rng, N, HOURS)) - rng.integers(20, 600, N)
    kind = np.concatenate([kind, np.full(N, VIEW, np.int8)])
    day = np.concatenate([day, join])
    cust = np.concatenate([cust, np.arange(N)])
    sec = np.concatenate([sec, np.maximum(reg_sec, 0)])
    val = np.concatenate([val, np.full(N, nan)])

    order = np.lexsort((cust, day * 86400 + sec))
    kind, day, cust, sec, val = kind[order], day[order], cust[order], sec[order], val[order]
    return dict(cal=cal, N=N, join=join, member=member, country=country, channel=channel, age=age,
                email=email, crm=crm, kind=kind, day=day, cust=cust, sec=sec, val=val,
                fade_start=fade_start, dropped_on=dropped_on)


def source_ids(kind):
    """Order-system style ids in time order: invoices 500000.. for purchases, the same series
    prefixed with C for returns (as cancellations are in Online Retail II), then a
    sequence per web event type."""
    import numpy as np

    ids = np.empty(kind.size, dtype=object)
    inv = (kind == P) | (kind == RET)
    nums = 500000 + np.arange(int(inv.sum()))
    ids[inv] = [("C" if k == RET else "") + str(n) for k, n in zip(kind[inv].tolist(), nums.tolist())]
    for k, prefix in ((VIEW, "pv-"), (CART, "ac-"), (CLICK, "nl-"), (TICKET, "tk-"), (REVIEW, "rv-")):
        m = kind == k
        ids[m] = [prefix + str(i) for i in range(1, int(m.sum()) + 1)]
    return ids


def write(sim, args):
    import numpy as np

    out = args.out
    os.makedirs(out, exist_ok=True)
    cal, N = sim["cal"], sim["N"]
    ids = np.array([f"R{i:06d}" for i in range(1, N + 1)])

    signup = cal.date_strings(sim["join"])
    plan = np.where(sim["member"], "member", "standard")
    charge = np.where(sim["member"], "4.99", "0")
    lines = [",".join(r) for r in zip(ids.tolist(), signup.tolist(), plan.tolist(), charge.tolist(),
                                      sim["country"].tolist(), sim["channel"].tolist(),
                                      map(str, sim["age"].tolist()), sim["email"],
                                      map(str, sim["crm"].tolist()))]
    w = bc.open_text(os.path.join(out, "customers.csv"), False)
    bc.write_lines(w, "customer_id,signup_date,plan,monthly_charge,country,acquisition_channel,age,email,crm_number", lines)
    bc.close_text(w)

    kind, val = sim["kind"], sim["val"]
    vstr = np.full(kind.size, "", dtype=object)
    m = (kind == P) | (kind == RET)
    vstr[m] = bc.money(val[m])
    m = kind == REVIEW
    vstr[m] = [str(int(v)) for v in val[m].tolist()]
    ts = cal.timestamps(sim["day"], sim["sec"])
    knames = np.array(KINDS)[kind]
    lines = [f"{c},{k},{t},{v},{s}" for c, k, t, v, s in
             zip(ids[sim["cust"]].tolist(), knames.tolist(), ts.tolist(), vstr.tolist(), source_ids(kind).tolist())]
    name = "events.csv.gz" if args.gzip else "events.csv"
    w = bc.open_text(os.path.join(out, name), args.gzip)
    bc.write_lines(w, "customer_id,kind,occurred_at,value,source_event_id", lines)
    bc.close_text(w)

    counts = np.bincount(kind, minlength=len(KINDS))
    started = sim["fade_start"] >= 0
    bc.write_truth(out, {
        "business": "non-contractual online retailer (Online Retail II shape, Pareto/NBD purchases)",
        "generator": "bench/byob/gen_retail.py",
        "seed": args.seed, "today": cal.today.isoformat(), "history_start": cal.start.isoformat(),
        "months": args.months,
        "customers": N,
        "plans": {"standard": int((~sim["member"]).sum()), "member": int(sim["member"].sum())},
        "events": int(kind.size),
        "events_by_kind": {KINDS[i]: int(counts[i]) for i in range(len(KINDS))},
        "events_file": name,
        "churn_definition": "inactivity: a customer has churned once 90 days pass without a `purchase` event; "
                            "there is no churned_on column",
        "inactive_kind": "purchase", "inactive_days": 90,
        "dropped_out_share": round(float(started.mean()), 4),
        "dropped_out_meaning": "share of customers whose latent dropout began before today "
                               "(they fade for some weeks, then never purchase again)",
        "fully_gone_share": round(float((sim["dropped_on"] >= 0).mean()), 4),
        "attribute_columns": {"categorical": ["country", "acquisition_channel"], "numeric": ["age"],
                              "identifiers_to_ignore": ["email", "crm_number"]},
    })
    return kind.size, name


def main():
    args = bc.parse_generator_args(__doc__, 50000, 18)
    bc.ensure_modules("numpy")
    t0 = time.perf_counter()
    sim = simulate(args)
    t1 = time.perf_counter()
    n, name = write(sim, args)
    t2 = time.perf_counter()
    size = os.path.getsize(os.path.join(args.out, name)) / 1e6
    print(f"retail: {args.customers} customers, {n} events ({name} {size:.1f} MB) in {args.out}; "
          f"simulate {t1 - t0:.1f}s, write {t2 - t1:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
