"""Shared plumbing for the "bring your own business" generators and the peer script.

Nothing here decides the shape of a business; it only handles the dull parts both
generators share: the environment (numpy from the bench virtualenv), command-line flags,
calendar arithmetic, the customer attribute columns (country, channel, age, a unique email
and a unique CRM number), fast CSV writing (optionally gzip with a fixed mtime so committed
fixtures regenerate byte for byte) and truth.json.

Only numpy and the standard library are used here.
"""
import argparse
import datetime as dt
import gzip
import io
import json
import os
import subprocess
import sys

VENV_PACKAGES = ["numpy", "pandas", "scikit-learn", "duckdb"]


def ensure_modules(*modules):
    """Makes `modules` importable: if one is missing, creates (once) the virtual environment
    under $SKLEARN_VENV (default /tmp/sklearn-baseline-venv, as ../sklearn_env.py does),
    installs numpy, pandas, scikit-learn and duckdb into it and re-runs the calling script
    inside it."""
    missing = []
    for m in modules:
        try:
            __import__(m)
        except ImportError:
            missing.append(m)
    if not missing:
        return
    venv = os.environ.get("SKLEARN_VENV", "/tmp/sklearn-baseline-venv")
    py = os.path.join(venv, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(venv):
        # Already inside the venv (e.g. an older one made by ../sklearn_env.py without duckdb).
        subprocess.check_call([py, "-m", "pip", "install", "-q"] + VENV_PACKAGES)
    else:
        if not os.path.exists(py):
            subprocess.check_call([sys.executable, "-m", "venv", venv])
        probe = subprocess.run([py, "-c", "import " + ",".join(modules)], capture_output=True)
        if probe.returncode != 0:
            subprocess.check_call([py, "-m", "pip", "install", "-q"] + VENV_PACKAGES)
    os.execv(py, [py] + sys.argv)


def parse_generator_args(description, default_customers, default_months):
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=default_customers)
    p.add_argument("--months", type=int, default=default_months,
                   help="length of the history: signups and events fall in the last M months")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--today", default="2026-11-01",
                   help="YYYY-MM-DD; every event is before 00:00 UTC of this day")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--gzip", action="store_true", help="write events.csv.gz instead of events.csv")
    args = p.parse_args()
    args.today = dt.date.fromisoformat(args.today)
    if args.customers < 1 or args.months < 1:
        p.error("--customers and --months must be positive")
    return args


def months_before(day, months):
    """The same day of the month `months` earlier (clamped to the month's length)."""
    y, m = divmod(day.year * 12 + (day.month - 1) - months, 12)
    m += 1
    for d in range(day.day, 0, -1):
        try:
            return dt.date(y, m, d)
        except ValueError:
            continue
    raise ValueError(day)


class Calendar:
    """Day 0 is the first day of the history, day `days - 1` is the day before --today."""

    def __init__(self, today, months):
        import numpy as np

        self.today = today
        self.start = months_before(today, months)
        self.days = (today - self.start).days
        dates = [self.start + dt.timedelta(days=i) for i in range(self.days)]
        self.weekday = np.array([d.weekday() for d in dates])  # Monday = 0
        self.month = np.array([d.month for d in dates])
        self.doy = np.array([d.timetuple().tm_yday for d in dates])
        epoch = dt.datetime(self.start.year, self.start.month, self.start.day, tzinfo=dt.timezone.utc)
        self.epoch_s = int(epoch.timestamp())

    def date_strings(self, day_idx):
        import numpy as np

        base = np.datetime64(self.start.isoformat(), "D")
        return np.datetime_as_string(base + day_idx.astype("timedelta64[D]"), unit="D")

    def timestamps(self, day_idx, sec_of_day):
        """RFC 3339 UTC strings for (day index, second of day) arrays."""
        import numpy as np

        s = self.epoch_s + day_idx.astype(np.int64) * 86400 + sec_of_day.astype(np.int64)
        return np.char.add(np.datetime_as_string(s.astype("datetime64[s]"), unit="s"), "Z")


def seconds_of_day(rng, n, hour_weights, low_hour=0):
    """Second-of-day draws from a 24-entry hour profile (hours below low_hour get weight 0)."""
    import numpy as np

    w = np.asarray(hour_weights, dtype=float).copy()
    w[:low_hour] = 0
    hours = rng.choice(24, size=n, p=w / w.sum())
    return hours * 3600 + rng.integers(0, 3600, size=n)


FIRST = ["anna", "ben", "chloe", "david", "emma", "felix", "grace", "hugo", "ines", "jack",
         "kim", "leo", "maria", "noah", "olga", "paul", "rosa", "sam", "tara", "yusuf",
         "zoe", "omar", "lena", "ivan", "mei", "raj", "sofia", "tom", "nina", "luca"]
LAST = ["smith", "muller", "dubois", "murphy", "garcia", "jansen", "peeters", "keller",
        "brown", "rossi", "novak", "kowalski", "silva", "larsen", "nagy", "evans", "weber",
        "martin", "walsh", "costa", "berg", "horvat", "khan", "lopez", "fischer", "moreau"]
DOMAINS = ["mail.example", "example.com", "example.org", "post.example", "example.net"]


def attribute_columns(rng, n, countries, channels, age_mean, age_sd):
    """country and acquisition_channel (low cardinality), age (numeric), email (unique text)
    and crm_number (unique integers, not in customer order): the last two are identifiers
    that a churn tool should recognise and leave out."""
    import numpy as np

    c_names, c_w = zip(*countries)
    ch_names, ch_w = zip(*channels)
    country = np.array(c_names)[rng.choice(len(c_names), n, p=np.array(c_w) / sum(c_w))]
    channel = np.array(ch_names)[rng.choice(len(ch_names), n, p=np.array(ch_w) / sum(ch_w))]
    age = np.clip(np.round(rng.normal(age_mean, age_sd, n)), 18, 85).astype(int)
    f = rng.integers(0, len(FIRST), n)
    l = rng.integers(0, len(LAST), n)
    sep = rng.choice([".", "_", ""], n)
    dom = rng.integers(0, len(DOMAINS), n)
    # The per-customer number makes each address unique; it is scrambled so it does not
    # follow the customer id.
    num = rng.permutation(n) * 7 + rng.integers(0, 7, n) + 11
    email = [f"{FIRST[a]}{s}{LAST[b]}{k}@{DOMAINS[d]}" for a, b, s, k, d in zip(f, l, sep, num, dom)]
    crm = 3_000_000 + rng.permutation(n) * 13 + rng.integers(0, 13, n)
    return country, channel, age, email, crm


def open_text(path, gz):
    """A text writer with '\\n' line ends; gzip output has mtime 0 and no file name so the
    bytes depend only on the content."""
    if gz:
        raw = open(path, "wb")
        z = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0)
        w = io.TextIOWrapper(z, encoding="utf-8", newline="\n")
        w._byob_raw = raw  # closed after the gzip trailer is written
        return w
    return open(path, "w", encoding="utf-8", newline="\n")


def close_text(w):
    raw = getattr(w, "_byob_raw", None)
    w.close()
    if raw is not None:
        raw.close()


def write_lines(w, header, lines, chunk=500_000):
    w.write(header + "\n")
    for i in range(0, len(lines), chunk):
        w.write("\n".join(lines[i:i + chunk]))
        w.write("\n")


def money(x):
    """Two-decimal strings for an array of amounts."""
    return [f"{v:.2f}" for v in x.tolist()]


def write_truth(out_dir, truth):
    with open(os.path.join(out_dir, "truth.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(truth, f, indent=2, sort_keys=False)
        f.write("\n")
