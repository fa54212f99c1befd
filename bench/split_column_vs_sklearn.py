#!/usr/bin/env python3
"""scikit-learn on a split a team chose: the anchor for `attune train --split-column`.

  python3 bench/split_column_vs_sklearn.py tests/fixtures/telco.csv /tmp/telco_split.csv
  attune train --csv /tmp/telco_split.csv --target Churn --split-column split --json

Writes the Telco data with a `split` column (every fourth row, starting with the first, is
`test`; blank TotalCharges read as 0) and prints scikit-learn's test AUC on that split:
one-hot categoricals, standardised numerics, LogisticRegression(C=1, lbfgs), customerID
left out. attune reads the same file, leaves customerID out as an identifier and must give
the same AUC (the test `it::tables::split_column_matches_scikit_learn` holds it to 0.002).
Needs scikit-learn and pandas ($SKLEARN_VENV, as bench/sklearn_env.py).
"""
import json
import sys

from sklearn_env import ensure_deps


def main():
    ensure_deps()
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    src, out = sys.argv[1], sys.argv[2]
    df = pd.read_csv(src, dtype=str, keep_default_na=False)
    df["TotalCharges"] = df["TotalCharges"].str.strip().replace("", "0")
    df["split"] = ["test" if i % 4 == 0 else "train" for i in range(len(df))]
    df.to_csv(out, index=False)
    num = ["tenure", "MonthlyCharges", "TotalCharges", "SeniorCitizen"]
    for c in num:
        df[c] = pd.to_numeric(df[c])
    y = (df["Churn"] == "Yes").astype(int).values
    cat = [c for c in df.columns if c not in num + ["customerID", "Churn", "split"]]
    pre = ColumnTransformer([("num", StandardScaler(), num), ("cat", OneHotEncoder(handle_unknown="ignore"), cat)])
    model = make_pipeline(pre, LogisticRegression(C=1.0, max_iter=2000, tol=1e-8))
    tr, te = (df["split"] == "train").values, (df["split"] == "test").values
    model.fit(df[tr], y[tr])
    p = model.predict_proba(df[te])[:, 1]
    print(json.dumps({"anchor": "scikit-learn on the split column", "file": out,
                      "train_rows": int(tr.sum()), "test_rows": int(te.sum()),
                      "auc": round(float(roc_auc_score(y[te], p)), 5)}))


if __name__ == "__main__":
    main()
