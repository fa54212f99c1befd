#!/usr/bin/env python3
"""scikit-learn on exactly attune's Telco split: the anchor for `attune train --preset telco`.

  attune train --csv tests/fixtures/telco.csv --preset telco --holdout 0.25 --seed 42 \
      --write-split /tmp/split.json --out /tmp/telco.json
  python3 bench/telco_same_split.py tests/fixtures/telco.csv /tmp/split.json

Same preprocessing as the shared reference (`sklearn_baseline.py telco`): one-hot
categoricals, standardised numerics, LogisticRegression(C=1, lbfgs); only the rows in the
train and test parts come from attune's split instead of scikit-learn's own. Prints JSON.
Needs scikit-learn and pandas; makes a virtual environment under $SKLEARN_VENV
(default /tmp/sklearn-baseline-venv) if they are missing.
"""
import json
import os
import sys
import time

from sklearn_env import ensure_deps


def main():
    ensure_deps()
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    csv, split_path = sys.argv[1], sys.argv[2]
    split = json.load(open(split_path))
    df = pd.read_csv(csv)
    df["TotalCharges"] = pd.to_numeric(df["TotalCharges"], errors="coerce").fillna(0.0)
    y = (df["Churn"] == "Yes").astype(int).values
    num = ["tenure", "MonthlyCharges", "TotalCharges", "SeniorCitizen"]
    cat = [c for c in df.columns if c not in num + ["customerID", "Churn"]]
    pre = ColumnTransformer([("num", StandardScaler(), num), ("cat", OneHotEncoder(handle_unknown="ignore"), cat)])
    model = make_pipeline(pre, LogisticRegression(C=1.0, max_iter=1000))
    tr, te = split["train"], split["test"]
    t = time.perf_counter()
    model.fit(df.iloc[tr], y[tr])
    fit_s = time.perf_counter() - t
    p = model.predict_proba(df.iloc[te])[:, 1]
    print(json.dumps({
        "anchor": "scikit-learn LogisticRegression on attune's split", "rows_train": len(tr), "rows_test": len(te),
        "fit_seconds": round(fit_s, 4), "auc": round(float(roc_auc_score(y[te], p)), 5),
        "pr_auc": round(float(average_precision_score(y[te], p)), 5), "log_loss": round(float(log_loss(y[te], p)), 5),
        "brier": round(float(brier_score_loss(y[te], p)), 5),
    }))


if __name__ == "__main__":
    main()
