#!/usr/bin/env python3
"""scikit-learn on exactly the rows `attune-bench fit --save-npy DIR` generated.

  attune-bench fit --rows 1000000 --features 45 --save-npy /tmp/rows
  python3 bench/synthetic_same_rows.py /tmp/rows

The two generators draw from the same distribution but not the same random stream, so
AUCs are only comparable on the same rows. Fits LogisticRegression(C=1, lbfgs, tol 1e-4),
times the fit alone and prints JSON. Uses $SKLEARN_VENV (default /tmp/sklearn-baseline-venv),
made by ../shared/bench/sklearn_baseline.py, creating it if missing.
"""
import json
import os
import sys
import time

from sklearn_env import ensure_deps


def main():
    ensure_deps()
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score

    d = sys.argv[1]
    x, y = np.load(os.path.join(d, "x.npy")), np.load(os.path.join(d, "y.npy")).astype(int)
    t = time.perf_counter()
    model = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    fit_s = time.perf_counter() - t
    p = model.predict_proba(x)[:, 1]
    print(json.dumps({"anchor": "scikit-learn LogisticRegression on attune's rows", "rows": len(y), "features": x.shape[1],
                      "fit_seconds": round(fit_s, 4), "iterations": int(model.n_iter_[0]),
                      "auc": round(float(roc_auc_score(y, p)), 5), "log_loss": round(float(log_loss(y, p)), 5)}))


if __name__ == "__main__":
    main()
